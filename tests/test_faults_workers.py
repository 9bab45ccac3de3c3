"""Nothing lost when workers die: workers killed with SIGKILL at any moment (mid-job, right after popping a job,
over and over at random), with real processes and a real redis-server. Redis itself killed:
tests/test_faults_redis.py; what both share: tests/faults.py."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from producer import Producer, Task
from producer.scaling.autoscaler import Autoscaler
from producer.scaling.local.deployment import LocalDeployment
from producer.scaling.policy import Bounds
from task_processor.observe import list_workers
from task_processor.reaper import ABANDONED_FIELD, INTERMEDIATE_GRACE
from task_processor.settings import Settings
from tests.conftest import TASK_MODULES, Proc, exc_string, recorded, running, wait_for
from tests.faults import FAST, REQUEUED, assert_nothing_lost, kill_worker, said, settle, started
from tests.producer_loop import RUNS_KEY
from worker.dequeue import DEQUEUE_POLL
from worker.runner import build_worker

pytestmark = pytest.mark.fault


def reaper_cadence(abandon_after: int) -> float:
    """Seconds between two reaper passes of an idle worker: one per heartbeat, every third of TASK_ABANDON_AFTER
    (worker/resilient.py), plus the blocking pop the pass waits behind."""
    return abandon_after / 3 + DEQUEUE_POLL


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("queues", "extra_env"),
    [
        pytest.param(["default"], {}, id="one-queue-default-settings"),
        pytest.param(["high", "default"], FAST, id="two-queues-abandon-after-3s"),
    ],
)
def test_a_killed_workers_job_is_requeued_and_finished_by_another(
    redis_url: str,
    producer: Producer,
    conn: redis.Redis,
    spawn: Callable[..., Proc],
    queues: list[str],
    extra_env: dict[str, str],
) -> None:
    """No reaper of the test's own: the idle worker's passes, at their own cadence, find and requeue the job."""
    settings = Settings.from_env({**extra_env, "REDIS_URL": redis_url})
    args = [arg for q in queues for arg in ("--queue", q)]
    job = producer.enqueue("worker.examples.record", "done", "x", seconds=3)
    doomed = spawn("task-worker", *args, extra_env=extra_env)
    wait_for(lambda: started(conn, job.id, "default"), timeout=30, what="the job to start")
    idle = spawn("task-worker", *args, extra_env=extra_env)
    wait_for(lambda: len(list_workers(conn)) == 2, timeout=30, what="the idle worker to register")
    died = kill_worker(doomed)
    # The started entry lapses within TASK_ABANDON_AFTER of the kill; the idle worker's next pass requeues it.
    bound = settings.abandon_after + reaper_cadence(settings.abandon_after) + 20
    wait_for(
        lambda: [line for line in said(idle, REQUEUED[0]) if line["job_id"] == job.id],
        timeout=bound,
        what="the idle worker to requeue the dead worker's job",
    )
    recovered = time.monotonic() - died
    assert producer.wait([job], timeout=30) == ["x"]
    assert recorded(conn, "done") == ["x"]  # the killed run never finished: no duplicate here
    assert [(line["job_id"], line["outcome"]) for line in said(idle, "job")] == [(job.id, "finished")]
    job.refresh()
    assert job.meta["attempt"] == 2
    assert conn.hget(job.key, ABANDONED_FIELD) == b"1"
    print(f"requeued by an idle worker {recovered:.1f}s after SIGKILL (TASK_ABANDON_AFTER={settings.abandon_after})")


@pytest.mark.timeout(120)
def test_with_no_worker_up_the_autoscaler_requeues_a_dead_workers_job_and_scales_up_for_it(
    redis_url: str, producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    """Workers at zero: nothing but the autoscaler's own reaper (every REAP_INTERVAL) can find the job."""
    job = producer.enqueue("worker.examples.record", "done", "x", seconds=4)
    doomed = spawn("task-worker", extra_env=FAST)
    wait_for(lambda: started(conn, job.id, "default"), timeout=30, what="the job to start")
    kill_worker(doomed)
    later = producer.enqueue("worker.examples.record", "done", "later")
    # The started entry lapses (no heartbeat) while no worker is up to notice.
    wait_for(
        lambda: conn.zrangebyscore("rq:wip:default", "-inf", f"({time.time()}"),
        timeout=30,
        what="the dead worker's started entry to lapse",
    )
    assert conn.lrange("rq:queue:default", 0, -1) == [later.id.encode()]
    settings = Settings(redis_url=redis_url, task_modules=(TASK_MODULES,))
    env = settings.child_env(REDIS_URL=redis_url, LOG_FORMAT="json", **FAST)
    log_file = tmp_path / "workers.log"
    fleet = LocalDeployment(conn, env, ("default",), replicas=0, log_file=log_file).start()
    autoscaler = Autoscaler(conn, ("default",), fleet, Bounds(0, 2, 10, 60.0), interval=0.1)
    try:
        with running(autoscaler):
            assert producer.wait([job, later], timeout=60) == ["x", "later"]
    finally:
        fleet.close(timeout=10)
    # Its first look, before any worker existed, already saw the job back in the queue, ahead of the later one.
    first = autoscaler.events[0]
    assert (first.previous, first.desired, first.queued, first.in_flight) == (0, 1, 2, 0)
    assert recorded(conn, "done") == ["x", "later"]  # requeued at the front, and run once more only
    job.refresh()
    assert (job.meta["attempt"], conn.hget(job.key, ABANDONED_FIELD)) == (2, b"1")
    assert fleet.counters.started >= 1
    assert "requeued a job whose worker died" not in log_file.read_text()  # the autoscaler did it, not a worker


@pytest.mark.parametrize("own_meta", [False, True], ids=["started-by-the-pop", "left-for-python-to-start"])
def test_a_job_popped_by_a_worker_that_died_before_running_it_is_not_lost(
    redis_url: str, producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc], own_meta: bool
) -> None:
    """The worst moment for a multi-queue worker: the job left the queue, the worker dies before running it.

    RQ pops from several queues with BLPOP, so the job would exist only in the dead process's memory. Here the
    pop moves the job in one step either into the worker's hands in Redis (started, with an execution that
    expires without heartbeats: the common case) or, for a job whose meta holds more than our attempt count,
    into the queue's intermediate list. The test stops right there, as a SIGKILL would.
    """
    job = producer.enqueue("worker.examples.record", "done", "popped", queue="low")
    if own_meta:
        conn.hset(job.key, "meta", '{"owner": "billing"}')
    settings = Settings(redis_url=redis_url, abandon_after=3, task_modules=(TASK_MODULES,))
    dying = build_worker(settings, conn, ("high", "low"))
    taken = dying._dequeue.take(timeout=None)
    assert taken is not None
    assert (taken.job.id, taken.queue.name) == (job.id, "low")
    assert conn.llen("rq:queue:low") == 0
    in_intermediate = conn.lrange("rq:queue:low:intermediate", 0, -1)
    started = StartedJobRegistry("low", connection=conn).get_job_ids()
    # In Redis, not only in memory:
    assert (in_intermediate, started) == (([job.id.encode()], []) if own_meta else ([], [job.id]))
    spawn("task-worker", "--queue", "high", "--queue", "low", extra_env=FAST)
    assert producer.wait([job], timeout=INTERMEDIATE_GRACE + 20) == ["popped"]
    assert recorded(conn, "done") == ["popped"]
    assert conn.llen("rq:queue:low:intermediate") == 0


def test_a_poison_task_fails_after_max_abandons_and_spares_the_fleet(
    redis_url: str, producer: Producer, conn: redis.Redis, tmp_path: Path
) -> None:
    poison = producer.enqueue("worker.examples.crash")
    good = producer.enqueue("worker.examples.add", 1, 2)
    settings = Settings(redis_url=redis_url, task_modules=(TASK_MODULES,))
    env = settings.child_env(REDIS_URL=redis_url, LOG_FORMAT="json", TASK_ABANDON_AFTER="3", TASK_MAX_ABANDONS="1")
    fleet = LocalDeployment(conn, env, ("default",), replicas=1, log_file=tmp_path / "w.log").start()
    try:
        wait_for(
            lambda: poison.id in FailedJobRegistry("default", connection=conn).get_job_ids(),
            timeout=60,
            what="the poison task to be failed",
        )
        assert producer.wait([good], timeout=30) == [3]
    finally:
        fleet.close(timeout=10)
    assert fleet.counters.replaced == 2  # it killed its worker twice, then was not run again
    error = exc_string(Job.fetch(poison.id, connection=conn, serializer="json"))
    assert "died 2 times (more than TASK_MAX_ABANDONS=1)" in error


def test_a_dead_worker_leaves_rq_workers_within_the_bound(conn: redis.Redis, spawn: Callable[..., Proc]) -> None:
    doomed = spawn("task-worker", extra_env=FAST)
    spawn("task-worker", extra_env=FAST)  # a live worker's reaper drops the dead one's entry
    wait_for(lambda: len(list_workers(conn)) == 2, timeout=30, what="both workers to register")
    died = kill_worker(doomed)
    wait_for(
        lambda: len(list_workers(conn)) == 1 and conn.scard("rq:workers") == 1,
        timeout=3 + reaper_cadence(3) + 20,
        what="the dead worker to leave rq:workers",
    )
    print(f"gone from rq:workers {time.monotonic() - died:.1f}s after SIGKILL (TASK_ABANDON_AFTER=3)")


# ----------------------------------------------------------------------- workers killed at random for a while

KILL_SEED = 20261125
KILL_FOR = 30.0
"""Seconds of random SIGKILLs; the workload is sized to keep the fleet busy about that long."""


def test_a_fleet_killed_at_random_loses_nothing(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    rng = random.Random(KILL_SEED)
    durations = rng.choices([0.0, 0.2, 0.5, 2.0], weights=[40, 30, 20, 10], k=300)
    jobs = producer.enqueue_many(
        [Task("worker.examples.record", (RUNS_KEY, f"t{i}", s), job_id=f"t{i}") for i, s in enumerate(durations)]
    )
    accepted = [job.id for job in jobs]
    fleet = [spawn("task-worker", extra_env=FAST) for _ in range(4)]
    workers = list(fleet)
    schedule: list[tuple[float, int]] = []
    started = time.monotonic()
    while time.monotonic() - started < KILL_FOR and conn.llen(RUNS_KEY) < len(accepted):
        time.sleep(rng.uniform(0.5, 1.5))  # the schedule itself: when the next kill comes
        slot = rng.randrange(len(fleet))
        kill_worker(fleet[slot])
        schedule.append((round(time.monotonic() - started, 2), slot))
        fleet[slot] = spawn("task-worker", extra_env=FAST)
        workers.append(fleet[slot])
    print(f"seed {KILL_SEED}: {len(schedule)} kills (seconds, slot): {schedule}")

    statuses = settle(conn, accepted, timeout=90)
    twice = assert_nothing_lost(conn, accepted, statuses)
    killed_mid_task = {line["job_id"] for w in workers for line in said(w, REQUEUED[0])}
    assert twice <= killed_mid_task, f"ran twice although no worker died under them: {sorted(twice - killed_mid_task)}"
    failed = [j for j in accepted if statuses[j] == "failed"]
    for job_id in failed:  # only a job whose workers kept dying may fail here, and it says so
        assert "AbandonedJobError" in exc_string(Job.fetch(job_id, connection=conn, serializer="json"))
    print(
        f"accepted {len(accepted)}: {len(accepted) - len(failed)} finished, {len(failed)} failed (abandoned "
        f"> TASK_MAX_ABANDONS); {len(killed_mid_task)} requeued after a kill, {len(twice)} of them ran twice"
    )
