"""Bad input, a job deleted while it runs: ``Producer.wait`` fails it with TaskFailedError saying it no longer
exists (rather than timing out or returning its result), and the worker survives and runs the next job.

The other kinds of bad input, and what these modules share: tests/bad_input.py.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
import redis
from rq.registry import StartedJobRegistry

from producer import Producer, TaskFailedError
from tests.conftest import Proc, job_lines, recorded, wait_for


@pytest.mark.timeout(100)
@pytest.mark.parametrize(
    ("func", "args"),
    [("worker.examples.sleep", (1.0,)), ("worker.examples.record", ("ran", "slow", 1.0))],
    ids=["sleep", "record"],
)
def test_a_job_deleted_while_running_fails_wait_and_spares_the_worker(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc], func: str, args: tuple[Any, ...]
) -> None:
    running = producer.enqueue(func, *args)
    after = producer.enqueue("worker.examples.record", "ran", "next")
    worker = spawn("task-worker", "--burst")
    wait_for(
        lambda: running.id in StartedJobRegistry("default", connection=conn).get_job_ids(),
        what="the slow job to start",
    )
    # The worker is frozen while the job is gone: its end would write the job's status again, and wait() must
    # notice the deletion itself (a WaitTimeoutError, or the job's result, is not noticing).
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        conn.delete(running.key)
        with pytest.raises(TaskFailedError) as info:
            producer.wait([running], timeout=60)
    finally:
        os.killpg(worker.pid, signal.SIGCONT)
    assert info.value.job_id == running.id
    assert str(info.value) == (
        f"job {running.id} no longer exists in Redis (deleted, or its result expired before the wait)"
    )
    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]
    assert producer.wait([after], timeout=5) == ["next"]
    assert recorded(conn, "ran")[-1] == "next"
    assert all(line.startswith("{") for line in worker.output().splitlines() if line.strip())
    assert [line["outcome"] for line in job_lines(worker)] == ["finished", "finished"]
