"""The Producer: what applications call to enqueue tasks, wait for them and read queue statistics.

Jobs are plain ``rq.job.Job`` objects in RQ's own keys, so RQ's tools and rq-dashboard see everything.
Arguments are checked before anything is written: a task that could not be carried to the worker is
refused at enqueue, naming the argument, rather than failing later on a worker.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from rq import Queue, Retry
from rq.job import Job, JobStatus, validate_job_id
from rq.results import Result

from producer.errors import InvalidTaskError, TaskFailedError, WaitTimeoutError
from worker.connection import connect, describe_failure
from worker.errors import ConfigError
from worker.observe import QueueCounts, list_workers, queue_counts
from worker.settings import (
    DEFAULT_QUEUE,
    DEFAULT_REDIS_URL,
    DEFAULT_TASK_TIMEOUT,
    SERIALIZERS,
    Settings,
    validate_queue_name,
)

FUNC_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")
"""A dotted path with at least a module and a name: what a worker can import."""

RETRY_BACKOFF = 1
"""Seconds before the first retry; each further retry waits twice as long (capped by RETRY_BACKOFF_CAP)."""

RETRY_BACKOFF_CAP = 3600
"""Longest wait between two attempts, in seconds."""

WAIT_POLL_MIN, WAIT_POLL_MAX = 0.01, 0.5
"""``wait`` polls job statuses starting fast (short tasks return quickly) and backing off to this ceiling."""

DONE_FAILED = {JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


@dataclass(frozen=True)
class Task:
    """One call to enqueue. ``kwargs`` are the task's own keyword arguments, so any name is allowed there."""

    func: str | Callable[..., Any]
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    job_id: str | None = None
    timeout: int | None = None
    retries: int = 0
    retry_backoff: int = RETRY_BACKOFF
    at_front: bool = False
    queue: str | None = None


@dataclass(frozen=True)
class QueueStats(QueueCounts):
    """A queue's counts plus the workers listening on it."""

    workers: int = 0
    busy_workers: int = 0


def func_path(func: str | Callable[..., Any]) -> str:
    """The dotted import path a worker will resolve, refusing what no worker could import."""
    if callable(func) and not isinstance(func, str):
        module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
        path = f"{module}.{qualname}"
        if not module or module == "__main__" or inspect.ismethod(func) or not FUNC_PATH.fullmatch(path):
            raise InvalidTaskError(
                f"{func!r} cannot be imported by a worker (a lambda, method, partial, callable object, nested or "
                "__main__ function): define a function at module level, or pass its dotted path as a string"
            )
        return path
    if not isinstance(func, str) or not FUNC_PATH.fullmatch(func):
        raise InvalidTaskError(
            f"task function {func!r} is not a dotted path like 'myapp.tasks.resize': "
            "give the module path and the function name"
        )
    return func


def _json_problem(value: Any, where: str) -> str | None:
    """Describe the first part of ``value`` that JSON would refuse or silently change, or None."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value!r}, which JSON cannot carry"
    if isinstance(value, list | tuple):
        return next((p for i, item in enumerate(value) if (p := _json_problem(item, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r} of type {type(key).__name__}; JSON keys must be strings"
            if problem := _json_problem(item, f"{where}[{key!r}]"):
                return problem
        return None
    return f"{where} is a {type(value).__name__}, which JSON cannot carry"


def check_json_arguments(path: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    named = [(f"argument {i + 1}", v) for i, v in enumerate(args)]
    named += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for where, value in named:
        if problem := _json_problem(value, where):
            raise InvalidTaskError(
                f"{path}: {problem}: pass plain data (str, int, float, bool, None, lists, dicts with string "
                "keys), or set TASK_SERIALIZER=pickle on producers and workers"
            )


def backoff_intervals(retries: int, base: int) -> list[int]:
    return [min(base * 2**i, RETRY_BACKOFF_CAP) for i in range(retries)]


class Producer:
    """Enqueue tasks onto RQ queues in Redis; one instance per application is enough (it is thread-safe)."""

    def __init__(
        self,
        redis_url: str = DEFAULT_REDIS_URL,
        queue: str = DEFAULT_QUEUE,
        *,
        serializer: str = "json",
        default_timeout: int = DEFAULT_TASK_TIMEOUT,
        connection: redis.Redis | None = None,
    ) -> None:
        if serializer not in SERIALIZERS:
            raise ConfigError(f"serializer {serializer!r} is not supported: use one of {', '.join(SERIALIZERS)}")
        self.redis_url = redis_url
        self.default_queue = validate_queue_name(queue)
        self.serializer_name = serializer
        self.default_timeout = default_timeout
        self.connection = connection or connect(redis_url)
        self._queues: dict[str, Queue] = {}

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> Producer:
        """Configured from REDIS_URL, TASK_QUEUES (the first is where tasks go), TASK_SERIALIZER, TASK_TIMEOUT."""
        settings = settings or Settings.from_env()
        return cls(
            settings.redis_url,
            settings.queues[0],
            serializer=settings.serializer_name,
            default_timeout=settings.task_timeout,
        )

    def queue(self, name: str | None = None) -> Queue:
        name = self.default_queue if name is None else validate_queue_name(name)
        if name not in self._queues:
            self._queues[name] = Queue(name, connection=self.connection, serializer=SERIALIZERS[self.serializer_name])
        return self._queues[name]

    def enqueue(
        self,
        func: str | Callable[..., Any],
        *args: Any,
        job_id: str | None = None,
        timeout: int | None = None,
        retries: int = 0,
        retry_backoff: int = RETRY_BACKOFF,
        at_front: bool = False,
        queue: str | None = None,
        **kwargs: Any,
    ) -> Job:
        """Enqueue one task; the names above are options, every other keyword goes to the task.

        A task whose own keyword arguments clash with those names is enqueued with ``Task(..., kwargs=...)``.
        """
        task = Task(func, args, kwargs, job_id, timeout, retries, retry_backoff, at_front, queue)
        return self.enqueue_many([task])[0]

    def enqueue_many(self, tasks: Iterable[Task]) -> list[Job]:
        """Enqueue a batch atomically in one round trip: either every task is queued or none is."""
        tasks = list(tasks)
        prepared = [(self.queue(task.queue), self._prepare(task)) for task in tasks]
        jobs: list[Job] = []
        try:
            with self.connection.pipeline() as pipe:
                # One call per run of tasks for the same queue: RQ registers the queue once per call.
                for queue, run in itertools.groupby(prepared, key=lambda item: item[0]):
                    jobs.extend(queue.enqueue_many([data for _, data in run], pipeline=pipe))
                pipe.execute()
        except redis.RedisError as exc:
            raise describe_failure(self.redis_url, exc) from exc
        return jobs

    def _prepare(self, task: Task) -> Any:
        path = func_path(task.func)
        if isinstance(task.args, str | bytes) or not isinstance(task.args, Sequence):
            raise InvalidTaskError(f"{path}: args must be a list or tuple of arguments, not {type(task.args).__name__}")
        if not isinstance(task.kwargs, Mapping) or not all(isinstance(k, str) for k in task.kwargs):
            raise InvalidTaskError(f"{path}: kwargs must be a mapping with string keys")
        if self.serializer_name == "json":
            check_json_arguments(path, task.args, task.kwargs)
        if task.job_id is not None:
            try:
                validate_job_id(task.job_id)
            except (TypeError, ValueError) as exc:
                raise InvalidTaskError(f"{path}: job_id {task.job_id!r} is refused ({exc})") from None
        timeout = self.default_timeout if task.timeout is None else task.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise InvalidTaskError(f"{path}: timeout {timeout!r} must be a whole number of seconds >= 1")
        for name, value in (("retries", task.retries), ("retry_backoff", task.retry_backoff)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidTaskError(f"{path}: {name} {value!r} must be a whole number >= 0")
        retry = (
            Retry(max=task.retries, interval=backoff_intervals(task.retries, task.retry_backoff))
            if task.retries
            else None
        )
        try:
            return Queue.prepare_data(
                path,
                args=tuple(task.args),
                kwargs=dict(task.kwargs),
                timeout=timeout,
                job_id=task.job_id,
                at_front=task.at_front,
                retry=retry,
            )
        except ValueError as exc:
            raise InvalidTaskError(f"{path}: {exc}") from exc

    def wait(
        self,
        jobs: Sequence[Job],
        timeout: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[Any]:
        """Block until every job finished and return their results in order.

        Raises TaskFailedError for the first job that failed (after its retries), WaitTimeoutError after
        ``timeout`` seconds. ``on_progress(done, total)`` is called whenever the count of finished jobs grows.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = {job.id: job for job in jobs}
        delay, reported = WAIT_POLL_MIN, -1
        while True:
            statuses = self.statuses(list(pending))
            for job_id, status in statuses.items():
                if status == JobStatus.FINISHED:
                    del pending[job_id]
                elif status is None or status in DONE_FAILED:
                    raise self._failure(pending[job_id], status)
            done = len(jobs) - len(pending)
            if on_progress and done != reported:
                on_progress(done, len(jobs))
                reported = done
            if not pending:
                break
            if deadline is not None and time.monotonic() >= deadline:
                first_id, first_status = next(iter(statuses.items()))
                raise WaitTimeoutError(
                    f"{len(pending)} of {len(jobs)} jobs not finished after {timeout:g}s (e.g. {first_id}: "
                    f"{first_status}): wait longer, or check the workers with `task-producer status`"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, WAIT_POLL_MAX)
        return [job.return_value(refresh=True) for job in jobs]

    def statuses(self, job_ids: list[str]) -> dict[str, str | None]:
        """Each job's RQ status in one round trip (None for a job that no longer exists)."""
        try:
            with self.connection.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hget(Job.key_for(job_id), "status")
                replies = pipe.execute()
        except redis.RedisError as exc:
            raise describe_failure(self.redis_url, exc) from exc
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

    def stats(self, queues: Iterable[str] | None = None) -> dict[str, QueueStats]:
        """Counts per queue (every queue RQ knows, by default) with the workers listening on each."""
        try:
            names = sorted(queues) if queues is not None else self.known_queues()
            counts = queue_counts(self.connection, names)
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
        keys = self.connection.smembers(Queue.redis_queues_keys)
        names = {k.decode(errors="replace").removeprefix(Queue.redis_queue_namespace_prefix) for k in keys}
        return sorted(names | {self.default_queue})
