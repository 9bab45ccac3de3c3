"""What ``Producer.prepare`` does to a task before anything is written: every check, then the job to write.

``enqueue`` without options takes a shorter road to the same job (``prepare_plain``): its arguments come as a
tuple and a dict of keywords, which pass the checks on their types by construction, and a call without arguments
is the same for every enqueue of its path, so it is serialized, compressed and described once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import redis
from rq.job import validate_job_id

from producer.checks import TaskPaths, backoff_intervals, check_json_arguments, check_payload_size, check_timeout
from producer.errors import InvalidTaskError
from producer.jobhash import NoArgumentCalls, QueuedJob, new_job_id, serialized_call
from producer.options import PLAIN, check_options, has_options, new_job
from producer.task import Task
from task_processor.settings import SERIALIZERS, validate_queue_name


class Producing(Protocol):
    """What the checks read of the producer that enqueues (``producer.api.Producer``): its settings, and the two
    caches it keeps for them (the paths already checked, the calls without arguments already serialized)."""

    connection: redis.Redis
    modules: tuple[str, ...]
    serializer_name: str
    default_timeout: int
    default_queue: str
    max_payload: int
    _paths: TaskPaths
    _no_arguments: NoArgumentCalls


def prepare(producer: Producing, task: Task) -> QueuedJob:
    """``Producer.prepare``: InvalidTaskError names the first problem of ``task``."""
    path = producer._paths.check(task.func, producer.modules)
    if isinstance(task.args, str | bytes) or not isinstance(task.args, Sequence):
        raise InvalidTaskError(f"{path}: args must be a list or tuple of arguments, not {type(task.args).__name__}")
    if not isinstance(task.kwargs, Mapping) or not all(isinstance(k, str) for k in task.kwargs):
        raise InvalidTaskError(f"{path}: kwargs must be a mapping with string keys")
    if producer.serializer_name == "json":
        check_json_arguments(path, task.args, task.kwargs)
    if task.job_id is not None:
        try:
            validate_job_id(task.job_id)
        except (TypeError, ValueError) as exc:
            raise InvalidTaskError(f"{path}: job_id {task.job_id!r} is refused ({exc})") from None
    timeout = producer.default_timeout if task.timeout is None else task.timeout
    check_timeout(path, timeout)
    for name, value in (("retries", task.retries), ("retry_backoff", task.retry_backoff)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidTaskError(f"{path}: {name} {value!r} must be a whole number >= 0")
    serializer = SERIALIZERS[producer.serializer_name]
    args, kwargs = tuple(task.args), dict(task.kwargs)
    call = serialized_call(serializer, path, args, kwargs)
    if producer.max_payload and len(call) > producer.max_payload:
        # The call holds the arguments and more, so only a call over the limit can have arguments over it.
        check_payload_size(path, args, kwargs, serializer, producer.max_payload)
    queue = producer.default_queue if task.queue is None else validate_queue_name(task.queue)
    job_id, options = task.job_id, PLAIN
    if has_options(task):
        job_id = job_id or new_job_id()
        job = new_job(producer.connection, serializer, (path, args, kwargs, call), job_id, queue, timeout)
        json = producer.serializer_name == "json"
        options = check_options(task, path, job, json=json, modules=producer.modules)
    return QueuedJob.build(
        call,
        path,
        args,
        kwargs,
        job_id=job_id,
        queue=queue,
        at_front=bool(task.at_front),
        timeout=timeout,
        retry_intervals=backoff_intervals(task.retries, task.retry_backoff) if task.retries else None,
        options=options,
    )


def prepare_plain(
    producer: Producing, func: str | Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> QueuedJob:
    """``prepare(producer, Task(func, args, kwargs))`` for ``enqueue``'s own tuple of arguments and dict of
    keywords (no options): the same checks in the same order, less those such a tuple and dict always pass."""
    path = producer._paths.check(func, producer.modules)
    if (args or kwargs) and producer.serializer_name == "json":
        check_json_arguments(path, args, kwargs)
    timeout = producer.default_timeout
    check_timeout(path, timeout)
    serializer = SERIALIZERS[producer.serializer_name]
    if args or kwargs:
        call = serialized_call(serializer, path, args, kwargs)
    else:
        calls = producer._no_arguments
        if calls.serializer is not serializer:
            calls = producer._no_arguments = NoArgumentCalls(serializer)
        call, data, description = calls.get(path)
    if producer.max_payload and len(call) > producer.max_payload:
        check_payload_size(path, args, kwargs, serializer, producer.max_payload)
    queue = producer.default_queue
    if args or kwargs:
        return QueuedJob.build(
            call, path, args, kwargs, job_id=None, queue=queue, at_front=False, timeout=timeout, retry_intervals=None
        )
    return QueuedJob(new_job_id(), queue, False, path, args, kwargs, data, description, timeout, None)
