"""What the autoscaler publishes in Redis about itself, for ``task-producer status`` and dashboards: its state and
its last decision, in the hash ``task-processor:autoscaler:<deployment>``. Written and read here only."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Report:
    """One publication of the loop: what it saw and what it decided."""

    desired: int
    current: int
    reason: str
    state: LoopState
    queued: int
    in_flight: int
    busy: int
    updated_at: float

    def publish(self, connection: redis.Redis, target: str, ttl: int) -> None:
        """Write the report for ``target``, kept ``ttl`` seconds: a stopped autoscaler's report lapses."""
        key = keys.autoscaler_status(target)
        fields = {name: str(value) for name, value in vars(self).items()}
        with connection.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.expire(key, ttl)
            pipe.execute()

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
            )
        except (KeyError, ValueError):
            return None

    @property
    def age(self) -> float:
        """Seconds since the report was written."""
        return max(0.0, time.time() - self.updated_at)
