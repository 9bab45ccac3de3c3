"""A queued job as RQ 2.x stores it, built directly instead of through ``Job.create`` and ``Job.save``.

Enqueueing through RQ costs tens of microseconds of Python per job (a ``Job`` built field by field, ``to_dict``,
redis-py packing a ~16-field HSET), several times what Redis spends on it. Most tasks are RQ's common case: no
dependencies, callbacks, TTLs, meta or schedule. For that case this module computes only what varies per job (id,
queue, serialized call, description, timeout, retries); ``producer.atomic`` writes it with the fields every
queued job shares, as ``Queue.enqueue_many`` would. A task with options carries the fields RQ writes for them
(``producer.options``) and where the job goes: its queue, the scheduled or the deferred registry.
``tests/test_rq_contract.py`` compares both with RQ's field by field, and what RQ reads back from each, so an RQ
upgrade that changes the layout fails there.

Two differences save a third of the memory a queued job takes, and RQ cannot tell them apart: ``Job.to_dict``
writes eight fields as the empty string for a job that has not run (callbacks, group, start and end, worker),
which ``Job.restore`` reads exactly as a missing field, so they are left out; and the call is stored compressed
only when compression makes it smaller (a short call grows by zlib's header), which ``Job.restore`` reads as
RQ's own fallback for uncompressed data. A call shorter than ``COMPRESS_FROM`` is not even tried.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from rq.job import Job, JobStatus
from rq.serializers import Serializer
from rq.utils import get_call_string

from producer.options import PLAIN, SCHEDULED, Options
from task_processor.jobs import JobTemplate

DESCRIPTION_ARG_LENGTH = 75
"""RQ's description shortens each argument's repr to this many characters (``Job.get_call_string``)."""


def serialized_call(serializer: Serializer, func: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """The call as RQ serializes it into ``Job.data`` (before compression)."""
    return serializer.dumps((func, None, args, kwargs))


COMPRESS_FROM = 128
"""Bytes from which a call is tried compressed. Below, zlib's six bytes of framing leave it little or nothing to
gain, and each try sets up (and clears) a quarter of a megabyte of tables: about 30 microseconds of an enqueue on
a producer that was idle."""


def stored_call(call: bytes) -> bytes:
    """``call`` as ``Job.data`` is stored: zlib-compressed when it is long enough to try and that makes it
    smaller."""
    if len(call) < COMPRESS_FROM:
        return call
    compressed = zlib.compress(call)
    return compressed if len(compressed) < len(call) else call


def new_job_id() -> str:
    """``str(uuid.uuid4())`` without the UUID object: 16 bytes of ``os.urandom`` with the version (4) and the
    RFC 4122 variant set, as ``uuid.UUID(bytes=..., version=4)`` sets them, in its text form."""
    value = (int.from_bytes(os.urandom(16), "big") & _UUID_KEPT) | _UUID_SET
    text = "%032x" % value  # noqa: UP031 (as uuid.UUID.__str__)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_UUID_KEPT = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)


class NoArgumentCalls:
    """The serialized call, its stored form and its description for a task called without arguments: the same
    for every enqueue of one path, so made once per path (in this serializer)."""

    MAX_PATHS = 4096

    def __init__(self, serializer: Serializer) -> None:
        self.serializer = serializer
        self._calls: dict[str, tuple[bytes, bytes, str]] = {}

    def get(self, path: str) -> tuple[bytes, bytes, str]:
        found = self._calls.get(path)
        if found is None:
            call = serialized_call(self.serializer, path, (), {})
            if len(self._calls) >= self.MAX_PATHS:
                self._calls.clear()
            # get_call_string(path, (), {}) is f"{path}()"
            found = self._calls[path] = (call, stored_call(call), f"{path}()")
        return found


@dataclass(slots=True)
class QueuedJob:
    """What varies between two queued jobs; a checked task, ready to write (never changed once made)."""

    id: str
    queue: str
    at_front: bool
    func: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    data: bytes
    """The serialized call ``(func, None, args, kwargs)`` as ``Job.data`` is stored (``stored_call``)."""
    description: str
    timeout: int
    retry_intervals: list[int] | None
    """Seconds before each retry; None without retries (RQ then writes neither retries field)."""
    options: Options = PLAIN

    @classmethod
    def build(
        cls,
        call: bytes,
        func: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        job_id: str | None,
        queue: str,
        at_front: bool,
        timeout: int,
        retry_intervals: list[int] | None,
        options: Options = PLAIN,
    ) -> QueuedJob:
        """``call`` is ``serialized_call(serializer, func, args, kwargs)``, made once by the caller's checks."""
        data = stored_call(call)
        description = options.description
        if description is None:
            description = get_call_string(func, args, kwargs, max_length=DESCRIPTION_ARG_LENGTH) or ""
        job_id = job_id or new_job_id()
        return cls(job_id, queue, at_front, func, args, kwargs, data, description, timeout, retry_intervals, options)

    def call_fields(self) -> list[Any]:
        """The job's own script arguments, what every job has (enqueue_one.lua's, and the head of
        ``varying_fields``): push end, id, data, description, timeout, retries (count and intervals, '' without)."""
        retries = self.retry_intervals
        return [
            "L" if self.at_front else "R",
            self.id,
            self.data,
            self.description,
            self.timeout,
            "" if retries is None else len(retries),
            "" if retries is None else json.dumps(retries),
        ]

    def varying_fields(self) -> list[Any]:
        """Per-job script arguments (see ``producer.atomic`` and enqueue.lua): ``call_fields``, then the options:
        placement, score, ttl, unique, the dependencies (count first) and the option fields (count first, then name
        and value each)."""
        head, options = self.call_fields(), self.options
        if options is PLAIN:
            return head + _PLAIN_FIELDS
        return [
            *head,
            options.mode,
            options.score,
            options.ttl,
            1 if options.unique else 0,
            len(options.dependencies),
            *options.dependencies,
            len(options.fields),
            *(part for pair in options.fields for part in pair),
        ]


_PLAIN_FIELDS: list[Any] = [PLAIN.mode, PLAIN.score, PLAIN.ttl, 1 if PLAIN.unique else 0, 0, 0]
"""The option arguments of a job without options (``varying_fields``)."""


class JobFactory:
    """Builds the ``rq.job.Job``s RQ would have returned for written jobs, without reading Redis back."""

    def __init__(self, connection: redis.Redis, serializer: Serializer) -> None:
        self._template = JobTemplate(Job, connection, serializer)

    def jobs(self, queued: list[QueuedJob], stamp: datetime, deferred: set[str] | None = None) -> list[Job]:
        """``deferred``: the ids the script put in a deferred registry (a dependency had not finished)."""
        jobs = []
        for item in queued:
            if item.options.job is not None:
                jobs.append(self._with_options(item, stamp, deferred or set()))
                continue
            job = self._template.new(item.id)
            job._func_name, job._instance = item.func, None
            job._args, job._kwargs = item.args, item.kwargs
            job.created_at = job.enqueued_at = stamp
            job.origin, job.description, job.timeout = item.queue, item.description, item.timeout
            job._status = JobStatus.QUEUED
            if item.retry_intervals is not None:
                job.retries_left, job.retry_intervals = len(item.retry_intervals), item.retry_intervals
            jobs.append(job)
        return jobs

    @staticmethod
    def _with_options(item: QueuedJob, stamp: datetime, deferred: set[str]) -> Job:
        job = item.options.job
        assert job is not None
        job.created_at, job.description = stamp, item.description
        if item.options.mode == SCHEDULED:
            job._status = JobStatus.SCHEDULED
        elif item.id in deferred:
            job._status = JobStatus.DEFERRED
        else:
            job._status, job.enqueued_at = JobStatus.QUEUED, stamp
        if item.retry_intervals is not None:
            job.retries_left, job.retry_intervals = len(item.retry_intervals), item.retry_intervals
        return job
