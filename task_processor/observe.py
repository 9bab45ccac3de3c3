"""Cheap reads of RQ's own bookkeeping: queue counts, worker states and the queues' oldest jobs, each in one round trip.

RQ's ``Worker.all()`` and registry ``count`` cost one or two round trips per worker or registry (and run
cleanups); the autoscaler polls every second, the probe runs every few seconds, so both read the same keys
in a single pipeline instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis

from task_processor import keys, scripts
from task_processor.jobs import parse_time

WORKER_FIELDS = (
    "hostname",
    "pid",
    "state",
    "current_job",
    "queues",
    "last_heartbeat",
    "death",
    "successful_job_count",
    "failed_job_count",
    "total_working_time",
    "pool",
)


@dataclass(frozen=True)
class QueueCounts:
    """What a queue holds, by RQ registry. ``started`` counts only entries whose heartbeat has not expired."""

    queued: int = 0
    started: int = 0
    failed: int = 0
    finished: int = 0
    scheduled: int = 0
    deferred: int = 0

    @property
    def total(self) -> int:
        """Every job the queue's registries hold: it grows by one per arrival (clean-ups make it shrink)."""
        return self.queued + self.started + self.failed + self.finished + self.scheduled + self.deferred


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    hostname: str
    pid: int | None
    state: str
    current_job: str | None
    queues: tuple[str, ...]
    completed: int = 0
    """Jobs the worker has ended (RQ's successful_job_count + failed_job_count)."""
    working_time: float = 0.0
    """Seconds the worker spent on those jobs (RQ's total_working_time)."""
    pool: str | None = None
    """The worker pool it belongs to (WORKER_POOL; None for a worker started without one)."""

    @property
    def busy(self) -> bool:
        return self.state == "busy"


def queue_counts(connection: Redis, queues: tuple[str, ...] | list[str]) -> dict[str, QueueCounts]:
    now = time.time()
    with connection.pipeline(transaction=False) as pipe:
        for name in queues:
            pipe.llen(keys.queue(name))
            pipe.zcount(keys.started(name), now, "+inf")
            pipe.zcard(keys.failed(name))
            pipe.zcard(keys.finished(name))
            pipe.zcard(keys.scheduled(name))
            pipe.zcard(keys.deferred(name))
        replies = pipe.execute()
    per_queue = len(QueueCounts.__dataclass_fields__)
    return {
        name: QueueCounts(*(int(n) for n in replies[i * per_queue : (i + 1) * per_queue]))
        for i, name in enumerate(queues)
    }


def text(value: bytes | str | None, errors: str = "replace") -> str:
    """A Redis reply as text ("" for none). RQ writes UTF-8; foreign bytes under its keys must not make `status` or
    the autoscaler crash, so they are replaced, unless ``errors="strict"`` asks for UnicodeDecodeError."""
    if isinstance(value, str):
        return value
    return value.decode(errors=errors) if value else ""


def list_workers(connection: Redis) -> list[WorkerInfo]:
    """Live workers registered in ``rq:workers`` (entries whose hash expired or that registered death are skipped)."""
    names = sorted(text(key) for key in connection.smembers(keys.WORKERS))
    if not names:
        return []
    with connection.pipeline(transaction=False) as pipe:
        for key in names:
            pipe.hmget(key, WORKER_FIELDS)
        rows = pipe.execute()
    workers = []
    for key, row in zip(names, rows, strict=True):
        hostname, pid, state, current_job, queues, heartbeat, death, succeeded, failed, worked, pool = (
            text(v) for v in row
        )
        if not heartbeat or death:
            continue
        workers.append(
            WorkerInfo(
                name=key.removeprefix(keys.WORKER_PREFIX),
                hostname=hostname,
                pid=int(pid) if pid.isdigit() else None,
                state=state or "?",
                current_job=current_job or None,
                queues=tuple(q for q in queues.split(",") if q),
                completed=_count(succeeded) + _count(failed),
                working_time=_seconds(worked),
                pool=pool or None,
            )
        )
    return workers


def _count(raw: str) -> int:
    return int(raw) if raw.isdigit() else 0  # foreign data under RQ's keys counts as nothing, never crashes


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def queue_head_ages(connection: Redis, queues: Sequence[str], now: float | None = None) -> dict[str, float | None]:
    """Seconds the job at the head of each queue (its oldest, but for jobs put at the front) has waited since it was
    enqueued: None for an empty queue or a head that is not a readable job. One round trip (``queue_heads.lua``)
    whatever the number of queues or jobs."""
    if not queues:
        return {}
    script = scripts.register(connection, "queue_heads")
    heads = script(keys=[keys.queue(q) for q in queues], args=[keys.JOB_PREFIX])
    now = time.time() if now is None else now
    ages: dict[str, float | None] = {}
    for queue, raw in zip(queues, heads, strict=True):
        try:
            enqueued = parse_time(text(raw, errors="strict")).timestamp()  # RQ's own format, parsed as RQ does
        except (ValueError, UnicodeDecodeError):
            ages[queue] = None
        else:
            ages[queue] = max(0.0, now - enqueued)
    return ages


def oldest_waits(connection: Redis, queues: Sequence[str], now: float | None = None) -> dict[str, float]:
    """``queue_head_ages`` with nothing to measure read as 0 s: what the autoscaler's latency rule takes."""
    return {queue: age or 0.0 for queue, age in queue_head_ages(connection, queues, now).items()}
