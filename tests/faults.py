"""What the fault tests share (tests/test_faults_workers.py, tests/test_faults_redis.py, and tests/test_sentinel.py):
the workers' settings and log lines around a death or an outage, killing a worker, the registries and records a
job leaves in Redis, and waiting until every accepted job has finished or failed, then checking that none was lost."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.registry import StartedJobRegistry

from task_processor import keys
from tests.conftest import Proc, exc_string, recorded, wait_for
from tests.producer_loop import RUNS_KEY
from worker.batching import Call
from worker.fastpath import FINISH_KEYS
from worker.runner import TaskWorker

FAST = {"TASK_ABANDON_AFTER": "3"}


LOST, RECONNECTED = "lost Redis; reconnecting", "reconnected to Redis"
END_LOST = "lost Redis before the end of the job was recorded; the reaper will run it again"
REQUEUED = ("requeued a job whose worker died", "requeued a job popped by a worker that died before starting it")


def said(proc: Proc, event: str) -> list[dict[str, Any]]:
    return [line for line in proc.json_lines() if line.get("event") == event]


def kill_worker(proc: Proc) -> float:
    """SIGKILL the worker and everything it started, as an OOM kill or a deleted Pod would; return when."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return time.monotonic()


def started(conn: redis.Redis, job_id: str, queue: str) -> bool:
    return job_id in StartedJobRegistry(queue, connection=conn).get_job_ids()


def printed(proc: Proc, kind: str) -> list[str]:
    """What a ``tests.producer_loop`` printed: the job ids it was told were enqueued (``ok``), or its errors."""
    return [line.split(" ", 1)[1] for line in proc.output().splitlines() if line.startswith(f"{kind} ")]


def settle(conn: redis.Redis, job_ids: list[str], timeout: float) -> dict[str, str | None]:
    """Wait until every job has finished or failed; return each one's status."""

    def statuses() -> dict[str, str | None]:
        with conn.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(Job.key_for(job_id), "status")
            return {j: (s.decode() if s else None) for j, s in zip(job_ids, pipe.execute(), strict=True)}

    try:
        wait_for(lambda: all(s in ("finished", "failed") for s in statuses().values()), timeout=timeout)
    except pytest.fail.Exception:
        left = Counter(s for s in statuses().values() if s not in ("finished", "failed"))
        pytest.fail(f"not every accepted job finished or failed after {timeout}s: {dict(left)}")
    return statuses()


def count_runs(conn: redis.Redis) -> Counter[str]:
    return Counter(recorded(conn, RUNS_KEY))


def assert_nothing_lost(conn: redis.Redis, accepted: list[str], statuses: dict[str, str | None]) -> set[str]:
    """Accepted = finished + failed-with-a-reason; every finished job ran. Returns the jobs that ran twice or more."""
    runs = count_runs(conn)
    failed = [j for j in accepted if statuses[j] == "failed"]
    for job_id in failed:
        reason = exc_string(Job.fetch(job_id, connection=conn, serializer="json"))
        assert reason.strip(), f"{job_id} failed without a reason"
    missing = [j for j in accepted if statuses[j] == "finished" and runs[j] == 0]
    assert missing == [], f"finished without running: {missing}"
    assert len(accepted) == sum(statuses[j] in ("finished", "failed") for j in accepted)
    return {j for j in accepted if runs[j] > 1}


def losing_a_reply(
    worker: TaskWorker, conn: redis.Redis, chosen: Callable[[Call], bool], ran: Callable[[Call], bool]
) -> list[Call]:
    """Break the connection of ``worker``'s batched calls once, after Redis ran the first ``chosen`` call (``ran``
    tells, from Redis) and before its reply was read, as a restart or a failover may: redis-py sends it again.
    Returns the list that call goes to once its reply was lost."""
    calls = worker._fast.calls
    for script in (worker._fast._pop, worker._fast._finish):
        conn.script_load(script.script)  # a first send runs it (not a NOSCRIPT reply that loads it)
    exchange, lost = calls._exchange, list[Call]()

    def losing(batch: list[Call]) -> None:
        targets = [call for call in batch if chosen(call)]
        if lost or not targets:
            exchange(batch)
            return

        def reply_lost() -> None:
            wait_for(lambda: ran(targets[0]), timeout=10, what="the call to run")
            lost.append(targets[0])
            raise redis.ConnectionError("connection reset after the call ran")

        calls._read = reply_lost  # type: ignore[method-assign]
        try:
            exchange(batch)
        finally:
            del calls._read

    calls._exchange = losing  # type: ignore[method-assign]
    return lost


def losing_a_finish_reply(worker: TaskWorker, conn: redis.Redis, popping: bool = False) -> list[Call]:
    """``losing_a_reply`` for the worker's first finish (with ``popping``, its first finish that also pops)."""
    finish = worker._fast._finish

    def chosen(call: Call) -> bool:
        return call.script is finish and (not popping or len(call.keys) > FINISH_KEYS)

    return losing_a_reply(worker, conn, chosen, lambda call: conn.hget(keys.job(call.args[0]), "status") == b"finished")
