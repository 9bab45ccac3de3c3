"""The RQ worker we run: no fork per task, few Redis round trips per task, warm then cold shutdown.

A Pod (or a local worker process) is already the isolation unit, so jobs run in the worker process itself
(RQ's ``SimpleWorker``); ``--max-jobs`` and ``--max-memory`` recycle the process to bound what a leaky task holds.

RQ's SimpleWorker spends about 14 Redis round trips on one successful job. This worker writes the same keys and
fields in Lua calls (``worker.fastpath``): the finish of a job (result, finished entry, worker counters and state)
also pops the next job and starts it (execution, started entry, worker and job state), so a job in a busy queue
costs one call. Failures, retries, stops, repeats and dependents go through RQ's own code. One heartbeat thread,
started with the worker, keeps the worker and its running job alive.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any
from uuid import uuid4

import redis
import structlog
from redis import Redis
from redis.client import Pipeline
from rq import Queue, get_current_job
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.exceptions import DequeueTimeout, DeserializationError, NoSuchJobError, StopRequested
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus, _job_stack
from rq.registry import StartedJobRegistry
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import now
from rq.worker import SimpleWorker, WorkerStatus

from worker import metrics
from worker.batching import BatchedCalls
from worker.connection import OutageLog
from worker.errors import undecodable_job
from worker.fastpath import SUSPENDED, FastPath, Popped, can_finish_fast
from worker.jobs import JobTemplate
from worker.logs import get_logger
from worker.reaper import Reaper
from worker.recycle import Recycler
from worker.settings import Settings
from worker.taskmodules import TaskModules, TaskRefusedError

ATTEMPT_META_KEY = "attempt"
"""``job.meta`` field counting how many times a worker has started the job (1 on the first run)."""

DEQUEUE_POLL = 1
"""Seconds one blocking pop waits before the worker looks at its stop flag again (the warm-stop latency)."""

LOWER_PRIORITY_POLL = 0.2
"""With several queues, seconds a blocking pop waits on the first before the others are tried again."""

OUTCOMES = {
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.SCHEDULED: "retry-scheduled",
    JobStatus.QUEUED: "retry-queued",
    JobStatus.STOPPED: "stopped",
}
"""The ``outcome`` field of the per-job log line, by the status a job ends its run in."""

log = get_logger("task_processor.worker")


def current_attempt() -> int:
    """Which attempt of the current job this is (1-based); for tasks that behave differently on retries."""
    job = get_current_job()
    return int(job.meta.get(ATTEMPT_META_KEY, 1)) if job is not None else 1


def worker_name(host: str) -> str:
    """Host (the Pod name on Kubernetes), PID and a random suffix: readable, and unique across restarts."""
    return f"{host}.{os.getpid()}.{uuid4().hex[:6]}"


class TaskJob(Job):
    """An RQ job that runs only code inside TASK_MODULES, counts its attempts and explains what it cannot run.

    Its function and callbacks resolve through ``modules`` (see ``worker.taskmodules``) instead of RQ's
    ``import_attribute``, which imports any module a job names. A worker makes its own subclass with
    ``allowing``; this base class allows nothing.
    """

    modules = TaskModules(())
    _refusal: str | None = None

    @classmethod
    def allowing(cls, modules: TaskModules) -> type[TaskJob]:
        """This job class with ``modules`` as its trust boundary."""
        return type(cls.__name__, (cls,), {"modules": modules, "__module__": cls.__module__})

    @property
    def refusal(self) -> str | None:
        """Why the job was refused (one line), once it was."""
        return self._refusal

    @property
    def func(self) -> Any:
        if self.func_name is None:
            return None
        if self.instance is not None:
            raise self.modules.refuse(self.func_name, "it is bound to an instance carried in the job")
        return self.modules.resolve(self.func_name)

    def _callback(self, name: str | None) -> Any:
        if name is None or self._refusal is not None:
            return None  # a refused job runs no callback either
        return self.modules.resolve(name)

    @property
    def success_callback(self) -> Any:
        return self._callback(self._success_callback_name)

    @property
    def failure_callback(self) -> Any:
        return self._callback(self._failure_callback_name)

    @property
    def stopped_callback(self) -> Any:
        return self._callback(self._stopped_callback_name)

    def check_allowed(self) -> None:
        """Resolve the function and every callback before any of them runs: one refused refuses the job."""
        try:
            self.func  # noqa: B018
            for name in (self._success_callback_name, self._failure_callback_name, self._stopped_callback_name):
                self._callback(name)
        except TaskRefusedError as exc:
            self._refusal = str(exc)
            raise

    def _deserialize_data(self) -> None:
        try:
            super()._deserialize_data()
        except DeserializationError as exc:
            raise DeserializationError(undecodable_job(self.id, exc.__cause__)) from exc.__cause__

    def perform(self) -> Any:
        # RQ's perform() first removes any expiry from the job hash, in a round trip of its own; the worker's
        # start pipeline has done that already.
        self.check_allowed()
        _job_stack.push(self)
        try:
            self._result = self._execute()
        finally:
            _job_stack.pop()
        return self._result


class TaskWorker(SimpleWorker):
    """RQ's in-process worker with a lean success path, our logging and our shutdown semantics.

    First SIGTERM/SIGINT: finish the running job, take no new one (RQ's warm shutdown). A second signal stops
    at once (RQ ignores one within a second; we do not) and puts the interrupted job back at the front of its
    queue rather than marking it failed: it did not fail, it was not allowed to finish.
    """

    job_class = TaskJob
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
        super().__init__(*args, **kwargs)
        self._cold_stop = False
        self._unrecorded: str | None = None  # "start" or "end": that bookkeeping of the running job lost Redis
        self._last_error: str | None = None
        # The worker's key and its running job's started entry live this long without a heartbeat; a
        # heartbeat comes every third of it, so only a dead worker lets them lapse (and the reaper act).
        self.abandon_after = abandon_after
        self.heartbeat_interval = abandon_after / 3
        self.reaper = Reaper(self.connection, tuple(self.queue_names()), self.serializer, max_abandons)
        self._reaped_at = 0.0
        self.outage = outage or OutageLog()  # shared by the slots of one process: one pair of lines per outage
        # Shared by the slots of one process: their Lua calls made at the same time go in one round trip.
        self._fast = FastPath(self, calls or BatchedCalls(self.connection))
        # rq:suspended, then each queue, its intermediate list and its started registry, highest priority first:
        # what a pop looks at.
        self._pop_keys = [WORKERS_SUSPENDED]
        self._pop_keys += [
            key for q in self._ordered_queues for key in (q.key, q.intermediate_queue_key, q.started_job_registry.key)
        ]
        self._jobs = JobTemplate(self.job_class, self.connection, self.serializer)
        self._prefetched: Popped | str | None = None
        self._started_by_pop: Execution | None = None  # the popped job's execution, when the pop started it
        # The running job, for the heartbeat thread; the lock keeps a heartbeat from reviving a job's execution
        # entries while the job's final bookkeeping removes them.
        self._running: Job | None = None
        self._running_queue: Queue | None = None
        self._running_since = 0.0
        self._job_lock = threading.Lock()
        self._stopped = threading.Event()

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
        beating = threading.Thread(target=self._beat, name=f"heartbeat-{self.name}", daemon=True)
        beating.start()
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
            self._return_prefetched()
            self._stopped.set()
            beating.join()
            self.teardown()
        return done > 0

    def _shutdown(self) -> None:
        # RQ raises StopRequested from the signal handler, which can abort a blocking pop after Redis moved a
        # job to the worker but before the worker saw it: the job would sit in no queue until a cleanup much
        # later. Idle or busy, a warm stop only sets the flag; the dequeue loop looks at it between pops.
        self._stop_requested = True
        self._shutdown_requested_date = now()
        self.set_shutdown_requested_date()

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Pop the next job, a short blocking pop at a time so that a stop request is seen within a second."""
        if self.get_state() != WorkerStatus.IDLE:
            self.set_state(WorkerStatus.IDLE)
            self.procline(f"Listening on {','.join(self.queue_names())}")
        idle_since = time.monotonic()
        pause = 1.0
        while not self._stop_requested:
            try:
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()
                if time.monotonic() - self._reaped_at > self.heartbeat_interval:
                    self._reaped_at = time.monotonic()
                    self.reaper.run()
                result = self._pop(timeout)
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
                    log.error("Redis refused a command; retrying", error=str(exc).splitlines()[0], retry_in=pause)
                time.sleep(pause)
                pause = min(pause * 2, self.max_connection_wait_time)
                continue
            if result is None:
                return None  # burst mode and every queue is empty
            job, queue = result
            if self._stop_requested:
                self._give_back(queue, job)
                return None
            self.reorder_queues(reference_queue=queue)
            return result
        return None

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

    def register_birth(self) -> None:
        self.reaper.set_aside_foreign_data()  # RQ's SADD to rq:workers would fail on foreign data there
        super().register_birth()

    def clean_registries(self) -> None:
        # Before RQ's own cleanup, which would move abandoned jobs to the failed registry.
        self.reaper.run()
        try:
            super().clean_registries()
        except (redis.ResponseError, UnicodeDecodeError) as exc:
            # Foreign data under a queue's keys: RQ's pass gives up on it, the worker must not. The reaper
            # has already done the part that matters here (abandoned and stranded jobs).
            log.error("RQ's registry cleanup failed; skipped until the next pass", error=str(exc).splitlines()[0])
            self.last_cleaned_at = now()

    def _pop(self, timeout: int | None) -> tuple[Job, Queue] | None:
        """The next job, highest priority first, moved atomically into its queue's intermediate list, and
        started in the same step when it could (by the previous job's finish when it could, else now)."""
        queues = {q.key: q for q in self._ordered_queues}
        while True:
            hit, self._prefetched = self._prefetched, None
            if hit is None:
                hit = self._fast.pop(self._pop_keys)
            if hit == SUSPENDED:
                self.check_for_suspension(burst=timeout is None)  # RQ's: waits for `rq resume`
                continue
            if hit is None and timeout is not None:
                first = self._ordered_queues[0]
                wait = DEQUEUE_POLL if len(queues) == 1 else LOWER_PRIORITY_POLL
                job_id = self.connection.blmove(first.key, first.intermediate_queue_key, wait)
                hit = None if job_id is None else Popped(first.key, job_id, None, None)
            if hit is None:
                if timeout is None:
                    return None  # burst mode and every queue is empty
                raise DequeueTimeout(timeout, list(queues))
            assert isinstance(hit, Popped)
            taken = self._take(hit)
            if taken is not None:
                return taken

    def _take(self, hit: Popped) -> tuple[Job, Queue] | None:
        """The popped job, ready to run; None when the entry was no job any RQ code could run (cleared away)."""
        queue = next(q for q in self._ordered_queues if q.key == hit.queue_key)
        try:
            job = self._load(hit.job_id.decode(errors="replace"), hit.fields)
        except NoSuchJobError:
            self.connection.lrem(queue.intermediate_queue_key, 1, hit.job_id)  # a job deleted while queued
            return None
        except redis.ConnectionError:
            raise
        except Exception as exc:  # a job hash no RQ code could have written: never let it stop the worker
            self._quarantine(queue, hit, exc)
            return None
        # RQ keeps its bookkeeping on the queue named in the job; the job runs from where it was popped.
        job.origin = queue.name
        self._started_by_pop = hit.execution
        return job, queue

    def _load(self, job_id: str, fields: list[bytes] | None) -> Job:
        """The job, from the hash the pop returned (RQ's ``Job.fetch`` without its round trip) when it did."""
        if fields is None:
            return self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
        job = self._jobs.new(job_id)
        job.restore(dict(zip(fields[::2], fields[1::2], strict=True)))
        return job

    def _quarantine(self, queue: Queue, hit: Popped, exc: Exception) -> None:
        """Take an unreadable job entry out of the way, into the failed registry when it is a job hash (and out
        of this worker's hands when the pop started it)."""
        job_id = hit.job_id.decode(errors="replace")
        reason = f"unreadable job entry {job_id!r} in queue {queue.name!r} ({type(exc).__name__}: {exc})"
        with self.connection.pipeline() as pipeline:
            pipeline.lrem(queue.intermediate_queue_key, 1, hit.job_id)
            if hit.execution is not None:
                pipeline.zrem(queue.started_job_registry.key, hit.execution.composite_key)
                pipeline.delete(hit.execution.key)
                pipeline.zrem(ExecutionRegistry.key_template.format(job_id), hit.execution.id)
                self.set_current_job_id(None, pipeline=pipeline)
                self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            if self.connection.type(Job.key_for(job_id)) == b"hash":
                pipeline.hset(Job.key_for(job_id), mapping={"status": JobStatus.FAILED.value, "exc_info": reason})
                pipeline.zadd(f"rq:failed:{queue.name}", {job_id: time.time() + DEFAULT_FAILURE_TTL})
            pipeline.execute()
        log.error("set aside an unreadable job entry", job_id=job_id, queue=queue.name, error=reason)

    def _give_back(self, queue: Queue, job: Job) -> None:
        """A job popped after a stop request goes back to the front of its queue, as it was: when the pop had
        started it, the start is undone (its attempt did not happen)."""
        execution, self._started_by_pop = self._started_by_pop, None
        if execution is None:
            with self.connection.pipeline() as pipeline:
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
                pipeline.lpush(queue.key, job.id)
                pipeline.execute()
            return
        attempts = int(job.meta.pop(ATTEMPT_META_KEY, 1)) - 1
        if attempts:
            job.meta[ATTEMPT_META_KEY] = attempts
        elif not job.meta:
            self.connection.hdel(job.key, "meta")  # RQ's save below writes no meta for an empty one
        self.execution = execution
        self.requeue_interrupted(job, queue)

    def _return_prefetched(self) -> None:
        """The job the last finish popped, when the worker stops before running it, goes back too."""
        hit, self._prefetched = self._prefetched, None
        if isinstance(hit, Popped) and (taken := self._take(hit)) is not None:
            job, queue = taken
            self._give_back(queue, job)

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
        self._fast.busy(execution)
        self.execution = execution
        with self._job_lock:
            self._running = job

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        # From here on the heartbeat thread leaves the job alone. RQ also rewrites the job's last_heartbeat
        # here, a round trip for a field the job's final state does not need.
        with self._job_lock:
            self._running = None
        job.ended_at = now()

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        """RQ's success bookkeeping in one Lua call (RQ's takes four round trips, watching the dependents).

        The dependents are read in the same atomic step that marks the job finished: a dependent enqueued before
        it is in that reply, one enqueued after sees the job finished (RQ's enqueue watches the job's key) and is
        queued at once. Dependents are then enqueued by RQ's own code, as are the uncommon cases.
        """
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        with self._recording("end"):
            if self.execution is None or not can_finish_fast(job, result_ttl):
                super().handle_job_success(job, queue, started_job_registry)
                return
            # The next job is popped in the same call, unless this worker is to take no more.
            pop_keys = [] if self._stop_requested else self._pop_keys
            dependents, self._prefetched = self._fast.finish(job, self.execution, result_ttl, pop_keys)
            self.execution = None
            if dependents:
                queue.enqueue_dependents(job)

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

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        log.warning("cold shutdown: interrupting the running job", signal=signal.Signals(signum).name)
        self._cold_stop = True
        raise SystemExit(1)

    def handle_warm_shutdown_request(self) -> None:
        log.info("warm shutdown: finishing the running job, taking no new one; signal again to stop at once")

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

    def requeue_interrupted(self, job: Job, queue: Queue) -> None:
        """Put a job a cold stop interrupted back at the front of its queue (it did not fail)."""
        # Queued again before the started entry goes: at every moment the job is somewhere a worker will find it.
        queue.enqueue_job(job, at_front=True)
        with self.connection.pipeline() as pipeline:
            self.cleanup_execution(job, pipeline=pipeline)
            pipeline.execute()

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
            with self._job_lock:
                self._running = None
            self._log_outcome(job, time.monotonic() - started)
            if self._unrecorded is not None:
                log.warning(
                    f"lost Redis before the {self._unrecorded} of the job was recorded; the reaper will run it again"
                )
            structlog.contextvars.clear_contextvars()

    def _beat(self) -> None:
        """Until the worker stops, keep it and its running job alive (RQ's in-process worker does not: a long
        job would look abandoned, and a dead worker's job would look alive for its timeout)."""
        while not self._stopped.wait(self.heartbeat_interval):
            try:
                with self._job_lock:
                    if self._running is None:
                        self.heartbeat()
                    else:
                        self.maintain_heartbeats(self._running)
            except redis.ConnectionError as exc:
                self.outage.failed(exc)
            except redis.RedisError as exc:
                log.warning("heartbeat failed; will retry", error=str(exc).splitlines()[0])

    def _log_outcome(self, job: Job, seconds: float) -> None:
        """The job's one structured line and its metrics."""
        requeued = self._cold_stop or self._unrecorded is not None
        metrics.job_ended(job, seconds, interrupted=requeued)
        fields: dict[str, Any] = {
            "attempt": int(job.meta.get(ATTEMPT_META_KEY, 1)),
            "duration_ms": round(seconds * 1000, 2),
        }
        if requeued:
            outcome = "interrupted-requeued" if self._cold_stop else f"{self._unrecorded}-unrecorded"
            log.warning("job", outcome=outcome, **fields)
            return
        outcome = OUTCOMES.get(job.get_status(refresh=False), str(job.get_status(refresh=False)))
        if isinstance(job, TaskJob) and job.refusal is not None:
            log.error("job", outcome="refused", error=job.refusal, **fields)
            return
        if self._last_error is None:
            log.info("job", outcome=outcome, **fields)
            return
        error = self._last_error.strip().splitlines()[-1] if self._last_error.strip() else "unknown error"
        level = log.error if outcome == "failed" else log.warning
        level("job", outcome=outcome, error=error, traceback=self._last_error, **fields)


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
    worker.hostname = settings.host
    return worker
