"""``Task``: one call to enqueue, with RQ's options; ``Producer.prepare`` checks it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

RETRY_BACKOFF = 1
"""Seconds before the first retry; each further retry waits twice as long (capped by RETRY_BACKOFF_CAP)."""


@dataclass(frozen=True)
class Task:
    """One call to enqueue. ``kwargs`` are the task's own keyword arguments, so any name is allowed there.

    The options after ``queue`` are RQ's (README, "Job options"): ``delay`` (seconds or a timedelta) or ``at``
    (an aware datetime) schedule the job; ``depends_on`` (a job, an id, an ``rq.Dependency`` or a list) defers
    it until its dependencies finished; ``meta``, ``result_ttl``, ``failure_ttl``, ``ttl`` and ``description`` are
    stored with it; ``on_success``/``on_failure``/``on_stopped`` name callbacks (dotted paths, functions or
    ``rq.Callback``); ``unique`` refuses a ``job_id`` that is already live.
    """

    func: str | Callable[..., Any]
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    timeout: int | None = None
    retries: int = 0
    retry_backoff: int = RETRY_BACKOFF
    at_front: bool = False
    queue: str | None = None
    delay: float | timedelta | None = None
    at: datetime | None = None
    depends_on: Any = None
    meta: Mapping[str, Any] | None = None
    result_ttl: int | None = None
    failure_ttl: int | None = None
    ttl: int | None = None
    description: str | None = None
    on_success: Any = None
    on_failure: Any = None
    on_stopped: Any = None
    unique: bool = False


OPTIONS = frozenset(name for name in Task.__dataclass_fields__ if name not in ("func", "args", "kwargs"))
"""Keywords ``enqueue`` takes as options; every other keyword goes to the task."""
