"""Taking the next job: highest priority first, atomically out of its queue, and never lost on the way.

Every pop moves the job into its queue's intermediate list in the same atomic step (RQ pops from several queues
with BLPOP, which leaves a job only in the worker's memory), and starts it there when it can (lua/lib/pop.lua). A
finish pops the next jobs in its own call. A pop of a deep queue takes as many jobs as the worker will start
soon (``worker.pacing``), each started in Redis: they wait here, held, until the worker asks for them, and the
heartbeat keeps them alive meanwhile. An entry no RQ code could run (a deleted job, a hash of foreign data) is
cleared out of the way, never allowed to stop the worker.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
from rq import Queue
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.exceptions import DequeueTimeout, NoSuchJobError, StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.worker import WorkerStatus

from task_processor import keys
from task_processor.jobs import JobTemplate
from task_processor.logs import get_logger
from worker.fastpath import SUSPENDED, FastPath, Popped, PopResult
from worker.jobhash import restore

DEQUEUE_POLL = 1
"""Seconds one blocking pop waits before the worker looks at its stop flag again (the warm-stop latency)."""

LOWER_PRIORITY_POLL = 0.2
"""With several queues, seconds a blocking pop waits on the first before the others are tried again."""

log = get_logger("task_processor.worker")


@dataclass(frozen=True, slots=True)
class Taken:
    """A job ready to run, from ``queue``; the pop started it (its attempt counted) when ``execution`` is set."""

    job: Job
    queue: Queue
    execution: Execution | None


class Dequeuer:
    """The pops of one worker over its queues, in priority order."""

    def __init__(
        self,
        connection: redis.Redis,
        queues: Sequence[Queue],
        fast: FastPath,
        jobs: JobTemplate[Job],
        wait_while_suspended: Callable[[bool], None],
        lock: threading.Lock,
    ) -> None:
        self.connection = connection
        self.queues = tuple(queues)
        self._by_key = {q.key: q for q in self.queues}  # a popped job's queue, by the key it was popped from
        self.fast = fast
        self.jobs = jobs
        self.wait_while_suspended = wait_while_suspended  # RQ's check_for_suspension: waits for `rq resume`
        # rq:suspended, then each queue, its intermediate list and its started registry: what a pop looks at.
        self.pop_keys = [keys.SUSPENDED]
        self.pop_keys += [
            key for q in self.queues for key in (q.key, q.intermediate_queue_key, q.started_job_registry.key)
        ]
        self.prefetched: PopResult = None
        """What a finish popped for this worker (see FastPath.finish), until the next take."""
        self.found_empty = False
        """Whether the last pop (a finish's, or the one behind a wait) found every queue empty: the next take then
        waits for work at once, as a pop of its own before the wait would only find the same and cost a round trip
        (a take in burst mode pops all the same: the reaper may have queued a job since)."""
        self.held: deque[Popped] = deque()
        """Jobs taken by a pop and not run yet, in queue order (changed under ``lock``: the heartbeat reads it)."""
        self.lock = lock

    def take(self, timeout: int | None, batch: int = 1) -> Taken | None:
        """The next job (held ones first), moved atomically into its queue's intermediate list, and started in the
        same step when it could; a pop takes up to ``batch`` jobs and holds the others. ``timeout`` None: None
        when every queue is empty (burst); else a short blocking pop, raising DequeueTimeout when nothing came."""
        while True:
            hits, self.prefetched = self.prefetched, None
            found_empty, self.found_empty = self.found_empty, False
            if hits is None and not self.held and not (found_empty and timeout is not None):
                hits = self.fast.pop(self.pop_keys, batch)
            if hits is SUSPENDED:
                self.wait_while_suspended(timeout is None)
                if self.connection.exists(keys.SUSPENDED):
                    raise StopRequested  # the wait ends while still suspended only when the worker is to stop
                continue
            if hits is None and not self.held and timeout is not None:
                # Wait on the first queue, then pop from all of them (a lower one may have filled meanwhile).
                wait = DEQUEUE_POLL if len(self.queues) == 1 else LOWER_PRIORITY_POLL
                hits = self.fast.wait_then_pop(self.pop_keys, batch, self.queues[0].key, wait)
                if hits is not None:
                    self.prefetched = hits
                    continue
                self.found_empty = True
            with self.lock:
                self.held.extend(hits or ())
                hit = self.held.popleft() if self.held else None
            if hit is None:
                if timeout is None:
                    return None
                raise DequeueTimeout(timeout, [q.key for q in self.queues])
            taken = self._ready(hit)
            if taken is not None:
                return taken

    def prefetch(self, hits: PopResult, popped: bool) -> None:
        """Keep what a finish popped (``popped``: whether it popped at all) for the next take."""
        self.prefetched = hits
        self.found_empty = popped and hits is None

    def next_held(self) -> Popped | None:
        """The job the worker runs next, when a pop already took it."""
        return self.held[0] if self.held else None

    def hold(self, hits: PopResult) -> None:
        """Hold the jobs a posted finish popped, behind those held already (a suspension it met is left for the
        next pop to find)."""
        if isinstance(hits, tuple):
            with self.lock:
                self.held.extend(hits)

    def take_held(self) -> list[Taken]:
        """Every job taken and not run (for a stopping worker to give back), in queue order."""
        with self.lock:
            hits = [*self.held, *(self.prefetched if isinstance(self.prefetched, tuple) else ())]
            self.held.clear()
            self.prefetched = None
        return [taken for hit in hits if (taken := self._ready(hit)) is not None]

    def keep_held_alive(self, ttl: int) -> None:
        """The heartbeat of the held jobs the pop started: their executions and started entries live on (called
        under ``lock``, by the heartbeat thread)."""
        started = [hit for hit in self.held if hit.execution is not None]
        if not started:
            return
        with self.connection.pipeline() as pipeline:
            for hit in started:
                queue = self._by_key[hit.queue_key]
                registry = StartedJobRegistry(queue.name, connection=self.connection)
                assert hit.execution is not None
                hit.execution.heartbeat(registry, ttl, pipeline=pipeline)
            pipeline.execute()

    def _ready(self, hit: Popped) -> Taken | None:
        """The popped job, ready to run; None when the entry was no job any RQ code could run (cleared away)."""
        queue = self._by_key[hit.queue_key]
        try:
            job = self._load(hit.job_id.decode(errors="replace"), hit.fields)
        except NoSuchJobError:
            self.connection.lrem(queue.intermediate_queue_key, 1, hit.job_id)  # type: ignore[arg-type]  # deleted
            return None
        except redis.ConnectionError:
            raise
        except Exception as exc:  # a job hash no RQ code could have written: never let it stop the worker
            self._quarantine(queue, hit, exc)
            return None
        # RQ keeps its bookkeeping on the queue named in the job; the job runs from where it was popped.
        job.origin = queue.name
        return Taken(job, queue, hit.execution)

    def _load(self, job_id: str, fields: list[bytes] | None) -> Job:
        """The job, from the hash the pop returned (RQ's ``Job.fetch`` without its round trip, and its
        ``Job.restore`` at a fraction of the cost: ``worker.jobhash``) when it did."""
        if fields is None:
            return self.jobs.job_class.fetch(job_id, connection=self.connection, serializer=self.jobs.serializer)
        job = self.jobs.new(job_id)
        restore(job, dict(zip(fields[::2], fields[1::2], strict=True)))
        return job

    def _quarantine(self, queue: Queue, hit: Popped, exc: Exception) -> None:
        """Take an unreadable job entry out of the way, into the failed registry when it is a job hash (and out
        of this worker's hands when the pop started it: RQ's set_current_job_id(None) and set_state(idle))."""
        job_id = hit.job_id.decode(errors="replace")
        reason = f"unreadable job entry {job_id!r} in queue {queue.name!r} ({type(exc).__name__}: {exc})"
        with self.connection.pipeline() as pipeline:
            pipeline.lrem(queue.intermediate_queue_key, 1, hit.job_id)  # type: ignore[arg-type]  # bytes, as popped
            if hit.execution is not None:
                pipeline.zrem(queue.started_job_registry.key, hit.execution.composite_key)
                pipeline.delete(hit.execution.key)
                pipeline.zrem(keys.executions(job_id), hit.execution.id)
                pipeline.hdel(self.fast.worker_key, "current_job")
                pipeline.hset(self.fast.worker_key, "state", WorkerStatus.IDLE.value)
            if self.connection.type(keys.job(job_id)) == b"hash":
                pipeline.hset(keys.job(job_id), mapping={"status": JobStatus.FAILED.value, "exc_info": reason})
                pipeline.zadd(queue.failed_job_registry.key, {job_id: time.time() + DEFAULT_FAILURE_TTL})
            pipeline.execute()
        log.error("set aside an unreadable job entry", job_id=job_id, queue=queue.name, error=reason)
