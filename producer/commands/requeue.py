"""Requeue dead-lettered jobs: move jobs out of a queue's failed registry and back onto the queue.

A job that failed for good (after its retries) waits in ``rq:failed:<q>`` with its traceback. Once the
cause is fixed (a bug deployed, a service back up) an operator wants that same job to run again: same id,
same arguments, same ``meta`` (so ``meta.attempt`` keeps counting), not a fresh copy. RQ's own
``FailedJobRegistry.requeue`` does exactly that (removes it from the registry, resets the status to
queued, clears the run's timestamps, pushes it on its queue), so this module only adds what the command
needs around it: checking every id before touching anything, and a stable order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, validate_job_id
from rq.registry import FailedJobRegistry
from rq.serializers import Serializer

from task_processor.errors import TaskProcessorError
from task_processor.logs import get_logger
from task_processor.settings import validate_queue_name

log = get_logger("task_processor.requeue")

_NEVER = datetime.min.replace(tzinfo=UTC)
"""Sort key for a failed job without ``ended_at``: such jobs go first, in registry order."""


class RequeueError(TaskProcessorError, LookupError):
    """A job id that is not in the failed registry (nothing was requeued); not bad syntax, hence exit 1."""


def requeue_failed(
    connection: redis.Redis,
    queue: str,
    job_ids: Sequence[str] | None,
    serializer: Serializer,
) -> list[str]:
    """Move jobs from ``queue``'s failed registry to the back of ``queue``; return their ids in that order.

    ``job_ids=None`` means every failed job of the queue, oldest failure first (the order they would have
    run in). Given ids are requeued in the order given, each once. Every id is checked before the first is
    moved, so a typo in a list requeues none of it. Requeued jobs go to the back of the queue (RQ's
    ``at_front=False``): work queued meanwhile is not overtaken by yesterday's failures.
    """
    validate_queue_name(queue)
    registry = FailedJobRegistry(queue, connection=connection, serializer=serializer)
    if job_ids is None:
        jobs = _all_failed(registry, connection, serializer)
    else:
        jobs = _named_failed(registry, connection, serializer, list(dict.fromkeys(job_ids)))
    requeued: list[str] = []
    for job in jobs:
        try:
            # Passing the fetched Job (not its id) spares RQ a second fetch; it re-saves data and meta as is.
            registry.requeue(job, at_front=False)
        except (InvalidJobOperation, NoSuchJobError):
            done = f" (already requeued: {', '.join(requeued)})" if requeued else ""
            raise RequeueError(
                f"job {job.id} left the failed registry of {queue!r} while requeueing (requeued or deleted by "
                f"someone else){done}: run `task-producer status` and retry the rest"
            ) from None
        requeued.append(job.id)
    return requeued


def _all_failed(registry: FailedJobRegistry, connection: redis.Redis, serializer: Serializer) -> list[Job]:
    """Every failed job with its data, oldest failure first.

    The registry is scored by expiry in whole seconds (ties sorted by id), so it cannot tell apart jobs
    that failed in the same second; ``ended_at`` can. An entry whose job data is gone (deleted by hand)
    cannot run again: it is skipped with a warning rather than blocking the rest.
    """
    ids = registry.get_job_ids()
    jobs: list[Job] = []
    for job_id, job in zip(ids, Job.fetch_many(ids, connection, serializer=serializer), strict=True):
        if job is None:
            log.warning("skipped a failed-registry entry whose job data is gone", job_id=job_id, queue=registry.name)
        else:
            jobs.append(job)
    return sorted(jobs, key=lambda j: j.ended_at or _NEVER)


def _named_failed(
    registry: FailedJobRegistry, connection: redis.Redis, serializer: Serializer, job_ids: list[str]
) -> list[Job]:
    """The named jobs, or a RequeueError naming every id that is not a failed job of this queue."""
    valid = [job_id for job_id in job_ids if _is_job_id(job_id)]
    with connection.pipeline(transaction=False) as pipe:
        for job_id in valid:
            pipe.zscore(registry.key, job_id)
        scores = dict(zip(valid, pipe.execute(), strict=True))
    fetched = dict(zip(valid, Job.fetch_many(valid, connection, serializer=serializer), strict=True))
    problems: list[str] = []
    for job_id in job_ids:
        job = fetched.get(job_id)
        if job_id not in fetched:
            problems.append(f"{job_id} (not a job id)")
        elif job is None:
            problems.append(f"{job_id} (no such job)")
        elif scores[job_id] is None:
            status = getattr(job.get_status(refresh=False), "value", None) or "no status"
            where = f" on queue {job.origin!r}" if job.origin != registry.name else ""
            problems.append(f"{job_id} ({status}{where})")
    if problems:
        raise RequeueError(
            f"not in the failed registry of {registry.name!r}: {', '.join(problems)}; nothing requeued "
            "(check the ids, or pass --queue for another queue)"
        )
    return [fetched[job_id] for job_id in job_ids]  # type: ignore[misc]


def _is_job_id(text: str) -> bool:
    """RQ's own id syntax; anything else (a ':' would even be cut off by RQ's fetch) names no job."""
    try:
        validate_job_id(text)
    except (TypeError, ValueError):
        return False
    return True
