"""The autoscaler's housekeeping before it looks at the queues: due scheduled jobs (retries with backoff,
``enqueue_at``) moved onto their queues, and dead workers' jobs requeued.

RQ's scheduler lives inside workers, so with the workers scaled to zero nothing would ever enqueue a retry
and nothing would scale the workers back up for it. The autoscaler always runs, so it also takes RQ's
per-queue scheduler locks and does the scheduler's work; workers that hold a lock keep doing it instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis
from rq.scheduler import RQScheduler
from rq.serializers import Serializer

from task_processor.reaper import Reaper

REAP_INTERVAL = 1.0
"""Seconds between two passes that requeue jobs whose worker died (they then count as queued work)."""


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


class Housekeeper:
    """Both chores for ``queues``, once per pass of the loop that owns them (one pool's, or the fleet's for all)."""

    def __init__(
        self,
        connection: redis.Redis,
        queues: tuple[str, ...],
        serializer: Serializer,
        interval: float,
        max_abandons: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.queues = queues
        self.clock = clock
        self.due_jobs = DueJobMover(connection, queues, serializer, interval)
        self.reaper = Reaper(connection, queues, serializer, max_abandons)
        self._reaped_at = 0.0

    def tick(self) -> None:
        self.due_jobs.tick()
        if self.clock() - self._reaped_at >= REAP_INTERVAL:
            self._reaped_at = self.clock()
            self.reaper.run()  # jobs of dead workers count as queued again before the loop looks

    def close(self) -> None:
        self.due_jobs.close()
