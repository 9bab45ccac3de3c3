"""The systems compared: how each enqueues, which list holds its queued tasks, how its workers are started.

Every system runs with its defaults (RQ pickles, task-processor uses JSON, Celery and Dramatiq their own
formats), its own Redis client, and the same tasks (``benchmarks/tasks.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

BATCH = 1000
"""Tasks per batch for the batch enqueue rate."""

TUNED_DRAMATIQ = "1 process (1x1, prefetch 64)"
"""Dramatiq's fleet label for one process with one worker thread and a prefetch of 64 messages."""


@dataclass
class System:
    name: str
    queue_key: str
    """The Redis list its queued tasks wait in (its length is what a drain watches)."""
    enqueue: Callable[[str, tuple[Any, ...]], object]
    """Enqueue one task (what it returns is not used)."""
    enqueue_batch: Callable[[str, int], object] | None
    """Enqueue N copies of a task without arguments in one call (None: the system has no batch API)."""
    workers: dict[str, list[list[str]]] = field(default_factory=dict)
    """Fleets by label: the command line of each process."""


def ours(url: str) -> System:
    """task-processor on the Redis at ``url``."""
    from producer import Producer, Task

    producer = Producer(url)
    return System(
        "task-processor",
        "rq:queue:default",
        lambda func, args: producer.enqueue(f"benchmarks.tasks.{func}", *args),
        lambda func, n: producer.enqueue_many([Task(f"benchmarks.tasks.{func}")] * n),
        {
            "1 process": [["task-worker"]],
            "2 processes": [["task-worker"]] * 2,
            "2 processes --concurrency 8": [["task-worker", "--concurrency", "8"]] * 2,
            "2 processes --concurrency 16": [["task-worker", "--concurrency", "16"]] * 2,
        },
    )


def _rq(url: str, worker_class: str, label: str) -> System:
    from rq import Queue

    queue = Queue("default", connection=redis.Redis.from_url(url))

    def batch(func: str, n: int) -> None:
        with queue.connection.pipeline() as pipe:
            queue.enqueue_many([Queue.prepare_data(f"benchmarks.tasks.{func}")] * n, pipeline=pipe)
            pipe.execute()

    worker = ["rq", "worker", "--url", url, "--worker-class", worker_class, "default"]
    return System(
        label,
        "rq:queue:default",
        lambda func, args: queue.enqueue(f"benchmarks.tasks.{func}", *args),
        batch,
        {"1 process": [worker], "2 processes": [worker] * 2},
    )


def _celery(url: str) -> System:
    from benchmarks import celery_app

    base = ["celery", "--app", "benchmarks.celery_app", "worker", "--loglevel", "WARNING"]
    return System(
        "Celery",
        "celery",
        lambda func, args: getattr(celery_app, func).delay(*args),
        None,
        {
            "1 process (solo)": [[*base, "--pool", "solo"]],
            "2 processes (solo)": [[*base, "--pool", "solo"]] * 2,
            "prefork, 2 children": [[*base, "--pool", "prefork", "--concurrency", "2"]],
        },
    )


def _dramatiq(url: str) -> System:
    from benchmarks import dramatiq_app

    base = ["dramatiq", "benchmarks.dramatiq_app"]
    return System(
        "Dramatiq",
        "dramatiq:default",
        lambda func, args: getattr(dramatiq_app, func).send(*args),
        None,
        {
            "1 process (1x1)": [[*base, "--processes", "1", "--threads", "1"]],
            # The fair per-process anchor: one worker thread fed by a deep prefetch (Dramatiq's own tuning knob).
            TUNED_DRAMATIQ: [["env", "dramatiq_queue_prefetch=64", *base, "--processes", "1", "--threads", "1"]],
            "2 processes (2x1)": [[*base, "--processes", "2", "--threads", "1"]],
            "default (2x8)": [[*base, "--processes", "2", "--threads", "8"]],
        },
    )


def _raw(url: str) -> System:
    connection = redis.Redis.from_url(url)

    def one(func: str, args: tuple[Any, ...]) -> None:
        connection.rpush("raw:queue", repr(args[0]) if func == "stamp" else ("done" if func == "mark_done" else func))

    def batch(func: str, n: int) -> None:
        with connection.pipeline(transaction=False) as pipe:
            for _ in range(n):
                pipe.rpush("raw:queue", func)
            pipe.execute()

    popper = [sys.executable, "-m", "benchmarks.raw_pop"]
    return System(
        "raw redis-py (RPUSH/BLMOVE)",
        "raw:queue",
        one,
        batch,
        {"1 process": [popper], "2 processes": [popper] * 2},
    )


def all_systems(url: str) -> list[System]:
    return [
        ours(url),
        _rq(url, "rq.SimpleWorker", "RQ SimpleWorker"),
        _rq(url, "rq.Worker", "RQ Worker (fork)"),
        _celery(url),
        _dramatiq(url),
        _raw(url),
    ]
