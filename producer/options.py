"""RQ's job options through the Producer API: a schedule (``delay``, ``at``), ``depends_on``, ``meta``, TTLs, a
``description``, callbacks and ``unique`` ids. Each is checked before anything is written, then turned into the
job-hash fields RQ writes for it.

The fields come from RQ itself: a ``Job`` is created with the options as ``Queue.enqueue_call`` creates it
(``Job.create``), and the option fields of its ``to_dict`` are what the enqueue script writes beside the fields
every job has (``producer.jobhash``); ``tests/test_job_options.py`` compares both with RQ's own enqueue, option by
option. A task without options never pays for that ``Job``.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from rq.job import Callback, Dependency, Job, JobStatus, validate_job_id
from rq.serializers import Serializer

from producer.checks import check_json_value, func_path
from producer.errors import InvalidTaskError
from producer.task import Task
from task_processor.taskmodules import outside_modules

QUEUED, SCHEDULED, DEPENDENT = "Q", "S", "D"
"""Where the enqueue script puts a job: its queue, the scheduled registry, or (unless every dependency has
finished) the deferred registry."""

OPTION_FIELDS = (
    "meta",
    "result_ttl",
    "failure_ttl",
    "ttl",
    "success_callback_name",
    "failure_callback_name",
    "stopped_callback_name",
    "success_callback_timeout",
    "failure_callback_timeout",
    "stopped_callback_timeout",
    "dependency_id",
    "dependency_ids",
    "allow_dependency_failures",
    "enqueue_at_front",
)
"""The fields of ``Job.to_dict`` that only options set (the rest every job has, written by the script itself)."""

CALLBACKS = ("on_success", "on_failure", "on_stopped")


@dataclass(frozen=True, slots=True)
class Options:
    """A checked task's options, as the enqueue script takes them."""

    mode: str = QUEUED
    score: int = 0
    """SCHEDULED: when the job comes due, in unix seconds (the scheduled registry's score, as RQ computes it)."""
    dependencies: tuple[str, ...] = ()
    ttl: int = 0
    """Seconds the job may wait before it is discarded (RQ's ``ttl``; 0: no limit)."""
    unique: bool = False
    fields: tuple[tuple[str, Any], ...] = ()
    description: str | None = None
    job: Job | None = None
    """The RQ job the fields were taken from: what ``enqueue`` returns for it."""


PLAIN = Options()


def has_options(task: Task) -> bool:
    return bool(
        task.delay is not None
        or task.at is not None
        or task.depends_on is not None
        or task.meta is not None
        or task.result_ttl is not None
        or task.failure_ttl is not None
        or task.ttl is not None
        or task.description is not None
        or task.unique
        or any(getattr(task, name) is not None for name in CALLBACKS)
    )


def check_options(
    task: Task,
    path: str,
    job: Job,
    *,
    json: bool,
    modules: tuple[str, ...],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Options:
    """Check ``task``'s options and set them on ``job`` (created for this task, as RQ's enqueue creates it);
    InvalidTaskError names the first bad one."""
    when = _when(task, path, clock)
    dependency = _dependency(task.depends_on, path)
    if dependency is not None and when is not None:
        raise InvalidTaskError(
            f"{path}: depends_on cannot be combined with a delay or an enqueue time: RQ's scheduler enqueues a due "
            "job without looking at its dependencies; enqueue the dependent when it is due, or drop the delay"
        )
    if task.unique and (not task.job_id or dependency is not None):
        raise InvalidTaskError(
            f"{path}: unique=True needs a job_id (the id that must not be live twice) and no depends_on"
        )
    meta = task.meta
    if meta is not None:
        if not isinstance(meta, Mapping) or not all(isinstance(key, str) for key in meta):
            raise InvalidTaskError(f"{path}: meta must be a dict with string keys, not {type(meta).__name__}")
        if json:
            check_json_value(path, "meta", dict(meta))
        job.meta = dict(meta)
    job.result_ttl = _seconds(path, "result_ttl", task.result_ttl, least=-1)
    job.failure_ttl = _seconds(path, "failure_ttl", task.failure_ttl, least=-1, zero=False)
    job.ttl = _seconds(path, "ttl", task.ttl, least=1)
    if task.description is not None:
        if not isinstance(task.description, str):
            raise InvalidTaskError(f"{path}: description must be a string, not {type(task.description).__name__}")
        job.description = task.description
    for name in CALLBACKS:
        callback = _callback(path, name, getattr(task, name), modules)
        if callback is not None:
            stage = name.removeprefix("on_")
            setattr(job, f"_{stage}_callback_name", callback.name)
            setattr(job, f"_{stage}_callback_timeout", callback.timeout)
    mode, score = QUEUED, 0
    if when is not None:
        mode, score = SCHEDULED, calendar.timegm(when.utctimetuple())
        job._status = JobStatus.SCHEDULED
        if task.at_front:
            job.enqueue_at_front = True  # as Queue.enqueue_at sets it
    elif dependency is not None:
        mode = DEPENDENT
        job.process_dependencies(dependency)
    written = job.to_dict()
    fields = tuple((name, written[name]) for name in OPTION_FIELDS if written.get(name) not in (None, ""))
    return Options(
        mode, score, tuple(job._dependency_ids), job.ttl or 0, bool(task.unique), fields, task.description, job
    )


def new_job(
    connection: redis.Redis,
    serializer: Serializer,
    call: tuple[str, tuple[Any, ...], dict[str, Any], bytes],
    job_id: str,
    queue: str,
    timeout: int,
) -> Job:
    """A job as ``Queue.create_job`` creates it, before options: what ``check_options`` sets them on. ``call``:
    function, arguments, keyword arguments and their serialization (``jobhash.serialized_call``), which the job
    keeps rather than make again."""
    job = Job(id=job_id, connection=connection, serializer=serializer)
    job._func_name, job._instance, job._args, job._kwargs, job._data = call[0], None, call[1], call[2], call[3]
    job.origin, job.timeout, job._status = queue, timeout, JobStatus.QUEUED
    return job


def _when(task: Task, path: str, clock: Callable[[], datetime]) -> datetime | None:
    delay, at = task.delay, task.at
    if delay is not None and at is not None:
        raise InvalidTaskError(f"{path}: give a delay or an enqueue time (at), not both")
    if at is not None:
        if not isinstance(at, datetime):
            raise InvalidTaskError(f"{path}: at must be a datetime, not {type(at).__name__}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise InvalidTaskError(
                f"{path}: at={at.isoformat()} has no time zone, so the moment it names is unknown: give an aware "
                "datetime, e.g. datetime.now(timezone.utc) + timedelta(minutes=5)"
            )
        return at
    if delay is None:
        return None
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise InvalidTaskError(f"{path}: delay must be seconds or a timedelta, not {type(delay).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidTaskError(f"{path}: delay {delay!r} must be a finite number of seconds >= 0")
    return clock() + timedelta(seconds=seconds)


def _dependency(depends_on: Any, path: str) -> Any:
    """``depends_on`` as RQ takes it (a job, an id, a Dependency, or a list of them) with every id checked, or None
    when it names no job; RQ's own ``Job.process_dependencies`` then reads it, as its enqueue does."""
    if depends_on is None:
        return None
    items = depends_on if isinstance(depends_on, Sequence) and not isinstance(depends_on, str) else [depends_on]
    named = False
    for item in items:
        for part in item.dependencies if isinstance(item, Dependency) else [item]:
            job_id = part.id if isinstance(part, Job) else part
            if not isinstance(job_id, str):
                raise InvalidTaskError(
                    f"{path}: depends_on takes jobs, job ids or rq.Dependency, not {type(part).__name__}"
                )
            try:
                validate_job_id(job_id)
            except (TypeError, ValueError) as exc:
                raise InvalidTaskError(f"{path}: depends_on job id {job_id!r} is refused ({exc})") from None
            named = True
    return depends_on if named else None


def _seconds(path: str, name: str, value: Any, least: int, zero: bool = True) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < least or (value == 0 and not zero):
        allowed = "-1 (for ever) or " if least < 0 else ""
        lowest = 0 if zero and least < 1 else 1
        raise InvalidTaskError(f"{path}: {name} {value!r} must be {allowed}a whole number of seconds >= {lowest}")
    return value


def _callback(path: str, name: str, value: Any, modules: tuple[str, ...]) -> Callback | None:
    if value is None:
        return None
    timeout = value.timeout if isinstance(value, Callback) else None
    target = value.func if isinstance(value, Callback) else value
    try:
        callback_path = func_path(target)
    except InvalidTaskError as exc:
        raise InvalidTaskError(f"{path}: {name}: {exc}") from None
    if modules and (problem := outside_modules(callback_path, modules)):
        raise InvalidTaskError(f"{path}: {name}: {problem}")
    return Callback(callback_path, timeout=timeout)
