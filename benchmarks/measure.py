"""One measurement each: enqueue rates, drain rate, enqueue-to-start latency, Redis bytes per queued task."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from benchmarks.systems import BATCH, System
from benchmarks.tasks import DONE_KEY, LATENCY_KEY

POLL = 0.002
"""Seconds between two looks at a queue's length while a drain runs."""


@contextmanager
def fleet(commands: list[list[str]], env: dict[str, str]) -> Iterator[None]:
    """Worker processes, each in its own process group, stopped (and their children) at the end."""
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        for cmd in commands
    ]
    try:
        yield
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def enqueue_rate(connection: redis.Redis, system: System, n: int, batch: bool) -> float | None:
    """Tasks per second written to the queue, one call each or ``BATCH`` per call."""
    if batch and system.enqueue_batch is None:
        return None
    connection.flushall()
    started = time.perf_counter()
    if batch:
        assert system.enqueue_batch is not None
        for _ in range(n // BATCH):
            system.enqueue_batch("noop", BATCH)
    else:
        for _ in range(n):
            system.enqueue("noop", ())
    rate = n / (time.perf_counter() - started)
    connection.flushall()
    return rate


def fill(connection: redis.Redis, system: System, n: int) -> None:
    """N no-op tasks, then the sentinel, queued before any worker starts."""
    if system.enqueue_batch is not None:
        for done in range(0, n, BATCH):
            system.enqueue_batch("noop", min(BATCH, n - done))
    else:
        for _ in range(n):
            system.enqueue("noop", ())
    system.enqueue("mark_done", ())


def drain_rate(
    connection: redis.Redis, system: System, commands: list[list[str]], env: dict[str, str], n: int, timeout: float
) -> float:
    """Tasks per second from the first pop to the sentinel task's run (worker start-up is not counted)."""
    connection.flushall()
    fill(connection, system, n)
    queued = connection.llen(system.queue_key)
    with fleet(commands, env):
        deadline = time.monotonic() + timeout
        while connection.llen(system.queue_key) >= queued:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{system.name}: no task was taken within {timeout:.0f}s")
            time.sleep(POLL)
        first_pop = time.time()
        while (done := connection.get(DONE_KEY)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{system.name}: {n} tasks not drained within {timeout:.0f}s")
            time.sleep(POLL * 5)
    connection.flushall()
    return n / (float(done) - first_pop)


def paired_pop_rates(
    queues: list[tuple[redis.Redis, System, int, dict[str, str]]], command: list[str], window: int, rounds: int
) -> list[list[float]]:
    """Tasks per second of one worker popping from each of ``queues`` (a connection to its own Redis, the system
    on it, the depth it is kept at, the worker's environment for that Redis), in turns: a fresh worker per turn, a
    first window of ``window`` pops to settle, then one counted window. The turns alternate, so a machine whose
    speed drifts from one minute to the next weighs on every depth alike (measured one after the other, a 10 %
    drift reads as a cost of depth). A queue short of its depth by more than a tenth, or than a turn's pops, is
    filled again before its turn. Is the cost per task flat in the depth of the queue?"""
    rates: list[list[float]] = [[] for _ in queues]
    for _ in range(rounds):
        for (connection, system, depth, env), measured in zip(queues, rates, strict=True):
            if connection.llen(system.queue_key) < depth - max(2 * window, depth // 10):
                connection.flushall()
                fill(connection, system, depth)
            queued = connection.llen(system.queue_key)
            with fleet([command], env):
                while connection.llen(system.queue_key) >= queued:
                    time.sleep(POLL)
                for counted in (False, True):
                    started, start_left = time.perf_counter(), connection.llen(system.queue_key)
                    while (left := connection.llen(system.queue_key)) > start_left - window:
                        time.sleep(POLL)
                    if counted:
                        measured.append((start_left - left) / (time.perf_counter() - started))
    for connection, *_ in queues:
        connection.flushall()
    return rates


def latency_ms(
    connection: redis.Redis, system: System, command: list[str], env: dict[str, str], samples: int
) -> tuple[float, float]:
    """p50 and p99 of enqueue-to-start, one task at a time to an idle worker."""
    connection.flushall()
    delays = []
    with fleet([command], env):
        system.enqueue("stamp", (time.time(),))  # wait for the worker to be up
        if connection.blpop([LATENCY_KEY], timeout=60) is None:
            raise TimeoutError(f"{system.name}: the worker did not start")
        for _ in range(samples):
            time.sleep(0.02)  # idle
            system.enqueue("stamp", (time.time(),))
            reply = connection.blpop([LATENCY_KEY], timeout=10)
            if reply is None:
                raise TimeoutError(f"{system.name}: a latency probe did not run")
            delays.append(float(reply[1]) * 1000)
    connection.flushall()
    quantiles = statistics.quantiles(delays, n=100)
    return statistics.median(delays), quantiles[98]


def bytes_per_task(connection: redis.Redis, system: System, n: int) -> float:
    """Redis memory per queued no-op task (used_memory before and after queuing ``n``)."""
    connection.flushall()
    before = int(connection.info("memory")["used_memory"])
    fill(connection, system, n)
    after = int(connection.info("memory")["used_memory"])
    connection.flushall()
    return (after - before) / n
