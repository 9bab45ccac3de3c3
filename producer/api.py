"""The Producer: what applications call to enqueue tasks, wait for them and read queue statistics.

Jobs are plain ``rq.job.Job`` objects in RQ's own keys, so RQ's tools and rq-dashboard see everything.
Arguments are checked before anything is written: a task that could not be carried to the worker is
refused at enqueue, naming the argument, rather than failing later on a worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.results import Result
from rq.utils import now

from producer.atomic import REPLICA_ACKS_TIMEOUT, BatchWriter, TooFewReplicasError
from producer.checks import TaskPaths
from producer.checks import backoff_intervals as backoff_intervals  # tests import it from here
from producer.errors import (
    DuplicateJobError,
    InvalidTaskError,
    RedisUnavailableError,
    ReplicaAcksError,
    TaskFailedError,
    WaitTimeoutError,
)
from producer.jobhash import JobFactory, NoArgumentCalls, QueuedJob
from producer.prepare import prepare, prepare_plain
from producer.task import OPTIONS, Task
from task_processor import keys
from task_processor.connection import OutageLog, connect, describe_failure, redact_url
from task_processor.errors import ConfigError, TaskProcessorError
from task_processor.jobs import UNSUCCESSFUL
from task_processor.observe import QueueCounts, WorkerInfo, list_workers, queue_counts, text
from task_processor.settings import (
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_QUEUE,
    DEFAULT_REDIS_URL,
    DEFAULT_TASK_TIMEOUT,
    SERIALIZERS,
    Settings,
    parse_modules,
    validate_queue_name,
)

WAIT_POLL_MIN, WAIT_POLL_MAX = 0.01, 0.5
"""``wait`` polls job statuses starting fast (short tasks return quickly) and backing off to this ceiling."""


__all__ = ["OPTIONS", "Producer", "Progress", "QueueStats", "Task"]


@dataclass(frozen=True)
class Progress:
    """Where a set of jobs stands: how many finished, of how many, and those that ended otherwise (with their
    status; None for a job that no longer exists)."""

    done: int
    total: int
    failed: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class QueueStats(QueueCounts):
    """A queue's counts plus the workers listening on it."""

    workers: int = 0
    busy_workers: int = 0


class Producer:
    """Enqueue tasks onto RQ queues in Redis; one instance per application is enough (it is thread-safe)."""

    _overridden = False
    """A subclass overrides ``prepare`` or ``enqueue_many``: ``enqueue`` goes through them, as it always did."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._overridden = cls.prepare is not Producer.prepare or cls.enqueue_many is not Producer.enqueue_many

    def __init__(
        self,
        redis_url: str = DEFAULT_REDIS_URL,
        queue: str = DEFAULT_QUEUE,
        *,
        serializer: str = "json",
        default_timeout: int = DEFAULT_TASK_TIMEOUT,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        modules: Iterable[str] | str | None = None,
        connection: redis.Redis | None = None,
        replica_acks: int = 0,
        replica_acks_timeout: float = REPLICA_ACKS_TIMEOUT,
    ) -> None:
        """``modules``: the modules whose functions the workers run (TASK_MODULES); when given, a task naming a
        path outside them is refused here, before anything is written. The workers check again either way.

        ``replica_acks`` (TASK_REPLICA_ACKS): an enqueue returns only once that many replicas acknowledged its write,
        so a failover after it returned cannot lose it; ReplicaAcksError after ``replica_acks_timeout`` seconds."""
        if serializer not in SERIALIZERS:
            raise ConfigError(f"serializer {serializer!r} is not supported: use one of {', '.join(SERIALIZERS)}")
        if isinstance(replica_acks, bool) or not isinstance(replica_acks, int) or replica_acks < 0:
            raise ConfigError(f"replica_acks={replica_acks!r} must be a whole number of replicas >= 0 (0: no wait)")
        self.redis_url = redis_url
        self.default_queue = validate_queue_name(queue)
        self.serializer_name = serializer
        self.default_timeout = default_timeout
        self.max_payload = max_payload
        names = modules if isinstance(modules, str) else ",".join(modules or ())
        self.modules = parse_modules(names, "modules")
        self.connection = connection or connect(redis_url)
        self._queues: dict[str, Queue] = {}
        self.replica_acks = replica_acks
        self._writer = BatchWriter(self.connection, replica_acks, replica_acks_timeout)
        self._jobs = JobFactory(self.connection, SERIALIZERS[serializer])
        self._paths = TaskPaths()
        self._no_arguments = NoArgumentCalls(SERIALIZERS[serializer])
        self.outage = OutageLog(announce_loss=False)  # callers get the loss as an error

    @classmethod
    def from_env(
        cls,
        settings: Settings | None = None,
        *,
        connection: redis.Redis | None = None,
        modules: Iterable[str] | None = None,
    ) -> Producer:
        """Configured from REDIS_URL, TASK_QUEUES (the first is where tasks go), TASK_SERIALIZER, TASK_TIMEOUT,
        TASK_MAX_PAYLOAD, TASK_REPLICA_ACKS and TASK_MODULES (``modules`` instead, when given); on ``connection``
        when given."""
        settings = settings or Settings.from_env()
        return cls(
            settings.redis_url,
            settings.queues[0],
            serializer=settings.serializer_name,
            default_timeout=settings.task_timeout,
            max_payload=settings.max_payload,
            modules=settings.task_modules if modules is None else modules,
            connection=connection,
            replica_acks=settings.replica_acks,
        )

    def queue(self, name: str | None = None) -> Queue:
        name = self.default_queue if name is None else validate_queue_name(name)
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.connection, serializer=SERIALIZERS[self.serializer_name])
        return self._queues[name]

    def enqueue(self, func: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
        """Enqueue one task. Keywords named like ``Task``'s fields (``job_id``, ``timeout``, ``retries``,
        ``retry_backoff``, ``at_front``, ``queue`` and RQ's options, ``meta``, ``depends_on``, ...) are options;
        every other keyword goes to the task.

        A task whose own keyword arguments clash with those names is enqueued with ``Task(..., kwargs=...)``.
        """
        if kwargs and not OPTIONS.isdisjoint(kwargs):
            options = {name: kwargs.pop(name) for name in list(kwargs) if name in OPTIONS}
            return self.enqueue_many([Task(func, args, kwargs, **options)])[0]
        if not self._overridden:
            return self._write([prepare_plain(self, func, args, kwargs)])[0]
        return self.enqueue_many([Task(func, args, kwargs)])[0]

    def enqueue_in(self, delay: float | timedelta, func: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
        """Enqueue ``func`` to run ``delay`` seconds (or a timedelta) from now; options as for ``enqueue``."""
        return self.enqueue(func, *args, delay=delay, **kwargs)

    def enqueue_at(self, when: datetime, func: str | Callable[..., Any], *args: Any, **kwargs: Any) -> Job:
        """Enqueue ``func`` to run at ``when`` (an aware datetime: a naive one is refused); options as for
        ``enqueue``."""
        return self.enqueue(func, *args, at=when, **kwargs)

    def enqueue_many(self, tasks: Iterable[Task]) -> list[Job]:
        """Enqueue a batch atomically in one round trip: either every task is queued or none is.

        A batch that returns was written (and, on a Redis with ``appendfsync always``, is on disk). A dropped
        connection is retried a few times (RETRY_ATTEMPTS) without ever writing the batch twice; then it raises
        RedisUnavailableError, and the batch may or may not have been written.
        """
        queued = [self.prepare(task) for task in tasks]
        if not queued:
            return []
        return self._write(queued)

    def _write(self, queued: list[QueuedJob]) -> list[Job]:
        stamp = now()
        try:
            deferred = self._writer.write(queued, stamp)
        except (TooFewReplicasError, redis.ResponseError) as exc:
            refusal = exc.refusal if isinstance(exc, TooFewReplicasError) else exc
            refused = None if refusal is None else self._refused(refusal)
            # A refusal wrote nothing a replica must have, but for a live duplicate: that one is there, unacknowledged.
            if isinstance(exc, TooFewReplicasError) and (refused is None or isinstance(refused, DuplicateJobError)):
                raise self._unacknowledged(queued, exc) from None
            assert refused is not None
            raise refused from (None if isinstance(refused, InvalidTaskError) else refusal)
        except redis.RedisError as exc:
            raise self._failed(exc) from exc
        self.outage.succeeded()
        return self._jobs.jobs(queued, stamp, deferred)

    def _refused(self, exc: redis.ResponseError) -> TaskProcessorError:
        """The enqueue script's refusal (nothing written, nothing changed) as the error the caller gets."""
        refused = str(exc).split("caused error: ")[-1].split()
        if refused[:1] == ["DUPLICATE"]:
            return DuplicateJobError(
                f"job {refused[1]} is already live (unique=True): nothing was enqueued; pick another job_id, or "
                "wait until that job's hash expires",
                refused[1],
            )
        if refused[:1] == ["UNKNOWN_DEPENDENCY"]:
            return InvalidTaskError(
                f"job {refused[1]} depends on {refused[2]}, which does not exist (never enqueued, or expired): "
                "nothing was enqueued; enqueue the dependency first, or drop it from depends_on"
            )
        return self._failed(exc)

    def _unacknowledged(self, queued: list[QueuedJob], exc: TooFewReplicasError) -> ReplicaAcksError:
        self.outage.succeeded()  # Redis answered: only its replicas lag
        ids = [job.id for job in queued]
        which = f"job {ids[0]}" if len(ids) == 1 else f"the {len(ids)} jobs {ids[0]} ... {ids[-1]}"
        return ReplicaAcksError(
            f"Redis at {redact_url(self.redis_url)} has {which}, but only {exc.acked} of the {exc.wanted} replicas "
            f"TASK_REPLICA_ACKS asks for acknowledged it within {exc.timeout:g}s, so it may or may not have been "
            "written for good (a failover now could lose it): enqueue again with the same job_id and unique=True, "
            "which is safe (DuplicateJobError then means it is there and acknowledged), and check the replicas",
            ids,
        )

    def _failed(self, exc: redis.RedisError) -> TaskProcessorError:
        network = isinstance(exc, redis.ConnectionError | redis.TimeoutError)
        if network and not isinstance(exc, redis.AuthenticationError):
            self.outage.failed(exc)
        return describe_failure(self.redis_url, exc)

    def prepare(self, task: Task) -> QueuedJob:
        """Check ``task`` as ``enqueue`` does, writing nothing; returns the job to write.

        Raises InvalidTaskError naming the problem; for checking many tasks before enqueueing any of them.
        """
        return prepare(self, task)

    def job(self, job_id: str) -> Job | None:
        """The job with this id as RQ reads it (status, meta, result, ...), or None when there is none."""
        try:
            return Job.fetch(job_id, connection=self.connection, serializer=SERIALIZERS[self.serializer_name])
        except NoSuchJobError:
            return None
        except redis.RedisError as exc:
            raise self._failed(exc) from exc

    def cancel(self, job_id: str) -> Job:
        """Cancel a job as RQ's ``Job.cancel`` does: off its queue (or registry) into the canceled registry, never
        to run; a job already running finishes (stop it with RQ's ``send_stop_job_command``). Its dependents stay
        deferred. Raises TaskProcessorError for an unknown or already canceled id."""
        job = self.job(job_id)
        if job is None:
            raise TaskProcessorError(f"no job {job_id} in Redis (never enqueued, or expired): nothing to cancel")
        try:
            job.cancel()
        except InvalidJobOperation:
            raise TaskProcessorError(f"job {job_id} is already canceled") from None
        except redis.RedisError as exc:
            raise self._failed(exc) from exc
        return job

    def wait(
        self,
        jobs: Sequence[Job],
        timeout: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[Any]:
        """Block until every job finished and return their results in order.

        Raises TaskFailedError for the first job that failed (after its retries), WaitTimeoutError after
        ``timeout`` seconds. ``on_progress(done, total)`` is called whenever the count of finished jobs grows.
        While Redis is unreachable it keeps polling (saying so once in the log) until ``timeout``.
        """
        by_id = {job.id: job for job in jobs}
        reported = -1
        for progress in self.follow(jobs, timeout):
            if progress.failed:
                job_id, status = progress.failed[0]
                raise self._failure(by_id[job_id], status)
            if on_progress and progress.done != reported:
                on_progress(progress.done, progress.total)
                reported = progress.done
        return [job.return_value(refresh=True) for job in jobs]

    def follow(self, jobs: Sequence[Job], timeout: float | None = None) -> Iterator[Progress]:
        """Look at the jobs' statuses until every one has ended, yielding after each look (fast at first, then
        every WAIT_POLL_MAX seconds). Raises WaitTimeoutError after ``timeout`` seconds; keeps looking through a
        Redis outage until then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = {job.id for job in jobs}
        failed: list[tuple[str, str | None]] = []
        delay = WAIT_POLL_MIN
        while True:
            try:
                statuses = self.statuses([job.id for job in jobs if job.id in pending])
            except RedisUnavailableError:
                if not self.outage.lost or (deadline is not None and time.monotonic() >= deadline):
                    raise
                time.sleep(WAIT_POLL_MAX)  # Redis is down (the outage is logged once): keep waiting for it
                continue
            for job_id, status in statuses.items():
                if status == JobStatus.FINISHED:
                    pending.discard(job_id)
                elif status is None or status in UNSUCCESSFUL:
                    pending.discard(job_id)
                    failed.append((job_id, status))
            yield Progress(done=len(jobs) - len(pending) - len(failed), total=len(jobs), failed=tuple(failed))
            if not pending:
                return
            if deadline is not None and time.monotonic() >= deadline:
                first_id = next(job.id for job in jobs if job.id in pending)
                raise WaitTimeoutError(
                    f"{len(pending)} of {len(jobs)} jobs not finished after {timeout:g}s (e.g. {first_id}: "
                    f"{statuses[first_id]}): wait longer, or check the workers with `task-producer status`"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, WAIT_POLL_MAX)

    def statuses(self, job_ids: list[str]) -> dict[str, str | None]:
        """Each job's RQ status in one round trip (None for a job that no longer exists)."""
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hget(keys.job(job_id), "status")
                replies = pipe.execute()
        except redis.RedisError as exc:
            raise self._failed(exc) from exc
        self.outage.succeeded()
        return {job_id: (r.decode() if r else None) for job_id, r in zip(job_ids, replies, strict=True)}

    def _failure(self, job: Job, status: str | None) -> TaskFailedError:
        if status is None:
            return TaskFailedError(
                f"job {job.id} no longer exists in Redis (deleted, or its result expired before the wait)", job.id
            )
        result = Result.fetch_latest(job, serializer=SERIALIZERS[self.serializer_name])
        error = ""
        if result is not None and result.exc_string:
            error = ": " + result.exc_string.strip().splitlines()[-1]
        return TaskFailedError(
            f"job {job.id} ({job.func_name}) ended {status}{error}; its full traceback is in the queue's "
            "failed registry (rq-dashboard shows it)",
            job.id,
        )

    def stats(
        self, queues: Iterable[str] | None = None, workers: Sequence[WorkerInfo] | None = None
    ) -> dict[str, QueueStats]:
        """Counts per queue (every queue RQ knows, by default) with the workers listening on each (``workers``:
        already read by the caller, so that one read serves both views)."""
        try:
            names = sorted(queues) if queues is not None else self.known_queues()
            counts = queue_counts(self.connection, names)
            if workers is None:
                workers = list_workers(self.connection)
        except redis.RedisError as exc:
            raise describe_failure(self.redis_url, exc) from exc
        return {
            name: QueueStats(
                **asdict(counts[name]),
                workers=sum(name in w.queues for w in workers),
                busy_workers=sum(name in w.queues and w.busy for w in workers),
            )
            for name in names
        }

    def known_queues(self) -> list[str]:
        """The producer's default queue and every queue RQ has registered in Redis."""
        registered: set[bytes] = self.connection.smembers(keys.QUEUES)  # type: ignore[assignment]
        names = {text(k).removeprefix(keys.QUEUE_PREFIX) for k in registered}
        return sorted(names | {self.default_queue})
