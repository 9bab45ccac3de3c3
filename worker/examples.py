"""Demo tasks, importable by dotted path (``worker.examples.add``), used by ``run-local`` and the tests."""

from __future__ import annotations

import os
import signal
import time

from redis import Redis
from rq import get_current_job
from rq.job import Job

from worker.taskjob import current_attempt


def noop() -> None:
    """The cheapest possible task: measures the queue, not the work."""


def add(a: float, b: float) -> float:
    return a + b


def sleep(seconds: float) -> float:
    """An I/O-bound task: holds a worker without using its CPU."""
    time.sleep(seconds)
    return seconds


def compute(n: int) -> int:
    """A small CPU-bound task."""
    return sum(i * i for i in range(n))


def fail(message: str = "this task always fails") -> None:
    raise RuntimeError(message)


def flaky(failures: int) -> int:
    """Fails on its first ``failures`` attempts, then succeeds: shows retries with backoff."""
    attempt = current_attempt()
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} of a flaky task failed on purpose")
    return attempt


def crash() -> None:
    """Kill the worker running it, as an OOM kill or a segfault would: a poison task."""
    os.kill(os.getpid(), signal.SIGKILL)


def reset_alarm() -> None:
    """Put back the default SIGALRM action, as a task using signals of its own may leave it."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)


def record(key: str, value: str, seconds: float = 0.0) -> str:
    """Sleep, then append ``value`` to the Redis list ``key``: lets a test see what ran, in what order."""
    time.sleep(seconds)
    job = get_current_job()
    assert job is not None, "record() runs inside a worker"
    job.connection.rpush(key, value)
    return value


def record_current(key: str) -> None:
    """Append this job's id and the job its worker's hash names as current (what ``rq info`` and rq-dashboard show)
    to the Redis list ``key``: lets a test see that the two agree while the job runs."""
    job = get_current_job()
    assert job is not None, "record_current() runs inside a worker"
    current = job.connection.hget(f"rq:worker:{job.worker_name}", "current_job")
    job.connection.rpush(key, f"{job.id} {current.decode() if isinstance(current, bytes) else current}")


_HELD: list[bytearray] = []


def hog(mib: int) -> int:
    """Allocate ``mib`` MiB and keep it for the life of the process, as a leaking task would."""
    _HELD.append(bytearray(mib * 1024 * 1024))
    return sum(len(block) for block in _HELD) // (1024 * 1024)


def note_outcome(job: Job, connection: Redis, *outcome: object) -> None:
    """A callback (``on_success``, ``on_failure`` or ``on_stopped``): appends the job's id and which one it is (RQ
    passes a success callback the result, a failure callback the exception's type, value and traceback, a stopped
    callback nothing) to the Redis list ``callbacks``, so a test sees which callbacks ran, for which jobs."""
    kind = {1: "success", 3: "failure"}.get(len(outcome), "stopped")
    connection.rpush("callbacks", f"{job.id} {kind}")


def note_current(job: Job, connection: Redis, *outcome: object) -> None:
    """A success callback: appends the job's id and what ``get_current_job()`` names as the callback runs (RQ runs
    callbacks after the job, so "none") to the Redis list ``current``."""
    current = get_current_job()
    connection.rpush("current", f"{job.id} {current.id if current is not None else 'none'}")
