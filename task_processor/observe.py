"""Cheap reads of RQ's own bookkeeping: queue counts and worker states, each in one round trip.

RQ's ``Worker.all()`` and registry ``count`` cost one or two round trips per worker or registry (and run
cleanups); the autoscaler polls every second, the probe runs every few seconds, so both read the same keys
in a single pipeline instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from task_processor import keys

WORKER_FIELDS = ("hostname", "pid", "state", "current_job", "queues", "last_heartbeat", "death")


@dataclass(frozen=True)
class QueueCounts:
    """What a queue holds, by RQ registry. ``started`` counts only entries whose heartbeat has not expired."""

    queued: int = 0
    started: int = 0
    failed: int = 0
    finished: int = 0
    scheduled: int = 0
    deferred: int = 0


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    hostname: str
    pid: int | None
    state: str
    current_job: str | None
    queues: tuple[str, ...]

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
        hostname, pid, state, current_job, queues, heartbeat, death = (text(v) for v in row)
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
            )
        )
    return workers
