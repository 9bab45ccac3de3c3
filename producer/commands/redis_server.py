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

import redis

from task_processor.errors import TaskProcessorError

START_TIMEOUT = 10.0
"""Seconds to wait for a freshly started redis-server to answer PING."""

APPENDFSYNC = ("always", "everysec", "no")
"""Redis' AOF fsync policies; ``always`` (the default here) fsyncs before it answers a write."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        assert self.executable is not None
        self.process = subprocess.Popen(
            [
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
                "--protected-mode",
                "yes",
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.directory / "redis.log").read_text(errors="replace")[-500:]
                    raise TaskProcessorError(f"redis-server on port {self.port} did not start: {log}") from None
                time.sleep(0.02)
            finally:
                client.close()
        return self

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
