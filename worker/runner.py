"""The RQ worker we run: no fork per task, few Redis round trips per task, warm then cold shutdown.

A Pod (or a local worker process) is already the isolation unit, so jobs run in the worker process itself
(RQ's ``SimpleWorker``); ``--max-jobs`` and ``--max-memory`` recycle the process to bound what a leaky task holds.

RQ's SimpleWorker spends about 14 Redis round trips on one successful job. This worker writes the same keys and
fields in Lua calls (``worker.fastpath``): the finish of a job (result, finished entry, worker counters and state,
its dependents queued) also pops the next jobs and starts them (execution, started entry, worker and job state).
On a deep queue of short jobs a pop takes several (``worker.pacing``), and the finish of each is posted while the
next runs; the finish posted when a quarter of the batch is left pops the next batch. Failures, retries, stops and
repeats go through RQ's own code. One heartbeat thread, started with the worker, keeps the worker, its running job
and the jobs it holds alive.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import uuid4

import redis
import structlog
from redis import Redis
from rq import Queue
from rq.exceptions import DequeueTimeout, DeserializationError, StopRequested
from rq.executions import Execution
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import BaseDeathPenalty
from rq.utils import now
from rq.worker import WorkerStatus

from task_processor.connection import OutageLog
from task_processor.errors import first_line
from task_processor.jobs import ATTEMPT_META_KEY, JobTemplate
from task_processor.logs import get_logger
from task_processor.settings import Settings
from task_processor.taskmodules import TaskModules
from worker import metrics
from worker.batching import BatchedCalls
from worker.dequeue import DEQUEUE_POLL, Dequeuer
from worker.fastpath import FastPath, Posted, PostedFinishes, can_finish_fast
from worker.heartbeat import Heartbeat
from worker.joblog import log_job
from worker.pacing import Pacer
from worker.recycle import Recycler
from worker.resilient import ResilientWorker
from worker.shutdown import Shutdown
from worker.stopjob import SignalDeathPenalty, StopsJobs
from worker.taskjob import TaskJob, current_attempt
from worker.taskqueue import TaskQueue

__all__ = ["TaskWorker", "build_worker", "current_attempt", "worker_name"]  # current_attempt: documented here first

log = get_logger("task_processor.worker")


def worker_name(host: str) -> str:
    """Host (the Pod name on Kubernetes), PID and a random suffix: readable, and unique across restarts."""
    return f"{host}.{os.getpid()}.{uuid4().hex[:6]}"


class TaskWorker(Shutdown, StopsJobs, ResilientWorker):
    """RQ's in-process worker with a lean success path, our logging and our shutdown semantics.

    First SIGTERM/SIGINT: finish the running job, take no new one (RQ's warm shutdown). A second signal stops
    at once (RQ ignores one within a second; we do not) and puts the interrupted job back at the front of its
    queue rather than marking it failed: it did not fail, it was not allowed to finish.
    """

    job_class = TaskJob
    queue_class = TaskQueue
    death_penalty_class: type[BaseDeathPenalty] = SignalDeathPenalty
    log_result_lifespan = False
    log_job_description = False

    def __init__(
        self,
        *args: Any,
        abandon_after: int = 30,
        max_abandons: int = 3,
        outage: OutageLog | None = None,
        calls: BatchedCalls | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, abandon_after=abandon_after, max_abandons=max_abandons, outage=outage, **kwargs)
        self._cold_stop = False
        self._unrecorded: str | None = None  # "start" or "end": that bookkeeping of the running job lost Redis
        self._last_error: str | None = None
        # Shared by the slots of one process: their Lua calls made at the same time go in one round trip.
        self._heartbeat = Heartbeat(self, self.heartbeat_interval)
        self._fast = FastPath(
            self.connection,
            calls or BatchedCalls(self.connection),
            self.key,
            self.name,
            abandon_after,
            starts_on_pop=self.serializer is JSONSerializer,
        )
        self._dequeue = Dequeuer(
            self.connection,
            self._ordered_queues,
            self._fast,
            JobTemplate(self.job_class, self.connection, self.serializer),
            self.check_for_suspension,
            self._heartbeat.lock,
        )
        self._pacer = Pacer()
        self._posted = PostedFinishes(self._fast.calls, self._dequeue.hold)
        self._started_by_pop: Execution | None = None  # the execution of the job taken next, when the pop started it
        self._running_queue: Queue | None = None
        self._running_since = 0.0

    @property
    def cold_stopped(self) -> bool:
        return self._cold_stop

    @property
    def dequeue_timeout(self) -> int:
        return DEQUEUE_POLL

    def work(  # type: ignore[override]
        self,
        burst: bool = False,
        logging_level: str | None = None,
        with_scheduler: bool = False,
        recycler: Recycler | None = None,
    ) -> bool:
        """Run jobs until stopped, the queues are empty (``burst``) or ``recycler`` says the process is spent.

        RQ's loop around the same steps adds three round trips per job (a suspension check, an idle state, a
        heartbeat); here the pop checks suspension, the finish writes the state and a thread heartbeats.
        """
        self.bootstrap(logging_level)
        self.heartbeat()  # RQ's registration keeps the key for 8 minutes; a dead worker must go sooner
        if with_scheduler:
            self._start_scheduler(burst, logging_level)
        self._install_signal_handlers()
        self._heartbeat.start()
        done = 0
        try:
            while not self._stop_requested:
                result = self.dequeue_job_and_maintain_ttl(None if burst else self.dequeue_timeout)
                if result is None:
                    break
                self.execute_job(*result)
                done += 1
                if recycler is not None and (reason := recycler.spent()):
                    log.info("recycling the worker process", worker=self.name, reason=reason)
                    break
        except StopRequested:
            pass  # suspended (`rq suspend`) in burst mode
        except Exception:
            log.exception("found an unhandled exception, quitting", worker=self.name)
        finally:
            self._posted.settle()
            self.give_back_held()
            self._heartbeat.stop()
            self.teardown()
        return done > 0

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Take the next job, a short blocking pop at a time so that a stop request is seen within a second."""
        idle_since = time.monotonic()
        pause = 1.0
        while not self._stop_requested:
            try:
                self._mark_idle()
                self.maintain()
                if not self._dequeue.held and self._posted.popping:
                    self._posted.settle()  # the jobs a posted finish popped come before any later pop's
                self._posted.check()  # a finish that could not reach Redis is posted again (while it may be)
                taken = self._dequeue.take(timeout, self._pacer.batch())
                self._check_reconnected()
            except DequeueTimeout:
                self._check_reconnected()
                if max_idle_time is not None and time.monotonic() - idle_since > max_idle_time:
                    return None
                continue
            except (redis.ConnectionError, redis.ResponseError) as exc:
                # Lost Redis, or a queue key holding foreign data (the other queues still run): back off, retry.
                if isinstance(exc, redis.ConnectionError):
                    self.outage.failed(exc)
                else:
                    log.error("Redis refused a command; retrying", error=first_line(exc), retry_in=pause)
                time.sleep(pause)
                pause = min(pause * 2, self.max_connection_wait_time)
                continue
            if taken is None:
                return None  # burst mode and every queue is empty
            if self._stop_requested:
                self._give_back(taken)
                return None
            self._started_by_pop = taken.execution
            self.reorder_queues(reference_queue=taken.queue)
            return taken.job, taken.queue
        return None

    def hold_popped(self) -> None:
        """Hold the jobs a posted finish popped, once its reply can be read (the heartbeat thread, before its beat).

        Those jobs are started in Redis when the finish runs, but the worker reads the finish's reply only at its
        next exchange with Redis, which a long job puts off: until then no beat would keep them alive, and once
        TASK_ABANDON_AFTER passed the reaper would hand them to another worker while this one still holds them."""
        if self._posted.popping:
            self._posted.settle()

    def maintain_held(self) -> None:
        """Keep alive the jobs a pop took for this worker to run next (the heartbeat thread, under its lock)."""
        self._dequeue.keep_held_alive(self.abandon_after)

    def _mark_idle(self) -> None:
        """Say "idle" in the worker's hash once per wait for work; when Redis is lost meanwhile, the next try says
        it again (RQ's set_state records the state before it writes it)."""
        before = self.get_state()
        if before == WorkerStatus.IDLE:
            return
        try:
            self.set_state(WorkerStatus.IDLE)
        except redis.RedisError:
            self._state = before
            raise
        self.procline(f"Listening on {','.join(self.queue_names())}")

    def execute_job(self, job: Job, queue: Queue) -> None:
        # RQ's SimpleWorker registers the execution and, after the job, the idle state in round trips of their
        # own; here the start and the finish pipelines carry them.
        try:
            self.perform_job(job, queue)
        except redis.ConnectionError as exc:  # RQ's own failure bookkeeping, with Redis gone: the loop backs off
            self.outage.failed(exc)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """Start the job in one Lua call: what RQ's prepare_execution, prepare_job_execution and Job.perform
        write in three round trips (unless the pop that took the job started it already, attempt counted).
        Every pop goes through an intermediate list here; the job leaves it now."""
        execution, self._started_by_pop = self._started_by_pop, None
        if execution is None:
            job.meta[ATTEMPT_META_KEY] = int(job.meta.get(ATTEMPT_META_KEY, 0)) + 1
            assert self._running_queue is not None  # set by perform_job
            with self._recording("start"):
                execution = self._fast.start(job, self._running_queue.intermediate_queue_key)
        # What the start wrote to the worker's hash, on the Python side.
        self._state = WorkerStatus.BUSY
        self.current_job_working_time = 0
        self.last_heartbeat = execution.created_at
        self.execution = execution
        self._heartbeat.running(job)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        # From here on the heartbeat thread leaves the job alone. RQ also rewrites the job's last_heartbeat
        # here, a round trip for a field the job's final state does not need.
        self._heartbeat.idle()
        job.ended_at = now()

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        """RQ's success bookkeeping in one Lua call (RQ's takes four round trips, watching the dependents).

        The same atomic step that marks the job finished queues its dependents, as RQ's enqueue_dependents would:
        a dependent enqueued before it is queued there, one enqueued after sees the job finished (RQ's enqueue
        watches the job's key) and is queued at once, and no death of this worker can come between the finish and
        the dependents' enqueue. The uncommon cases take RQ's own code (which enqueues the dependents itself).
        """
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        with self._recording("end"):
            if self.execution is None or not can_finish_fast(job, result_ttl):
                super().handle_job_success(job, queue, started_job_registry)
                return
            # The next jobs are popped in the same call, unless this worker is to take no more. With the next job
            # held and started, the finish is posted: the next job runs while Redis records it; once a quarter of a
            # batch is left, the posted finish also pops the jobs after those, whose reply comes before they are needed.
            if not self._dequeue.held and self._posted.popping and not self._stop_requested:
                self._posted.settle()  # the jobs it popped are this worker's next ones
            held = None if self._stop_requested else self._dequeue.next_held()
            next_id = held.job_id.decode() if held is not None and held.execution is not None else None
            batch = self._pacer.batch()
            ahead = next_id is not None and len(self._dequeue.held) <= max(1, batch // 4) and not self._posted.popping
            pop_keys = [] if self._stop_requested or (held and not ahead) else self._dequeue.pop_keys
            execution = self.execution
            finished = self.outlasting_outage(
                job, lambda: self._fast.finish(job, execution, result_ttl, pop_keys, batch, next_id)
            )
            self._state = WorkerStatus.IDLE  # as the finish wrote it (Python's state turns busy with the next job)
            if isinstance(finished, Posted):
                self._posted.add(finished)
            else:
                self._dequeue.prefetch(finished.popped, popped=bool(pop_keys))
            self.execution = None
        self._posted.check()

    @contextmanager
    def _recording(self, stage: str) -> Iterator[None]:
        """Recording a job's start or end in Redis. Should Redis go away meanwhile, the job stays where Redis
        has it (its queue's intermediate list, or started): the failure path leaves it there, for the reaper to
        requeue, rather than record a failure the job did not have."""
        try:
            yield
        except redis.ConnectionError as exc:
            self._unrecorded = stage
            self.outage.failed(exc)
            raise

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        # RQ logs the traceback here as a free-text line; our per-job line carries it instead.
        for handler in self._exc_handlers:
            if handler(job, *exc_info) is False:
                break

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry | None = None,
        exc_string: str = "",
    ) -> None:
        # The heartbeat thread leaves the job alone before its end is recorded: a beat after the bookkeeping
        # would put the job back in its started registry (RQ's execution heartbeat is a plain ZADD).
        self._heartbeat.idle()
        if isinstance(job, TaskJob) and job.refusal is not None:
            # Refused code will never be allowed by a retry: the job fails now, with the one line that says why.
            exc_string = job.refusal
            job.retries_left = 0
        self._last_error = exc_string
        if self._unrecorded is not None:
            return  # see _recording
        if not self._cold_stop:
            super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)
            return
        self.requeue_interrupted(job, queue)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        try:
            func = job.func_name
        except DeserializationError:
            func = "<undecodable>"
        structlog.contextvars.bind_contextvars(job_id=job.id, queue=queue.name, func=func)
        metrics.job_started(job)
        self._last_error = None
        started = time.monotonic()
        self._running_queue, self._running_since = queue, started
        self._unrecorded = None
        try:
            return super().perform_job(job, queue)
        finally:
            self._heartbeat.idle()
            seconds = time.monotonic() - started
            self._pacer.ran(seconds)
            self.log_job(job, seconds)
            if self._unrecorded is not None:
                log.warning(
                    f"lost Redis before the {self._unrecorded} of the job was recorded; the reaper will run it again"
                )
            structlog.contextvars.clear_contextvars()

    def log_job(self, job: Job, seconds: float) -> None:
        """The job's one structured line and its metrics (``worker.joblog``)."""
        requeued = None
        if self._cold_stop:
            requeued = "interrupted-requeued"
        elif self._unrecorded is not None:
            requeued = f"{self._unrecorded}-unrecorded"
        refusal = job.refusal if isinstance(job, TaskJob) else None
        log_job(job, seconds, requeued=requeued, refusal=refusal, error=self._last_error)


def build_worker(
    settings: Settings,
    connection: Redis,
    queues: tuple[str, ...] | None = None,
    name: str | None = None,
    worker_class: type[TaskWorker] | None = None,
    outage: OutageLog | None = None,
    calls: BatchedCalls | None = None,
    modules: TaskModules | None = None,
) -> TaskWorker:
    """A worker on ``settings``; the slots of one process share ``outage``, ``calls`` and ``modules``."""
    worker = (worker_class or TaskWorker)(
        list(queues or settings.queues),
        job_class=TaskJob.allowing(modules or TaskModules(settings.task_modules)),
        name=name or worker_name(settings.host),
        connection=connection,
        serializer=settings.serializer,
        abandon_after=settings.abandon_after,
        max_abandons=settings.max_abandons,
        outage=outage,
        calls=calls,
    )
    # RQ records socket.gethostname(); the Pod name is what the autoscaler matches Pods by.
    worker.hostname, worker.pool = settings.host, settings.pool
    return worker
