"""The benchmark's tasks, one set of plain functions that every system runs (RQ and task-worker by dotted path,
Celery and Dramatiq through the thin wrappers in ``celery_app.py`` and ``dramatiq_app.py``)."""

from __future__ import annotations

import os
import time
from functools import cache

import redis

DONE_KEY = "bench:done"
"""Set (to the time it ran) by the sentinel task queued behind a drain's no-ops."""

LATENCY_KEY = "bench:latency"
"""List the latency task pushes its enqueue-to-start delay onto."""


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def noop() -> None:
    """What a drain measures: the queue's own cost per task."""


def mark_done() -> None:
    _redis().set(DONE_KEY, repr(time.time()))


def stamp(sent_at: float) -> None:
    started = time.time()
    _redis().rpush(LATENCY_KEY, repr(started - sent_at))
