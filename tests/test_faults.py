"""Nothing lost: workers killed with SIGKILL at any moment, with real processes and a real redis-server."""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from producer import Producer, Task
from producer.commands.redis_server import LocalRedisServer, free_port
from producer.commands.run_local import redis_for_run
from producer.scaling.autoscaler import Autoscaler
from producer.scaling.local.deployment import LocalDeployment
from producer.scaling.policy import Bounds
from task_processor.observe import list_workers
from task_processor.reaper import ABANDONED_FIELD, INTERMEDIATE_GRACE
from task_processor.settings import Settings
from tests.conftest import TASK_MODULES, Proc, decoded, exc_string, running, wait_for
from tests.producer_loop import RUNS_KEY
from worker.dequeue import DEQUEUE_POLL
from worker.runner import build_worker

pytestmark = pytest.mark.fault

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


def recorded(conn: redis.Redis, key: str) -> list[str]:
    return decoded(conn.lrange(key, 0, -1))


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


# ------------------------------------------------------------------------------------- Redis killed with -9


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


@pytest.fixture
def own_redis() -> Iterator[LocalRedisServer]:
    """A redis-server of this test alone, AOF with fsync always (as run-local and the chart), to kill."""
    server = LocalRedisServer().start()
    yield server
    server.close()


def test_redis_killed_and_restarted_loses_no_accepted_task(
    own_redis: LocalRedisServer, spawn: Callable[..., Proc]
) -> None:
    env = {"REDIS_URL": own_redis.url, **FAST}
    conn = redis.Redis.from_url(own_redis.url)
    workers = [spawn("task-worker", extra_env=env) for _ in range(3)]
    producers = [spawn("python", "-m", "tests.producer_loop", f"p{n}", "0.05", "0.05", extra_env=env) for n in range(2)]
    wait_for(lambda: conn.llen(RUNS_KEY) >= 20, timeout=30, what="the first tasks to run")

    own_redis.kill()
    wait_for(
        lambda: all(said(w, LOST) for w in workers) and all(printed(p, "error") for p in producers),
        timeout=30,
        what="every worker and producer to notice the outage",
    )
    own_redis.start()  # same port, same directory: the AOF is all that is left
    during = sum(len(printed(p, "ok")) for p in producers)
    wait_for(
        lambda: sum(len(printed(p, "ok")) for p in producers) >= during + 40,
        timeout=30,
        what="enqueues to succeed again",
    )
    for proc in producers:
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.output()[-2000:]

    accepted = [job_id for p in producers for job_id in printed(p, "ok")]
    statuses = settle(conn, accepted, timeout=60)
    twice = assert_nothing_lost(conn, accepted, statuses)
    interrupted = {line["job_id"] for w in workers for e in (END_LOST, *REQUEUED) for line in said(w, e)}
    assert twice <= interrupted, f"ran twice although never interrupted: {sorted(twice - interrupted)}"
    # One clear line per failed enqueue, and one line each to say Redis went and came back.
    for job_id in (j for j in accepted if statuses[j] == "failed"):  # only a task whose own Redis call failed
        reason = exc_string(Job.fetch(job_id, connection=conn, serializer="json"))
        assert "redis.exceptions.ConnectionError" in reason, reason
    errors = [e for p in producers for e in printed(p, "error")]
    assert all(e.startswith(f"cannot reach Redis at {own_redis.url} (") for e in errors), errors
    for worker in workers:
        assert (len(said(worker, LOST)), len(said(worker, RECONNECTED))) == (1, 1), worker.output()[-3000:]
        assert worker.popen.poll() is None, worker.output()[-3000:]
    for proc in producers:
        assert len(said(proc, RECONNECTED)) == 1, proc.output()[-3000:]
    print(
        f"accepted {len(accepted)}: {sum(s == 'finished' for s in statuses.values())} finished, "
        f"{sum(s == 'failed' for s in statuses.values())} failed; {len(twice)} ran twice "
        f"(interrupted: {len(interrupted)}); {len(errors)} enqueues refused during the outage"
    )


def fsync_policy(client: redis.Redis) -> tuple[str, str]:
    """What a running Redis does with writes: (appendonly, appendfsync), as CONFIG GET reports them."""
    config = client.config_get("append*")
    appendonly, appendfsync = config["appendonly"], config["appendfsync"]
    assert appendonly is not None, config
    assert appendfsync is not None, config
    return appendonly, appendfsync


def test_run_locals_private_redis_fsyncs_every_write_before_answering() -> None:
    """The Redis-kill test above holds with `everysec` too (the kernel keeps the AOF); a machine crash would not.
    The README promises `appendfsync always` for run-local's own Redis: ask the running server."""
    out = io.StringIO()
    with redis_for_run(Settings(), private=True, out=out) as url:
        client = redis.Redis.from_url(url, decode_responses=True)
        try:
            assert fsync_policy(client) == ("yes", "always")
        finally:
            client.close()
    assert "Started a private redis-server" in out.getvalue()


@pytest.mark.timeout(90)
def test_the_charts_redis_fsyncs_every_write_before_answering(tmp_path: Path) -> None:
    """The chart's Redis, started with the arguments helm renders for it (its ACL file and data directory
    swapped for local ones), runs with AOF and `appendfsync always`, as the README promises."""
    from tests.chart import Helm, the_container
    from tests.kubeapi.server import HELM

    if not HELM.exists():
        pytest.skip(f"{HELM} missing: run scripts/k8s-tools")
    args = list(the_container(Helm(tmp_path / "helm").docs(), "StatefulSet", "task-processor-redis")["args"])
    del args[args.index("--aclfile") : args.index("--aclfile") + 2]  # users come from the Pod's init container
    args[args.index("--dir") + 1] = str(tmp_path)
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", *args, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, decode_responses=True, socket_connect_timeout=0.5)
    try:

        def ours() -> bool:
            try:
                process_id: int = client.info("server")["process_id"]
                return process_id == server.pid
            except redis.ConnectionError:
                assert server.poll() is None, f"redis-server {args} exited with {server.returncode}"
                return False

        wait_for(ours, timeout=30, what="the chart's redis-server to answer")
        assert fsync_policy(client) == ("yes", "always")
    finally:
        client.close()
        server.kill()
        server.wait(timeout=10)


def test_a_job_that_ends_while_redis_is_down_runs_again_and_the_worker_lives(
    own_redis: LocalRedisServer, spawn: Callable[..., Proc]
) -> None:
    """The job's function returned, but RQ could not record it: Redis still holds the job as started, with the
    heartbeat expiry of its started entry; once Redis is back, the reaper requeues it and it runs again."""
    env = {"REDIS_URL": own_redis.url, **FAST}
    producer = Producer(own_redis.url)
    job = producer.enqueue("worker.examples.sleep", 2)
    worker = spawn("task-worker", extra_env=env)
    conn = redis.Redis.from_url(own_redis.url)
    wait_for(lambda: started(conn, job.id, "default"), timeout=20, what="the job to start")
    own_redis.kill()
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(producer.wait, [job], 60)  # rides out the outage instead of raising
        wait_for(lambda: said(worker, END_LOST), timeout=30, what="the worker to lose the end of the job")
        own_redis.start()
        assert waiting.result(timeout=60) == [2]
    job.refresh()
    assert job.meta["attempt"] == 2  # run again: a task must be idempotent to be safe here
    assert [line["job_id"] for line in said(worker, END_LOST)] == [job.id]
    # One line per run: the first says its end went unrecorded (not "failed"), the second that it finished.
    assert [(line["outcome"], line["attempt"]) for line in said(worker, "job")] == [
        ("end-unrecorded", 1),
        ("finished", 2),
    ]
    assert (len(said(worker, LOST)), len(said(worker, RECONNECTED))) == (1, 1), worker.output()[-3000:]
    assert worker.popen.poll() is None, worker.output()[-3000:]
    # RQ's scheduler process died of the outage; the worker starts it again at once (RQ would wait for its
    # 10-minute maintenance pass), so a job due later is enqueued and run on time.
    later = Queue(connection=conn, serializer=JSONSerializer).enqueue_in(timedelta(seconds=1), "worker.examples.noop")
    wait_for(lambda: later.get_status(refresh=True) == "finished", timeout=20, what="the delayed job to run")


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
