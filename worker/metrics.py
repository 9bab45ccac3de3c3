"""Prometheus metrics of a worker process.

Off unless METRICS_PORT is set, and then not even counted (a job's metrics cost more than a short task). One
registry per process: however many worker slots a process runs, one port serves them all; jobs are counted by
pool (WORKER_POOL, ``default`` without one), queue and function, and ``task_processor_worker_busy`` counts the
slots running a job right now.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus

from task_processor import metrics

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
"""Seconds: from sub-millisecond tasks to the half-hour ones (TASK_TIMEOUT is 180 s by default)."""

LABELS = ("pool", "queue", "function")

REGISTRY = metrics.new_registry()
JOBS_STARTED = Counter("task_processor_jobs_started", "Job runs started.", LABELS, registry=REGISTRY)
JOBS_FINISHED = Counter("task_processor_jobs_finished", "Job runs that succeeded.", LABELS, registry=REGISTRY)
JOBS_FAILED = Counter(
    "task_processor_jobs_failed",
    "Job runs that failed for good (no retry left), or were stopped.",
    LABELS,
    registry=REGISTRY,
)
JOBS_RETRIED = Counter(
    "task_processor_jobs_retried",
    "Job runs that failed or were interrupted and will run again (a retry, or requeued by a cold stop).",
    LABELS,
    registry=REGISTRY,
)
JOB_DURATION = Histogram(
    "task_processor_job_duration_seconds",
    "Wall time of one job run, whatever its outcome.",
    LABELS,
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
BUSY = Gauge(
    "task_processor_worker_busy", "Worker slots of this process running a job now.", ["pool"], registry=REGISTRY
)

_ENDED = {
    JobStatus.FINISHED: JOBS_FINISHED,
    JobStatus.SCHEDULED: JOBS_RETRIED,
    JobStatus.QUEUED: JOBS_RETRIED,
}


def _labels(job: Job) -> tuple[str, str, str]:
    try:
        function = job.func_name
    except DeserializationError:
        function = "<undecodable>"
    return _pool, job.origin, function or "-"


_counting = False
"""Whether this process serves its metrics (``serve`` with a port), and so counts jobs."""

_pool = "default"
"""The worker pool this process belongs to, as the autoscaler's metrics name it."""


def job_started(job: Job) -> None:
    if not _counting:
        return
    JOBS_STARTED.labels(*_labels(job)).inc()
    BUSY.labels(_pool).inc()


def job_ended(job: Job, seconds: float, interrupted: bool = False) -> None:
    """Count one run's outcome from the status the job ended in (``interrupted``: requeued by a cold stop)."""
    if not _counting:
        return
    labels = _labels(job)
    counter = JOBS_RETRIED if interrupted else _ENDED.get(job.get_status(refresh=False), JOBS_FAILED)
    counter.labels(*labels).inc()
    JOB_DURATION.labels(*labels).observe(seconds)
    BUSY.labels(_pool).dec()


def serve(port: int, bind: str, pool: str | None = None) -> None:
    """Serve this process's worker metrics (``task_processor.metrics.serve``), and count jobs only if it does."""
    global _counting, _pool
    _pool = pool or "default"
    BUSY.labels(_pool).set(0)  # an idle worker shows 0 busy slots, not nothing
    _counting = metrics.serve(port, bind, REGISTRY)
