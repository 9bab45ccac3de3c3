"""The RQ worker we run: no fork per task, one structured line per job, warm then cold shutdown.

A Pod (or a local worker process) is already the isolation unit, so jobs run in the worker process itself
(RQ's ``SimpleWorker``); ``--max-jobs`` recycles the process to bound what a leaky task can hold.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType
from typing import Any
from uuid import uuid4

import redis
import structlog
from redis import Redis
from redis.client import Pipeline
from rq import Queue, get_current_job
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.exceptions import DequeueTimeout, DeserializationError, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.utils import now
from rq.worker import SimpleWorker, WorkerStatus

from worker import metrics
from worker.connection import OutageLog
from worker.errors import TaskProcessorError, undecodable_job
from worker.logs import get_logger
from worker.reaper import Reaper
from worker.settings import Settings

ATTEMPT_META_KEY = "attempt"
"""``job.meta`` field counting how many times a worker has started the job (1 on the first run)."""

DEQUEUE_POLL = 1
"""Seconds one blocking pop waits before the worker looks at its stop flag again (the warm-stop latency)."""

LOWER_PRIORITY_POLL = 0.2
"""With several queues, seconds a blocking pop waits on the first before the others are tried again."""

# KEYS: queue, its intermediate list, next queue, its intermediate list... in priority order.
# Moves the first job found into its queue's intermediate list: a popped job always exists in Redis.
# A key that is not a list (foreign data) is passed over, so it cannot stop the other queues.
_POP_ANY = """
for i = 1, #KEYS, 2 do
  if redis.call('TYPE', KEYS[i])['ok'] == 'list' then
    local id = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
    if id then return {KEYS[i], id} end
  end
end
return false
"""

OUTCOMES = {
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.SCHEDULED: "retry-scheduled",
    JobStatus.QUEUED: "retry-queued",
    JobStatus.STOPPED: "stopped",
}
"""The ``outcome`` field of the per-job log line, by the status a job ends its run in."""

log = get_logger("task_processor.worker")


class TaskNotFoundError(TaskProcessorError, ImportError):
    """The job names a function the worker cannot import."""


def current_attempt() -> int:
    """Which attempt of the current job this is (1-based); for tasks that behave differently on retries."""
    job = get_current_job()
    return int(job.meta.get(ATTEMPT_META_KEY, 1)) if job is not None else 1


def worker_name(host: str) -> str:
    """Host (the Pod name on Kubernetes), PID and a random suffix: readable, and unique across restarts."""
    return f"{host}.{os.getpid()}.{uuid4().hex[:6]}"


class TaskJob(Job):
    """An RQ job that counts its attempts and explains a function it cannot import."""

    @property
    def func(self) -> Any:
        try:
            func = super().func
        except (ImportError, AttributeError, ValueError) as exc:
            raise TaskNotFoundError(
                f"cannot import task function {self.func_name!r} ({exc}): check the dotted path and that "
                "its module is installed where the workers run"
            ) from exc
        if not callable(func):
            raise TaskNotFoundError(f"task function {self.func_name!r} is a {type(func).__name__}, not a function")
        return func

    def _deserialize_data(self) -> None:
        try:
            super()._deserialize_data()
        except DeserializationError as exc:
            raise DeserializationError(undecodable_job(self.id, exc.__cause__)) from exc.__cause__

    def prepare_for_execution(self, worker_name: str, pipeline: Pipeline) -> None:
        # Written in the same pipeline RQ uses to mark the job started: no extra round trip.
        self.meta[ATTEMPT_META_KEY] = int(self.meta.get(ATTEMPT_META_KEY, 0)) + 1
        pipeline.hset(self.key, "meta", self.serializer.dumps(self.meta))
        super().prepare_for_execution(worker_name, pipeline)


class TaskWorker(SimpleWorker):
    """RQ's in-process worker with our logging and shutdown semantics.

    First SIGTERM/SIGINT: finish the running job, take no new one (RQ's warm shutdown). A second signal stops
    at once (RQ ignores one within a second; we do not) and puts the interrupted job back at the front of its
    queue rather than marking it failed: it did not fail, it was not allowed to finish.
    """

    job_class = TaskJob
    log_result_lifespan = False
    log_job_description = False

    def __init__(self, *args: Any, abandon_after: int = 30, max_abandons: int = 3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cold_stop = False
        self._last_error: str | None = None
        # The worker's key and its running job's started entry live this long without a heartbeat; a
        # heartbeat comes every third of it, so only a dead worker lets them lapse (and the reaper act).
        self.abandon_after = abandon_after
        self.heartbeat_interval = abandon_after / 3
        self.reaper = Reaper(self.connection, tuple(self.queue_names()), self.serializer, max_abandons)
        self._reaped_at = 0.0
        self._pop_any = self.connection.register_script(_POP_ANY)
        self.outage = OutageLog()

    @property
    def cold_stopped(self) -> bool:
        return self._cold_stop

    @property
    def dequeue_timeout(self) -> int:
        return DEQUEUE_POLL

    def _shutdown(self) -> None:
        # RQ raises StopRequested from the signal handler, which can abort a blocking pop after Redis moved a
        # job to the worker but before the worker saw it: the job would sit in no queue until a cleanup much
        # later. Idle or busy, a warm stop only sets the flag; the dequeue loop looks at it between pops.
        self._stop_requested = True
        self.set_shutdown_requested_date()

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Pop the next job, a short blocking pop at a time so that a stop request is seen within a second."""
        self.set_state(WorkerStatus.IDLE)
        self.procline(f"Listening on {','.join(self.queue_names())}")
        idle_since = time.monotonic()
        pause = 1.0
        while not self._stop_requested:
            try:
                if (
                    self.last_heartbeat is None
                    or (now() - self.last_heartbeat).total_seconds() > self.heartbeat_interval
                ):
                    self.heartbeat()
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()
                if time.monotonic() - self._reaped_at > self.heartbeat_interval:
                    self._reaped_at = time.monotonic()
                    self.reaper.run()
                result = self._pop(timeout)
                self.outage.succeeded()
            except DequeueTimeout:
                self.outage.succeeded()
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
                self._give_back(job, queue)
                return None
            self.reorder_queues(reference_queue=queue)
            return result  # no heartbeat here: preparing the job heartbeats in the same pipeline
        return None

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

    def execute_job(self, job: Job, queue: Queue) -> None:
        try:
            super().execute_job(job, queue)
        except redis.ConnectionError as exc:  # RQ's bookkeeping of the job's end: the job stays "started"
            self.outage.failed(exc)
            log.warning(
                "lost Redis before the end of the job was recorded; the reaper will run it again",
                job_id=job.id,
                queue=queue.name,
            )

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

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        # Every pop goes through an intermediate list here (RQ only uses one for single-queue workers).
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def _pop(self, timeout: int | None) -> tuple[Job, Queue] | None:
        """The next job, highest priority first, moved atomically into its queue's intermediate list."""
        queues = {q.key: q for q in self._ordered_queues}
        keys = [key for q in self._ordered_queues for key in (q.key, q.intermediate_queue_key)]
        while True:
            hit = self._pop_any(keys=keys)
            if hit is None and timeout is not None:
                first = self._ordered_queues[0]
                wait = DEQUEUE_POLL if len(queues) == 1 else LOWER_PRIORITY_POLL
                job_id = self.connection.blmove(first.key, first.intermediate_queue_key, wait)
                hit = None if job_id is None else [first.key.encode(), job_id]
            if hit is None:
                if timeout is None:
                    return None  # burst mode and every queue is empty
                raise DequeueTimeout(timeout, list(queues))
            queue, job_id = queues[hit[0].decode()], hit[1].decode(errors="replace")
            try:
                job = self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
            except NoSuchJobError:
                self.connection.lrem(queue.intermediate_queue_key, 1, hit[1])  # a job deleted while queued
                continue
            except redis.ConnectionError:
                raise
            except Exception as exc:  # a job hash no RQ code could have written: never let it stop the worker
                self._quarantine(queue, hit[1], exc)
                continue
            # RQ keeps its bookkeeping on the queue named in the job; the job runs from where it was popped.
            job.origin = queue.name
            return job, queue

    def _quarantine(self, queue: Queue, raw_id: bytes, exc: Exception) -> None:
        """Take an unreadable job entry out of the way, into the failed registry when it is a job hash."""
        job_id = raw_id.decode(errors="replace")
        reason = f"unreadable job entry {job_id!r} in queue {queue.name!r} ({type(exc).__name__}: {exc})"
        with self.connection.pipeline() as pipeline:
            pipeline.lrem(queue.intermediate_queue_key, 1, raw_id)
            if self.connection.type(Job.key_for(job_id)) == b"hash":
                pipeline.hset(Job.key_for(job_id), mapping={"status": JobStatus.FAILED.value, "exc_info": reason})
                pipeline.zadd(f"rq:failed:{queue.name}", {job_id: time.time() + DEFAULT_FAILURE_TTL})
            pipeline.execute()
        log.error("set aside an unreadable job entry", job_id=job_id, queue=queue.name, error=reason)

    def _give_back(self, job: Job, queue: Queue) -> None:
        """A job popped after a stop request goes back to the front of its queue untouched."""
        with self.connection.pipeline() as pipeline:
            pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
            pipeline.lpush(queue.key, job.id)
            pipeline.execute()

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
        self._last_error = exc_string
        if not self._cold_stop:
            super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)
            return
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
        done = threading.Event()
        beating = threading.Thread(target=self._beat, args=(job, done), name="heartbeat", daemon=True)
        beating.start()
        try:
            return super().perform_job(job, queue)
        finally:
            done.set()
            beating.join()
            self._log_outcome(job, time.monotonic() - started)
            structlog.contextvars.clear_contextvars()

    def _beat(self, job: Job, done: threading.Event) -> None:
        """While the job runs, keep the worker, the job and its started entry alive (RQ's in-process worker
        does not: a long job would look abandoned, and a dead worker's job would look alive for its timeout)."""
        while not done.wait(self.heartbeat_interval):
            try:
                self.maintain_heartbeats(job)
            except redis.ConnectionError as exc:
                self.outage.failed(exc)
            except redis.RedisError as exc:
                log.warning("heartbeat failed; will retry", error=str(exc).splitlines()[0])

    def _log_outcome(self, job: Job, seconds: float) -> None:
        metrics.job_ended(job, seconds, interrupted=self._cold_stop)
        fields: dict[str, Any] = {
            "attempt": int(job.meta.get(ATTEMPT_META_KEY, 1)),
            "duration_ms": round(seconds * 1000, 2),
        }
        if self._cold_stop:
            log.warning("job", outcome="interrupted-requeued", **fields)
            return
        outcome = OUTCOMES.get(job.get_status(refresh=False), str(job.get_status(refresh=False)))
        if self._last_error is None:
            log.info("job", outcome=outcome, **fields)
            return
        error = self._last_error.strip().splitlines()[-1] if self._last_error.strip() else "unknown error"
        level = log.error if outcome == "failed" else log.warning
        level("job", outcome=outcome, error=error, traceback=self._last_error, **fields)


def build_worker(
    settings: Settings, connection: Redis, queues: tuple[str, ...] | None = None, name: str | None = None
) -> TaskWorker:
    worker = TaskWorker(
        list(queues or settings.queues),
        name=name or worker_name(settings.host),
        connection=connection,
        serializer=settings.serializer,
        abandon_after=settings.abandon_after,
        max_abandons=settings.max_abandons,
    )
    # RQ records socket.gethostname(); the Pod name is what the autoscaler matches Pods by.
    worker.hostname = settings.host
    return worker
