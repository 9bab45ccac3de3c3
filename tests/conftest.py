"""Shared fixtures: a real redis-server per test session on a free loopback port, flushed around each test."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import redis
from rq import SimpleWorker
from rq.job import Job

from producer import Producer
from producer.commands.redis_server import LocalRedisServer
from producer.scaling.autoscaler import Autoscaler, bounds_from
from producer.scaling.local.deployment import LocalDeployment
from task_processor.logs import configure_logging
from task_processor.settings import Settings
from tests.chart import Helm, new_helm
from worker.resilient import subscribe_briefly


class ReferenceWorker(SimpleWorker):
    """RQ's own SimpleWorker, the reference the contract tests compare with, but for its command channel's read:
    RQ's lasts 60 s, and closing the channel as the worker stops waits it out with redis-py 8.2, so a burst run
    could take a minute (and outlive the keys a test compares). Nothing it writes changes."""

    def subscribe(self) -> None:
        subscribe_briefly(self)


BIN = Path(sys.executable).parent

TASK_MODULES = "worker.examples"
"""What the tests' workers may run: the demo tasks (``worker.examples.*``)."""


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test naming ``what`` on time-out."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def as_bytes(value: object) -> bytes:
    """A reply read on a connection that does not decode (the ``conn`` fixture, RQ's): redis-py types replies
    ``bytes | str`` for either kind of client, with ``None`` where a key may be missing; here it must be bytes."""
    assert isinstance(value, bytes), f"expected bytes from Redis, got {value!r}"
    return value


def decoded(values: Iterable[object]) -> list[str]:
    """Members of a list, set or sorted set read from a connection that does not decode (``as_bytes``), as text."""
    return [as_bytes(value).decode() for value in values]


def recorded(conn: redis.Redis, key: str) -> list[str]:
    """The Redis list ``key`` as text: what the example tasks that record (``worker.examples.record``) wrote."""
    return decoded(conn.lrange(key, 0, -1))


def bytes_fields(reply: Mapping[bytes | str, bytes | str]) -> dict[bytes, bytes]:
    """A hash read (HGETALL) on a connection that does not decode (``as_bytes``)."""
    return {as_bytes(name): as_bytes(value) for name, value in reply.items()}


def exc_string(job: Job) -> str:
    """The error of a job's latest result, which the test expects to be a failure with one."""
    result = job.latest_result()
    assert result is not None, f"job {job.id} has no result"
    assert result.exc_string is not None, f"job {job.id}'s latest result ({result.type}) has no error"
    return result.exc_string


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """The chart's renderer, one per test module (``tests.chart.new_helm``): a test that takes it is skipped, not
    failed, where helm is missing."""
    return new_helm(tmp_path_factory)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedisServer]:
    with LocalRedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: LocalRedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield redis_server.url
    client.flushall()
    client.close()


@pytest.fixture
def conn(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def producer(redis_url: str) -> Producer:
    return Producer(redis_url)


@pytest.fixture
def loop_settings(redis_url: str) -> Settings:
    """An autoscaler that reacts within a test's patience: a pass every 50 ms, 5 jobs a worker, at most 6 workers,
    down after 0.5 s, no hold after a manual scale, the count rule alone (no target wait), no spare starts
    (tests/test_policy_spares.py has theirs)."""
    return Settings(
        redis_url=redis_url,
        autoscale_interval=0.05,
        scale_down_delay=0.5,
        jobs_per_worker=5,
        autoscale_min=0,
        autoscale_max=6,
        manual_hold=0.0,
        target_wait=None,
        start_spares=0,
    )


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    """Environment for the project's commands: the test Redis, JSON logs, this venv first on PATH."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "TASK_", "AUTOSCALE_", "LOG_"))}
    return {
        **base,
        "REDIS_URL": redis_url,
        "LOG_FORMAT": "json",
        "TASK_MODULES": TASK_MODULES,
        "PATH": f"{BIN}{os.pathsep}{base['PATH']}",
    }


class Proc:
    """A project command running in its own process group, its output in a file for the test to parse."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.popen = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def signal(self, sig: signal.Signals) -> None:
        self.popen.send_signal(sig)

    def wait(self, timeout: float = 30) -> int:
        """The exit code; a process still running after ``timeout`` fails the test with the end of its output."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(self.args)} still running after {timeout}s; it said:\n{self.output()[-4000:]}")

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def json_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def stop(self) -> None:
        # The whole group, and every descendant in a group of its own (run-local's workers, like Pods, have
        # theirs): a worker left behind by a failed test would take the next tests' jobs from the shared Redis.
        family = descendants(self.popen.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for pid in family:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._log.close()


def job_lines(proc: Proc) -> list[dict[str, Any]]:
    """The one line a worker logs per job run (``worker.joblog``)."""
    return [line for line in proc.json_lines() if line.get("event") == "job"]


def descendants(root: int) -> list[int]:
    """The processes below ``root`` (children, theirs, ...), read from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture
def spawn(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start ``task-worker``/``task-producer`` commands; every one is killed at the end of the test."""
    procs: list[Proc] = []

    def start(*args: str, extra_env: dict[str, str] | None = None) -> Proc:
        proc = Proc([str(BIN / args[0]), *args[1:]], {**env, **(extra_env or {})}, tmp_path / f"proc{len(procs)}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


class Loop(Protocol):
    """A control loop that runs until ``stop`` is set: an ``Autoscaler``, or a ``Fleet`` of them (one per pool)."""

    def run(self, stop: threading.Event) -> None: ...


LoopT = TypeVar("LoopT", bound=Loop)


@contextmanager
def running(autoscaler: LoopT) -> Iterator[LoopT]:
    """An autoscaler's loop in a thread for the length of the block; it must stop when asked."""
    stop = threading.Event()
    thread = threading.Thread(target=autoscaler.run, args=(stop,), name="autoscaler", daemon=True)
    thread.start()
    try:
        yield autoscaler
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the autoscaler loop did not stop"


@contextmanager
def local_fleet(
    conn: redis.Redis, settings: Settings, log_file: Path, interval: float = 0.05
) -> Iterator[tuple[LocalDeployment, Autoscaler]]:
    """Real task-worker processes from zero, sized by a running autoscaler on ``settings``, for the block."""
    deployment = LocalDeployment(
        conn,
        settings.child_env(REDIS_URL=settings.redis_url, LOG_FORMAT="json"),
        settings.queues,
        replicas=0,
        log_file=log_file,
    ).start()
    autoscaler = Autoscaler(conn, settings.queues, deployment, bounds_from(settings), interval)
    try:
        with running(autoscaler):
            yield deployment, autoscaler
    finally:
        deployment.close(timeout=10)


def run(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a project command to completion, capturing stdout and stderr separately."""
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The structured log lines this process writes during the test."""
    buffer = io.StringIO()
    configure_logging("INFO", "json", buffer)
    yield lambda: [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    configure_logging("INFO", "json")
