"""A private ``redis-server`` on a free loopback port: the embedded default's Redis, and the tests'.

Durable like the chart's Redis (AOF, fsync on every write): an enqueue that returned survives even ``kill -9``
of this server or a crash of the machine, and a restart on the same directory brings every accepted task back.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from task_processor.errors import TaskProcessorError

START_TIMEOUT = 10.0
"""Seconds to wait for a freshly started redis-server to answer PING."""

PORT_ATTEMPTS = 5
"""Free ports tried when another process takes the one picked before our server could bind it."""

STREAM_NODE_MAX_BYTES = 128
"""Redis' ``stream-node-max-bytes`` here (its default is 4096): each finished job's result is a one-entry stream,
and Redis allocates a node of up to this size for it; 128 keeps it at ~0.9 KB instead of ~4.8 KB (measured, README
"Redis memory")."""

APPENDFSYNC = ("always", "everysec", "no")
"""Redis' AOF fsync policies; ``always`` (the default here) fsyncs before it answers a write."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortTakenError(TaskProcessorError):
    """Another process listens on the port the server was to bind."""


class LocalRedisServer:
    """Start, stop, kill and restart one redis-server whose data lives in a temp dir."""

    def __init__(
        self,
        port: int | None = None,
        directory: Path | None = None,
        appendonly: bool = True,
        appendfsync: str = "always",
    ) -> None:
        if appendfsync not in APPENDFSYNC:
            raise ValueError(f"appendfsync {appendfsync!r}: use one of {', '.join(APPENDFSYNC)}")
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            raise TaskProcessorError(
                "redis-server is not installed: install it (apt-get install -y redis-server) or set REDIS_URL"
            )
        self._own_port = port is None
        self.port = port or free_port()
        self._own_dir = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="task-processor-redis-"))
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LocalRedisServer:
        """Start the server and wait until it answers; a free port picked here is picked again if another
        process takes it first (the answer must come from our own process, never from a stranger's)."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                return self._start_once()
            except PortTakenError:
                if self._own_port and attempt < PORT_ATTEMPTS:
                    self.port = free_port()
                    continue
                self.close()
                raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def arguments(self) -> list[str]:
        """The server's command line (a test's replica or Sentinel extends it)."""
        assert self.executable is not None
        return [
            self.executable,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--stream-node-max-bytes",
            str(STREAM_NODE_MAX_BYTES),
            "--protected-mode",
            "yes",
            "--logfile",
            str(self.directory / "redis.log"),
        ]

    def client(self, **options: Any) -> redis.Redis:
        """A client of this server alone, whatever its role (a test's server with a password adds it)."""
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def _start_once(self) -> LocalRedisServer:
        process = self.process = subprocess.Popen(
            self.arguments(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = self.client(socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while process.poll() is None and time.monotonic() < deadline:
                try:
                    if client.info("server").get("process_id") == process.pid:
                        return self
                except redis.ConnectionError:
                    pass
                time.sleep(0.02)
        finally:
            client.close()
        log = (self.directory / "redis.log").read_text(errors="replace")[-500:]
        self.kill()
        if "Address already in use" in log:
            raise PortTakenError(f"port {self.port} is in use by another process: pick another port")
        raise TaskProcessorError(f"redis-server on port {self.port} did not start: {log}")

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: only what AOF has on disk survives."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None

    def close(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> LocalRedisServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
