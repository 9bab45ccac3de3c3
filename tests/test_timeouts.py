"""Job timeouts in a single-slot worker (no --concurrency): RQ's SIGALRM stops the task, even in a blocking call."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry

from producer import Producer
from tests.conftest import Proc, exc_string, wait_for

TIMEOUT = 2
"""The job's timeout, in seconds."""

BLOCKED_FOR = 90
"""How long the task would block in one call (time.sleep) if nothing stopped it: longer than any deadline here."""


@pytest.mark.timeout(100)
def test_a_task_over_its_timeout_is_stopped_failed_and_the_worker_takes_the_next(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    stuck = producer.enqueue("worker.examples.sleep", BLOCKED_FOR, timeout=TIMEOUT)
    after = producer.enqueue("worker.examples.add", 1, 2)
    worker = spawn("task-worker")
    # Failed long before its blocking call would have returned: the alarm interrupted it.
    wait_for(
        lambda: stuck.id in FailedJobRegistry("default", connection=conn).get_job_ids(),
        timeout=BLOCKED_FOR - 30,
        what="the stuck job to be stopped and failed",
    )
    assert producer.wait([after], timeout=30) == [3]
    failure = exc_string(Job.fetch(stuck.id, connection=conn, serializer="json"))
    assert f"JobTimeoutException: Task exceeded maximum timeout value ({TIMEOUT} seconds)" in failure
    assert worker.popen.poll() is None, worker.output()[-3000:]

    # The job's log line comes right after its finish is recorded, which `wait` may see first.
    def outcomes() -> list[tuple[str, str]]:
        return [(line["job_id"], line["outcome"]) for line in worker.json_lines() if line.get("event") == "job"]

    wait_for(lambda: len(outcomes()) == 2, what="both jobs' log lines")
    assert outcomes() == [(stuck.id, "failed"), (after.id, "finished")]
    stopped_after = next(
        line["duration_ms"] for line in worker.json_lines() if line.get("event") == "job" and line["job_id"] == stuck.id
    )
    print(f"stopped after {stopped_after / 1000:.1f}s (timeout {TIMEOUT}s, blocking call of {BLOCKED_FOR}s)")
    assert stopped_after < (BLOCKED_FOR - 30) * 1000


@pytest.mark.timeout(100)
def test_a_timeout_still_stops_a_task_after_one_that_reset_the_alarm_signal(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    """The worker keeps its SIGALRM handler installed between jobs: a task that put back the default action (which
    ends the process) must not turn the next job's timeout into the worker's death."""
    reset = producer.enqueue("worker.examples.reset_alarm")
    stuck = producer.enqueue("worker.examples.sleep", BLOCKED_FOR, timeout=TIMEOUT)
    after = producer.enqueue("worker.examples.add", 1, 2)
    worker = spawn("task-worker")
    assert producer.wait([reset], timeout=30) == [None]
    wait_for(
        lambda: (
            stuck.id in FailedJobRegistry("default", connection=conn).get_job_ids() or worker.popen.poll() is not None
        ),
        timeout=BLOCKED_FOR - 30,
        what="the stuck job to be stopped and failed",
    )
    assert worker.popen.poll() is None, f"the worker died of the alarm:\n{worker.output()[-3000:]}"
    assert producer.wait([after], timeout=30) == [3]
