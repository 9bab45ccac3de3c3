"""`rq suspend`/`rq resume` against a real ``task-worker`` process (README: "`rq suspend` is honoured at the next pop").

While suspended, RQ's check_for_suspension (which the worker calls when its pop finds ``rq:suspended``) sets the
worker's state to ``suspended`` and loops about once a second, each pass heartbeating the worker
(``last_heartbeat``) and looking at ``rq:suspended`` in one MULTI/EXEC. So a new ``last_heartbeat`` proves the
worker saw the suspension once more; the test's own heartbeat thread is slowed (TASK_ABANDON_AFTER) so that it
writes no ``last_heartbeat`` of its own during the test.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
import redis
from rq.job import Job, JobStatus

from producer import Producer
from tests.conftest import Proc, run, wait_for

QUEUE = "suspendable"
WORKER = "suspend-test-worker"
WORKER_KEY = f"rq:worker:{WORKER}"

ABANDON_AFTER = 600
"""TASK_ABANDON_AFTER for the worker: its heartbeat thread beats every 200 s, never within this test."""

SUSPENDED_PASSES = 2
"""How many of the suspended worker's checks (new last_heartbeat values) to see after the enqueue, the job untouched."""


def field(conn: redis.Redis, name: str) -> str | None:
    raw = conn.hget(WORKER_KEY, name)
    return raw.decode() if isinstance(raw, bytes) else raw


def rq_cli(command: str, redis_url: str, env: dict[str, str]) -> None:
    done = run(["rq", command, "--url", redis_url], env, timeout=30)
    assert done.returncode == 0, f"rq {command}: {done.stdout}{done.stderr}"


def stays_queued(conn: redis.Redis, worker: Proc, job: Job) -> None:
    """Watch the suspended worker go round its suspension check SUSPENDED_PASSES times (each a new
    last_heartbeat, written after the enqueue returned) with the job never leaving its queue."""
    seen = field(conn, "last_heartbeat")
    passes = 0
    deadline = time.monotonic() + 5 + SUSPENDED_PASSES
    while passes < SUSPENDED_PASSES:
        status = job.get_status(refresh=True)
        assert status == JobStatus.QUEUED, f"a suspended worker took the job ({status}): {worker.output()[-3000:]}"
        # A pop blocked when `rq suspend` landed moves the job to the intermediate list and straight back.
        assert held(conn) in ([job.id.encode()], [b"(intermediate)", job.id.encode()]), held(conn)
        if (state := field(conn, "state")) != "suspended":
            assert time.monotonic() < deadline, f"the worker's state stayed {state!r}, not 'suspended'"
            time.sleep(0.05)
            continue
        assert worker.popen.poll() is None, worker.output()[-3000:]
        if (beat := field(conn, "last_heartbeat")) != seen:
            seen, passes = beat, passes + 1
            continue  # look at the job once more after this pass too
        assert time.monotonic() < deadline, f"the suspended worker checked rq:suspended only {passes} times"
        time.sleep(0.05)
    assert conn.lrange(f"rq:queue:{QUEUE}", 0, -1) == [job.id.encode()], "not back at the head of its queue"
    assert not [line for line in worker.json_lines() if line.get("event") == "job"]


def held(conn: redis.Redis) -> list[bytes]:
    """The queue's list, or the intermediate list marked as such, read in one atomic step."""
    with conn.pipeline(transaction=True) as pipe:
        pipe.lrange(f"rq:queue:{QUEUE}", 0, -1)
        pipe.lrange(f"rq:queue:{QUEUE}:intermediate", 0, -1)
        queued, moving = pipe.execute()
    return list(queued) if queued or not moving else [b"(intermediate)", *moving]


def resumed_runs(
    producer: Producer, conn: redis.Redis, redis_url: str, env: dict[str, str], worker: Proc, job: Job
) -> None:
    """`rq resume`: the job runs, and the worker is no longer suspended."""
    rq_cli("resume", redis_url, env)
    assert not conn.exists("rq:suspended")
    assert producer.wait([job], timeout=10) == [3]
    wait_for(lambda: field(conn, "state") == "idle", timeout=5, what="the resumed worker to be idle again")
    # The job's line follows its recorded end: wait for it.
    lines = wait_for(lambda: [line for line in worker.json_lines() if line.get("event") == "job"], what="the job line")
    assert [(line["job_id"], line["outcome"]) for line in lines] == [(job.id, "finished")]
    assert worker.popen.poll() is None, worker.output()[-3000:]


def start_worker(conn: redis.Redis, spawn: Callable[..., Proc]) -> Proc:
    worker = spawn(
        "task-worker", "--queue", QUEUE, "--name", WORKER, extra_env={"TASK_ABANDON_AFTER": str(ABANDON_AFTER)}
    )
    wait_for(lambda: field(conn, "state") == "idle", timeout=15, what="the worker to register, idle")
    return worker


@pytest.mark.timeout(40)
def test_rq_suspend_holds_jobs_in_the_queue_until_rq_resume(
    producer: Producer, conn: redis.Redis, redis_url: str, env: dict[str, str], spawn: Callable[..., Proc]
) -> None:
    worker = start_worker(conn, spawn)

    # 1. `rq suspend`: the worker's next pop finds rq:suspended and the worker says so in its hash.
    rq_cli("suspend", redis_url, env)
    assert conn.exists("rq:suspended")
    wait_for(lambda: field(conn, "state") == "suspended", timeout=5, what="the worker's state to become 'suspended'")

    # 2. A job enqueued now stays queued.
    job = producer.enqueue("worker.examples.add", 1, 2, queue=QUEUE)
    stays_queued(conn, worker, job)

    # 3. `rq resume`: the job runs.
    resumed_runs(producer, conn, redis_url, env, worker, job)


@pytest.mark.timeout(40)
def test_a_job_enqueued_right_after_rq_suspend_is_not_taken_by_a_worker_blocked_in_its_pop(
    producer: Producer, conn: redis.Redis, redis_url: str, env: dict[str, str], spawn: Callable[..., Proc]
) -> None:
    """An idle worker spends its time in a blocking pop on the empty queue; `rq suspend` lands during it and
    the job arrives before the worker has looked at rq:suspended again. The pop hands the job back."""
    worker = start_worker(conn, spawn)
    rq_cli("suspend", redis_url, env)
    job = producer.enqueue("worker.examples.add", 1, 2, queue=QUEUE)
    stays_queued(conn, worker, job)
    resumed_runs(producer, conn, redis_url, env, worker, job)


@pytest.mark.timeout(40)
def test_a_suspended_worker_stops_on_sigterm(
    producer: Producer, conn: redis.Redis, redis_url: str, env: dict[str, str], spawn: Callable[..., Proc]
) -> None:
    """Suspended, the worker waits for `rq resume`; a warm stop (SIGTERM, as Kubernetes sends) still ends it, and
    the job it holds back stays queued."""
    worker = start_worker(conn, spawn)
    rq_cli("suspend", redis_url, env)
    job = producer.enqueue("worker.examples.add", 1, 2, queue=QUEUE)
    wait_for(lambda: field(conn, "state") == "suspended", timeout=5, what="the worker's state to become 'suspended'")
    worker.signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert conn.lrange(f"rq:queue:{QUEUE}", 0, -1) == [job.id.encode()]
