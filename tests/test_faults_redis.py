"""Nothing lost when Redis dies: redis-server killed with -9 and restarted from its AOF under working producers and
workers, a job whose end cannot be recorded, and the fsync policy that makes the AOF hold (run-local's Redis and the
chart's), with real processes and a real redis-server. Workers killed: tests/test_faults_workers.py; what both
share: tests/faults.py."""

from __future__ import annotations

import io
import signal
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from producer import Producer
from producer.commands.redis_server import LocalRedisServer, free_port
from producer.commands.run_local import redis_for_run
from task_processor.settings import Settings
from tests.conftest import Proc, exc_string, wait_for
from tests.faults import (
    END_LOST,
    FAST,
    LOST,
    RECONNECTED,
    REQUEUED,
    assert_nothing_lost,
    printed,
    said,
    settle,
    started,
)
from tests.producer_loop import RUNS_KEY
from worker.resilient import END_WAITS

pytestmark = pytest.mark.fault


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


def redis_killed_as_a_job_runs(
    own_redis: LocalRedisServer, spawn: Callable[..., Proc], seconds: float, env: dict[str, str]
) -> tuple[Producer, Job, Proc, redis.Redis]:
    """A worker (with ``env``) running a job of ``seconds`` on ``own_redis``, which is killed as the job runs."""
    producer = Producer(own_redis.url)
    job = producer.enqueue("worker.examples.sleep", seconds)
    worker = spawn("task-worker", extra_env={"REDIS_URL": own_redis.url, **env})
    conn = redis.Redis.from_url(own_redis.url)
    wait_for(lambda: started(conn, job.id, "default"), timeout=20, what="the job to start")
    own_redis.kill()
    return producer, job, worker, conn


def test_a_job_that_ends_while_redis_is_down_runs_again_and_the_worker_lives(
    own_redis: LocalRedisServer, spawn: Callable[..., Proc]
) -> None:
    """The job's function returned, but RQ could not record it: Redis still holds the job as started, with the
    heartbeat expiry of its started entry; once Redis is back, the reaper requeues it and it runs again."""
    producer, job, worker, conn = redis_killed_as_a_job_runs(own_redis, spawn, 2, FAST)
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


def test_a_job_that_ends_during_a_short_outage_is_recorded_on_its_first_run(
    own_redis: LocalRedisServer, spawn: Callable[..., Proc]
) -> None:
    """Redis goes away while a job runs and is back within half of TASK_ABANDON_AFTER, as a restart or a Sentinel
    failover is: the worker keeps trying the job's end until Redis answers, and the job is recorded finished on its
    first run, where giving up after the connection's own retries (under a second) would have it run again."""
    producer, job, worker, _ = redis_killed_as_a_job_runs(own_redis, spawn, 1, {"TASK_ABANDON_AFTER": "20"})
    wait_for(lambda: said(worker, END_WAITS), timeout=30, what="the job's end to wait for Redis")
    own_redis.start()
    assert producer.wait([job], 30) == [1]
    job.refresh()
    assert job.meta["attempt"] == 1
    assert [(line["outcome"], line["attempt"]) for line in said(worker, "job")] == [("finished", 1)]
    assert said(worker, END_LOST) == []
    assert (len(said(worker, LOST)), len(said(worker, RECONNECTED))) == (1, 1), worker.output()[-3000:]
