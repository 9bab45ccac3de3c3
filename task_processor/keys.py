"""Every Redis key the project reads or writes, named in one place.

RQ's keys are built from RQ's own templates, so the names follow RQ; the few keys of our own live under
``task-processor:`` and are listed in the README. Nobody else types ``"rq:wip:"``. (The Lua scripts receive
their keys from these functions, except the per-job keys a script derives from an id it pops.)
"""

from __future__ import annotations

from rq.executions import ExecutionRegistry
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.queue import Queue
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.suspension import WORKERS_SUSPENDED
from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY

OURS = "task-processor:"
"""The prefix of every key of our own."""

QUEUES = Queue.redis_queues_keys
"""rq:queues: the set of every queue's key."""

WORKERS = REDIS_WORKER_KEYS
"""rq:workers: the set of every live worker's key."""

SUSPENDED = WORKERS_SUSPENDED
"""rq:suspended: present while `rq suspend` is in force."""

JOB_PREFIX = Job.redis_job_namespace_prefix
"""rq:job: (a job's hash is this prefix and its id)."""

WORKER_PREFIX = "rq:worker:"
"""rq:worker: (a worker's hash is this prefix and its name): RQ's Worker.redis_worker_namespace_prefix, typed here
so that the core need not import RQ's worker."""

QUEUE_PREFIX = Queue.redis_queue_namespace_prefix
"""rq:queue: (a queue's list is this prefix and its name)."""


def queue(name: str) -> str:
    """rq:queue:<q>, the list of queued job ids."""
    return QUEUE_PREFIX + name


def intermediate(name: str) -> str:
    """rq:queue:<q>:intermediate, where a pop moves a job before it is started."""
    return IntermediateQueue.get_intermediate_queue_key(queue(name))


def started(name: str) -> str:
    """rq:wip:<q>, the started registry: ``<job id>:<execution id>`` scored by when it lapses without heartbeats."""
    return StartedJobRegistry.key_template.format(name)


def failed(name: str) -> str:
    """rq:failed:<q>."""
    return FailedJobRegistry.key_template.format(name)


def finished(name: str) -> str:
    """rq:finished:<q>."""
    return FinishedJobRegistry.key_template.format(name)


def scheduled(name: str) -> str:
    """rq:scheduled:<q>."""
    return ScheduledJobRegistry.key_template.format(name)


def deferred(name: str) -> str:
    """rq:deferred:<q>."""
    return DeferredJobRegistry.key_template.format(name)


def job(job_id: str) -> str:
    """rq:job:<id>, the job's hash."""
    return JOB_PREFIX + job_id


def execution(member: str) -> str:
    """rq:execution:<job id>:<execution id>, for an entry of the started registry."""
    return f"rq:execution:{member}"


def executions(job_id: str) -> str:
    """rq:executions:<id>, the job's execution registry."""
    return ExecutionRegistry.key_template.format(job_id)


def results(job_id: str) -> str:
    """rq:results:<id>, the job's results stream."""
    return f"rq:results:{job_id}"  # RQ's Result.get_key, which is untyped


def workers_of(name: str) -> str:
    """rq:workers:<q>, the workers listening on a queue."""
    return WORKERS_BY_QUEUE_KEY % name


def autoscaler_status(target: str) -> str:
    """task-processor:autoscaler:<deployment>, the autoscaler's last decision (for ``task-producer status``)."""
    return f"{OURS}autoscaler:{target}"


AUTOSCALER_POOLS = f"{OURS}autoscaler:_pools"
"""Sorted set of the Deployments an autoscaler reported on, scored by the time of the report: how ``status`` finds
every pool. ``_`` cannot start a Deployment's name, so no Deployment's report can take this key."""

CRON_STATUS = f"{OURS}autoscaler:_cron"
"""Hash of the periodic tasks (TASK_CRON) as the leading autoscaler last published them: entry name -> JSON of its
schedule, function, queue, last and next run; it expires like a report. With the reports, so whoever may read those
(``task-producer status``) reads this too; ``_`` keeps it apart from every Deployment's report."""

CRON_TICKS = f"{OURS}cron:ticks"
"""Hash of entry name -> JSON of the latest tick handled (fired, or taken as the start for a new entry), its schedule
and the last run: how a new or restarted leader knows what was fired. Never expires; the autoscaler's alone."""


def intermediate_seen(name: str) -> str:
    """task-processor:intermediate-seen:<q>, job id -> when the reaper first saw it stranded in the intermediate
    list."""
    return f"{OURS}intermediate-seen:{name}"


def foreign(key: str) -> str:
    """task-processor:foreign:<key>, where data of the wrong type found under one of RQ's keys is moved."""
    return f"{OURS}foreign:{key}"
