"""Prometheus metrics of a worker process, and the HTTP endpoint both sides serve them on.

Off unless METRICS_PORT is set, and then not even counted (a job's metrics cost more than a short task). One
registry per process: however many worker slots a process runs, one port serves them all; jobs are counted by
queue and function, and ``task_processor_worker_busy`` counts the slots running a job right now.
"""

from __future__ import annotations

import errno

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus

from worker.errors import ConfigError
from worker.logs import get_logger

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
"""Seconds: from sub-millisecond tasks to the half-hour ones (TASK_TIMEOUT is 180 s by default)."""

LABELS = ("queue", "function")

log = get_logger("task_processor.metrics")

disable_created_metrics()  # the `_created` series double every counter for no use on a dashboard


def new_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors every Python exporter shows."""
    registry = CollectorRegistry(auto_describe=True)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


REGISTRY = new_registry()
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
BUSY = Gauge("task_processor_worker_busy", "Worker slots of this process running a job now.", registry=REGISTRY)

_ENDED = {
    JobStatus.FINISHED: JOBS_FINISHED,
    JobStatus.SCHEDULED: JOBS_RETRIED,
    JobStatus.QUEUED: JOBS_RETRIED,
}


def _labels(job: Job) -> tuple[str, str]:
    try:
        function = job.func_name
    except DeserializationError:
        function = "<undecodable>"
    return job.origin, function


_counting = False
"""Whether this process serves its metrics (``serve`` with a port), and so counts jobs."""


def job_started(job: Job) -> None:
    if not _counting:
        return
    JOBS_STARTED.labels(*_labels(job)).inc()
    BUSY.inc()


def job_ended(job: Job, seconds: float, interrupted: bool = False) -> None:
    """Count one run's outcome from the status the job ended in (``interrupted``: requeued by a cold stop)."""
    if not _counting:
        return
    labels = _labels(job)
    counter = JOBS_RETRIED if interrupted else _ENDED.get(job.get_status(refresh=False), JOBS_FAILED)
    counter.labels(*labels).inc()
    JOB_DURATION.labels(*labels).observe(seconds)
    BUSY.dec()


def serve(port: int, bind: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve ``registry`` on ``http://bind:port/metrics`` from a daemon thread; port 0 means off.

    ``bind`` is METRICS_BIND: loopback by default, because /metrics names queues and task functions and
    answers anyone who can reach it; the chart binds the Pod's own IP so that Prometheus (and nothing in the Pod
    network namespace's other interfaces) reaches it.
    """
    global _counting
    if not port:
        return
    try:
        start_http_server(port, addr=bind, registry=registry)
        _counting = True
    except (OSError, OverflowError) as exc:
        if isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(
                f"METRICS_BIND={bind}: cannot listen there ({exc}): use an address of this machine, such as "
                "127.0.0.1 or the Pod's IP"
            ) from exc
        raise ConfigError(
            f"METRICS_PORT={port}: cannot listen there ({exc}): pick a free port, or 0 to turn metrics off"
        ) from exc
    log.info("serving Prometheus metrics", address=bind, port=port, path="/metrics")
