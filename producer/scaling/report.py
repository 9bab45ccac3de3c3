"""What the autoscaler publishes in Redis about itself, for ``task-producer status`` and dashboards: its state and
its last decision, in the hash ``task-processor:autoscaler:<deployment>``; and the periodic tasks it fires (TASK_CRON),
in ``task-processor:autoscaler:_cron``. Written and read here only."""

from __future__ import annotations

import enum
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import redis

from task_processor import keys
from task_processor.observe import text


class LoopState(enum.StrEnum):
    """The loop's state: scaling; leaving a manual scale alone for a while; paused by the Deployment's annotation;
    or standing by while another replica holds the Lease."""

    ACTIVE = "active"
    HOLDING = "holding"
    PAUSED = "paused"
    FOLLOWER = "follower"


def _per_queue(raw: str | None) -> dict[str, float]:
    """A JSON object of queue -> number, as ``publish`` writes it; anything else reads as no data."""
    try:
        value: Any = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {
        str(queue): float(number)
        for queue, number in value.items()
        if isinstance(number, int | float) and not isinstance(number, bool) and math.isfinite(number)
    }


def _field(value: object) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, tuple):
        return ",".join(value)
    return "" if value is None else str(value)


def _optional_float(raw: str | None) -> float | None:
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def report_ttl(interval: float) -> int:
    """Seconds a published report lives: ten loop intervals, and at least a minute, so a live loop keeps it and a
    stopped one's goes."""
    return max(60, int(interval * 10))


@dataclass(frozen=True)
class Report:
    """One publication of the loop: what it saw and what it decided. Per queue, the oldest queued job's wait
    (seconds) and the arrival rate (jobs/s); the service rate of one busy worker (jobs/s, None until a job ended)
    and AUTOSCALE_TARGET_WAIT (None when off). A report from an older autoscaler reads with those empty."""

    desired: int
    current: int
    reason: str
    state: LoopState
    queued: int
    in_flight: int
    busy: int
    updated_at: float
    oldest_wait: dict[str, float] = field(default_factory=dict)
    arrival_rate: dict[str, float] = field(default_factory=dict)
    service_rate: float | None = None
    target_wait: float | None = None
    pool: str = "default"
    queues: tuple[str, ...] = ()

    def publish(self, connection: redis.Redis, target: str, ttl: int) -> None:
        """Write the report for ``target``, kept ``ttl`` seconds: a stopped autoscaler's report lapses; and list
        ``target`` in the pool index, from which entries older than ``ttl`` are dropped."""
        key = keys.autoscaler_status(target)
        fields = {name: _field(value) for name, value in vars(self).items()}
        with connection.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.expire(key, ttl)
            pipe.zadd(keys.AUTOSCALER_POOLS, {target: self.updated_at})
            pipe.zremrangebyscore(keys.AUTOSCALER_POOLS, "-inf", f"({self.updated_at - ttl}")
            pipe.expire(keys.AUTOSCALER_POOLS, ttl)
            pipe.execute()

    @staticmethod
    def targets(connection: redis.Redis) -> list[str]:
        """The Deployments with a report, as the pool index lists them (oldest report first)."""
        members: list[bytes] = connection.zrange(keys.AUTOSCALER_POOLS, 0, -1)  # type: ignore[assignment]
        return [text(member) for member in members]

    @classmethod
    def read(cls, connection: redis.Redis, target: str) -> Report | None:
        """The last report for ``target``; None when there is none, or the hash was not written by us."""
        raw: dict[bytes, bytes] = connection.hgetall(keys.autoscaler_status(target))  # type: ignore[assignment]
        fields = {text(k): text(v) for k, v in raw.items()}
        try:
            return cls(
                desired=int(fields["desired"]),
                current=int(fields["current"]),
                reason=fields["reason"],
                state=LoopState(fields.get("state", LoopState.ACTIVE)),
                queued=int(fields.get("queued", 0)),
                in_flight=int(fields.get("in_flight", 0)),
                busy=int(fields.get("busy", 0)),
                updated_at=float(fields["updated_at"]),
                oldest_wait=_per_queue(fields.get("oldest_wait")),
                arrival_rate=_per_queue(fields.get("arrival_rate")),
                service_rate=_optional_float(fields.get("service_rate")),
                target_wait=_optional_float(fields.get("target_wait")),
                pool=fields.get("pool") or "default",
                queues=tuple(q for q in fields.get("queues", "").split(",") if q),
            )
        except (KeyError, ValueError):
            return None

    @property
    def age(self) -> float:
        """Seconds since the report was written."""
        return max(0.0, time.time() - self.updated_at)


@dataclass(frozen=True)
class CronReport:
    """One periodic task as the leading autoscaler last published it: its schedule (UTC), what it enqueues where, and
    its last and next run (unix seconds of the ticks; no last run before its first)."""

    name: str
    schedule: str
    func: str
    queue: str
    next_run: int
    last_run: int | None = None
    last_job_id: str | None = None
    updated_at: float = 0.0

    @staticmethod
    def publish(connection: redis.Redis, reports: Sequence[CronReport], updated_at: float, ttl: int) -> None:
        """Replace the published entries with ``reports`` (an entry dropped from the file goes), kept ``ttl``
        seconds: without a leader to publish them again, they lapse."""
        rows = {r.name: json.dumps(asdict(replace(r, updated_at=updated_at))) for r in reports}
        with connection.pipeline(transaction=True) as pipe:
            pipe.delete(keys.CRON_STATUS)
            if rows:
                pipe.hset(keys.CRON_STATUS, mapping=rows)  # type: ignore[arg-type]
                pipe.expire(keys.CRON_STATUS, ttl)
            pipe.execute()

    @classmethod
    def read_all(cls, connection: redis.Redis) -> list[CronReport]:
        """The published entries by name (none when no leader published them lately); unreadable ones left out."""
        raw: dict[bytes, bytes] = connection.hgetall(keys.CRON_STATUS)  # type: ignore[assignment]
        reports = []
        for value in raw.values():
            try:
                reports.append(cls(**json.loads(text(value))))
            except (TypeError, ValueError):
                continue
        return sorted(reports, key=lambda r: r.name)

    @property
    def age(self) -> float:
        """Seconds since the entry was published."""
        return max(0.0, time.time() - self.updated_at)
