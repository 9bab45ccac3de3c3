"""The one structured line each job leaves in the log, and its metrics.

The line carries the job's context (``job_id``, ``queue``, ``func``, bound by the worker for every line the job
logs) and says how the run ended: ``outcome``, ``attempt``, ``duration_ms``, and on failure ``error`` (the last line)
and ``traceback``. One line per run, so a log query counts runs.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job, JobStatus

from task_processor.jobs import ATTEMPT_META_KEY
from task_processor.logs import get_logger
from worker import metrics

OUTCOMES = {
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.SCHEDULED: "retry-scheduled",
    JobStatus.QUEUED: "retry-queued",
    JobStatus.STOPPED: "stopped",
}
"""The ``outcome`` field by the status a job ends its run in."""

log = get_logger("task_processor.worker")


def log_job(
    job: Job, seconds: float, *, requeued: str | None = None, refusal: str | None = None, error: str | None = None
) -> None:
    """Log the run's line and count it.

    ``requeued``: the outcome of a run that ended without its end recorded, the job back in its queue
    (``interrupted-requeued``, ``start-unrecorded``, ``end-unrecorded``). ``refusal``: why a job was refused
    (outcome ``refused``). ``error``: the traceback of a failed run."""
    metrics.job_ended(job, seconds, interrupted=requeued is not None)
    fields: dict[str, Any] = {
        "attempt": int(job.meta.get(ATTEMPT_META_KEY, 1)),
        "duration_ms": round(seconds * 1000, 2),
    }
    if requeued is not None:
        log.warning("job", outcome=requeued, **fields)
        return
    if refusal is not None:
        log.error("job", outcome="refused", error=refusal, **fields)
        return
    status = job.get_status(refresh=False)
    outcome = OUTCOMES.get(status, str(status))
    if error is None:
        log.info("job", outcome=outcome, **fields)
        return
    last = error.strip().splitlines()[-1] if error.strip() else "unknown error"
    level = log.error if outcome == "failed" else log.warning
    level("job", outcome=outcome, error=last, traceback=error, **fields)
