"""Due scheduled jobs (retries with backoff, ``enqueue_at``) moved onto their queues by the autoscaler.

RQ's scheduler lives inside workers, so with the workers scaled to zero nothing would ever enqueue a retry
and nothing would scale the workers back up for it. The autoscaler always runs, so it also takes RQ's
per-queue scheduler locks and does the scheduler's work; workers that hold a lock keep doing it instead.
"""

from __future__ import annotations

import logging

import redis
from rq.scheduler import RQScheduler
from rq.serializers import Serializer


class DueJobMover:
    def __init__(
        self, connection: redis.Redis, queues: tuple[str, ...], serializer: Serializer, interval: float
    ) -> None:
        self.queues = set(queues)
        # RQ's lock TTL is interval + 60 seconds; a whole number keeps its arithmetic exact.
        self._scheduler = RQScheduler(
            list(queues),
            connection,
            interval=max(1, round(interval)),
            serializer=serializer,
            # RQ sets this logger's level itself; keep whatever our logging setup chose for RQ.
            logging_level=logging.getLogger("rq.scheduler").getEffectiveLevel(),
        )

    def tick(self) -> None:
        """Take any free lock (each tick: a worker that held one may have exited), then enqueue what is due."""
        if self._scheduler.acquired_locks != self.queues:
            self._scheduler.acquire_locks()
        if self._scheduler.acquired_locks:
            self._scheduler.heartbeat()
            self._scheduler.enqueue_scheduled_jobs()

    def close(self) -> None:
        self._scheduler.release_locks()
