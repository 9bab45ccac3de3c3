"""The RQ worker made to outlive what RQ's own loop does not: a Redis outage, foreign data under its keys, and
workers that died without a word.

RQ's worker quits its loop on a lost connection, logs every retry of its pub/sub thread, keeps a dead worker's
key for 8 minutes, waits up to 10 minutes to start its scheduler again after an outage, and fails the job of a
dead worker on its next maintenance pass. Here an outage is logged once (``OutageLog``) and waited out, every
heartbeat is good for ``abandon_after`` seconds only, and the reaper requeues dead workers' jobs within seconds
(``task_processor.reaper``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.client import Pipeline
from rq.job import Job
from rq.utils import now
from rq.worker import BaseWorker, SimpleWorker

from task_processor.connection import OutageLog
from task_processor.errors import first_line
from task_processor.logs import get_logger
from task_processor.reaper import Reaper
from worker.dequeue import DEQUEUE_POLL
from worker.fastpath import END_PATIENCE, END_RETRY_PAUSE

PUBSUB_WAIT = 1.0
"""Seconds the command channel's thread waits for a message before it looks again (and may be closed)."""

END_WAITS = "Redis is away as the job ends; its end is tried again until Redis is back"

T = TypeVar("T")

log = get_logger("task_processor.worker")


def subscribe_briefly(worker: BaseWorker) -> None:
    """RQ's ``subscribe`` (the command channel: ``rq`` stop-job and shutdown commands), its thread waking every
    ``PUBSUB_WAIT`` seconds: RQ's waits 60 s for a message, and closing the subscription as the worker stops waits
    for that read to end."""
    worker.pubsub = worker.connection.pubsub()
    worker.pubsub.subscribe(**{worker.pubsub_channel_name: worker.handle_payload})
    worker.pubsub_thread = worker.pubsub.run_in_thread(  # type: ignore[assignment]  # RQ annotates it None
        sleep_time=PUBSUB_WAIT, daemon=True, exception_handler=worker._pubsub_exception_handler
    )


class ResilientWorker(SimpleWorker):
    """RQ's in-process worker, surviving Redis outages and foreign data, reaping dead workers' jobs."""

    def __init__(
        self,
        *args: Any,
        abandon_after: int = 30,
        max_abandons: int = 3,
        outage: OutageLog | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        # The worker's key and its running job's started entry live this long without a heartbeat; a
        # heartbeat comes every third of it, so only a dead worker lets them lapse (and the reaper act).
        self.abandon_after = abandon_after
        self.heartbeat_interval = abandon_after / 3
        self.reaper = Reaper(self.connection, tuple(self.queue_names()), self.serializer, max_abandons)
        self._reaped_at = 0.0
        self.outage = outage or OutageLog()  # shared by the slots of one process: one pair of lines per outage
        self.pool: str | None = None
        """WORKER_POOL, recorded in the worker's hash (``pool``) so the autoscaler counts its jobs for its pool."""

    def _set_ip_address(self, connection: redis.Redis) -> None:
        # RQ lists every client of the server (CLIENT LIST, an admin command a worker's ACL user is refused) to
        # find its own address; CLIENT INFO tells this connection's alone.
        try:
            connection.client_setname(self.name)
            address = connection.client_info().get("addr")
        except redis.ResponseError:
            address = None
        self.ip_address = address.decode() if isinstance(address, bytes) else str(address or "unknown")

    def maintain(self) -> None:
        """Between pops: RQ's maintenance when due, and a reaper pass every heartbeat interval (so idle workers
        requeue a dead worker's job within seconds)."""
        if self.should_run_maintenance_tasks:
            self.run_maintenance_tasks()
        if time.monotonic() - self._reaped_at > self.heartbeat_interval:
            self._reaped_at = time.monotonic()
            self.reaper.run()

    def outlasting_outage(self, job: Job, record: Callable[[], T]) -> T:
        """``record()`` (a job's end), tried again while Redis is away, for up to END_PATIENCE of TASK_ABANDON_AFTER:
        a Sentinel failover takes seconds, far longer than a connection's own retries, and a job whose end went
        unrecorded runs again once the reaper sees it. ``record`` must be safe to send twice (finish.lua is)."""
        patience = self.abandon_after * END_PATIENCE
        deadline = time.monotonic() + patience
        waited = False
        while True:
            try:
                recorded = record()
            except redis.ConnectionError as exc:
                if time.monotonic() + END_RETRY_PAUSE > deadline:
                    raise
                if not waited:
                    waited = True
                    self.outage.failed(exc)
                    log.warning(END_WAITS, job_id=job.id, for_seconds=patience)
                time.sleep(END_RETRY_PAUSE)
                continue
            if waited:
                self._check_reconnected()  # "reconnected", and RQ's scheduler started again if the outage killed it
            return recorded

    def _check_reconnected(self) -> None:
        """After an outage, start RQ's scheduler again now if it died of it (RQ would wait for a maintenance pass,
        up to 10 minutes, leaving due retries and ``enqueue_in`` jobs where they are)."""
        if not self.outage.succeeded() or self.scheduler is None:
            return
        process = self.scheduler._process
        if process is None or not process.is_alive():
            self.scheduler.acquire_locks(auto_start=True)

    def get_heartbeat_ttl(self, job: Job) -> int:
        return self.abandon_after

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        # RQ keeps an idle worker's key for worker_ttl + 60 s (8 minutes): a dead worker would linger in
        # rq:workers and the dashboard that long. Here every heartbeat is good for abandon_after seconds.
        with self.outage.tolerated():  # RQ's loop would quit on a lost Redis; the dequeue loop backs off instead
            super().heartbeat(self.abandon_after, pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        with self.outage.tolerated():
            super().check_for_suspension(burst)

    def run_maintenance_tasks(self) -> None:
        with self.outage.tolerated():
            super().run_maintenance_tasks()

    def _pubsub_exception_handler(self, exc: Exception, pubsub: Any, pubsub_thread: Any) -> None:
        if not isinstance(exc, redis.ConnectionError):
            super()._pubsub_exception_handler(exc, pubsub, pubsub_thread)
            return
        self.outage.failed(exc)  # RQ would log every retry
        time.sleep(DEQUEUE_POLL)

    def subscribe(self) -> None:
        subscribe_briefly(self)

    def register_birth(self) -> None:
        self.reaper.set_aside_foreign_data()  # RQ's SADD to rq:workers would fail on foreign data there
        super().register_birth()
        if self.pool:
            self.connection.hset(self.key, "pool", self.pool)

    def clean_registries(self) -> None:
        # Before RQ's own cleanup, which would move abandoned jobs to the failed registry.
        self.reaper.run()
        try:
            super().clean_registries()
        except (redis.ResponseError, UnicodeDecodeError) as exc:
            # Foreign data under a queue's keys: RQ's pass gives up on it, the worker must not. The reaper
            # has already done the part that matters here (abandoned and stranded jobs).
            log.error("RQ's registry cleanup failed; skipped until the next pass", error=first_line(exc))
            self.last_cleaned_at = now()  # type: ignore[assignment]  # RQ annotates it None, sets a datetime
