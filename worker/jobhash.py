"""A popped job's hash read into an RQ ``Job``: what ``Job.restore`` leaves, at a fraction of its cost.

``Job.restore`` decodes every field name, parses each timestamp with ``strptime`` and tries to decompress the call
even when it is stored plain (``producer.jobhash`` stores a short call as it is, so RQ's attempt raises and catches
a ``zlib.error`` for most jobs). It is a third of what a worker does between its wake and the task's first line.
A hash holding only the fields a job without RQ's rarer options has (``PLAIN_FIELDS``, which read the same whether
empty or missing) is read here field by field, each exactly as ``Job.restore`` reads it; any other hash goes to
``Job.restore`` itself, its timestamps parsed fast first. ``tests/test_job_restore.py`` holds the two equal,
attribute by attribute, on the hashes our producer, our pop and RQ's own enqueue write.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import now

from task_processor.jobs import ATTEMPT_META_KEY, parse_time

DATES = (b"created_at", b"enqueued_at", b"started_at", b"ended_at", b"last_heartbeat")
"""The job hash's timestamps, as RQ writes them (``rq.utils.utcformat``)."""

PLAIN_FIELDS = frozenset(
    {
        *DATES,
        b"data",
        b"status",
        b"origin",
        b"description",
        b"timeout",
        b"meta",
        b"worker_name",
        b"group_id",
        b"success_callback_name",
        b"failure_callback_name",
        b"stopped_callback_name",
        b"retries_left",
        b"retry_intervals",
        b"number_of_retries",
        b"result_ttl",
        b"failure_ttl",
        b"ttl",
    }
)
"""Fields read here. Each one ``Job.restore`` reads by its value alone (an empty one as a missing one); fields it
reads by their presence (``enqueue_at_front``, the callbacks' timeouts) and the rarer ones (result, exc_info,
dependencies, repeats, webhooks) send the hash to ``Job.restore``."""


ATTEMPT_ONLY = re.compile(rb'\{"attempt": ([1-9][0-9]{0,8})\}')
"""A meta holding nothing but the attempt count, as the pop script writes it."""

_STATUSES = {status.value.encode(): status for status in JobStatus}
"""Each status by its stored value (calling the enum class by value runs a score of Python lines a job)."""


def restore(job: Job, fields: dict[bytes, bytes]) -> None:
    """``job.restore(fields)``, for a hash as Redis returns it (bytes names and values)."""
    timeout = fields.get(b"timeout")
    if b"data" not in fields or not fields.keys() <= PLAIN_FIELDS or (timeout and not timeout.isdigit()):
        _restore_by_rq(job, fields)
        return
    job.data = _call(fields[b"data"])
    created = fields.get(b"created_at")
    job.created_at = parse_time(created.decode()) if created else now()
    job.origin = text.decode() if (text := fields.get(b"origin")) else ""
    job.worker_name = text.decode() if (text := fields.get(b"worker_name")) else None
    job.description = text.decode() if (text := fields.get(b"description")) else None
    job.enqueued_at = parse_time(text.decode()) if (text := fields.get(b"enqueued_at")) else None
    job.started_at = parse_time(text.decode()) if (text := fields.get(b"started_at")) else None
    job.ended_at = parse_time(text.decode()) if (text := fields.get(b"ended_at")) else None
    job.last_heartbeat = parse_time(text.decode()) if (text := fields.get(b"last_heartbeat")) else None
    job.group_id = text.decode() if (text := fields.get(b"group_id")) else None
    job.timeout = int(timeout) if timeout else None
    job.result_ttl = int(text) if (text := fields.get(b"result_ttl")) else None
    job.failure_ttl = int(text) if (text := fields.get(b"failure_ttl")) else None
    text = fields.get(b"status")
    job._status = (_STATUSES.get(text) or JobStatus(text.decode())) if text else JobStatus.CREATED
    if text := fields.get(b"success_callback_name"):
        job._success_callback_name = text.decode()
    if text := fields.get(b"failure_callback_name"):
        job._failure_callback_name = text.decode()
    if text := fields.get(b"stopped_callback_name"):
        job._stopped_callback_name = text.decode()
    job._dependency_ids = []
    job.allow_dependency_failures = None
    job.enqueue_at_front = None
    job.ttl = int(text) if (text := fields.get(b"ttl")) else None
    job.meta = _meta(job, fields.get(b"meta"))
    job.number_of_retries = int(text) if (text := fields.get(b"number_of_retries")) else None
    job.retries_left = int(text) if (text := fields.get(b"retries_left")) else None
    if text := fields.get(b"retry_intervals"):
        job.retry_intervals = json.loads(text.decode())
    job.enqueue_at_front_on_retry = False
    job.repeats_left = None


def _call(raw: bytes) -> bytes:
    """``Job.data`` from the stored call: decompressed when it is a zlib stream. zlib refuses at once any data
    whose first two bytes are not a deflate stream's header, so only such data is tried."""
    if len(raw) >= 2 and raw[0] & 0x0F == 8 and ((raw[0] << 8) | raw[1]) % 31 == 0:
        try:
            return zlib.decompress(raw)
        except zlib.error:
            pass
    return raw


def _meta(job: Job, raw: bytes | None) -> dict[str, Any]:
    if not raw:
        return {}
    if job.serializer is JSONSerializer and (attempt := ATTEMPT_ONLY.fullmatch(raw)):
        return {ATTEMPT_META_KEY: int(attempt[1])}  # what the pop writes (lua/lib/pop.lua), read without json
    try:
        return job.serializer.loads(raw)  # type: ignore[no-any-return]
    except Exception:  # as Job.restore: depends on the serializer
        return {"unserialized": raw}


def _restore_by_rq(job: Job, fields: dict[bytes, bytes]) -> None:
    """``Job.restore`` itself, with the timestamps taken out first and parsed with ``parse_time`` (``strptime``,
    which RQ uses, is a tenth of a no-op job's cost)."""
    dates = {name: fields.pop(name) for name in DATES if fields.get(name)}
    job.restore(fields)
    for name, raw in dates.items():
        setattr(job, name.decode(), parse_time(raw.decode()))
