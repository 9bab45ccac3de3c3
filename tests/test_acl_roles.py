"""Each role does its whole job as its own Redis user (charts/task-processor/templates/redis/_acl.tpl, as rendered, on
a real redis-server), with real processes, and Redis refuses it nothing: producers and workers (the CLI, the job
options, the helm test hook), the autoscaler (scaling, scheduling, reaping a lost fleet's job), and the dashboard,
read-only or not. The users and what each may not do: tests/test_acl_users.py; the redis-server with the rendered
ACL and the checks both use: tests/acl.py.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from producer import Producer, Task
from producer.commands.redis_server import free_port
from producer.errors import TaskFailedError
from producer.scaling.autoscaler import Autoscaler
from producer.scaling.local.deployment import LocalDeployment
from producer.scaling.policy import Bounds
from task_processor.connection import connect
from task_processor.settings import Settings
from tests.acl import (
    AclRedis,
    acl_fixture,  # noqa: F401  (the acl fixture)
    chart_fixture,  # noqa: F401  (the chart fixture)
    cli,
    nothing_refused,
    refused,
    role_env,
    servers_fixture,  # noqa: F401  (the servers fixture)
    start_fixture,  # noqa: F401  (the start fixture)
)
from tests.chart import Helm, the_container
from tests.conftest import BIN, TASK_MODULES, Proc, running, wait_for


def test_producers_and_workers_do_their_whole_job(chart: Helm, acl: AclRedis, start: Callable[..., Proc]) -> None:
    producer = Producer(acl.url("producer"), modules=TASK_MODULES)
    start(acl.url("worker"), "task-worker", "--name", "single")
    start(acl.url("worker"), "task-worker", "--concurrency", "2")
    one = producer.enqueue("worker.examples.add", 2, 3)
    many = producer.enqueue_many([Task("worker.examples.add", (i, 10)) for i in range(4)])
    flaky = producer.enqueue("worker.examples.flaky", 1, retries=1, retry_backoff=1)  # due through the scheduler
    failing = producer.enqueue("worker.examples.fail", "disk full", retries=1, retry_backoff=1)
    assert producer.wait([one, *many, flaky], timeout=30) == [5, 10, 11, 12, 13, 2]
    with pytest.raises(TaskFailedError, match="disk full"):
        producer.wait([failing], timeout=30)
    assert failing.get_meta(refresh=True)["attempt"] == 2, "the failure was not retried once"
    # The job options: scheduled and deferred registries, dependents sets, the canceled registry.
    parent = producer.enqueue("worker.examples.add", 1, 1, meta={"k": 1}, job_id="parent", unique=True)
    child = producer.enqueue("worker.examples.add", 2, 2, depends_on=parent, ttl=600)
    later = producer.enqueue_in(1, "worker.examples.add", 3, 3)
    producer.cancel(producer.enqueue_in(60, "worker.examples.add", 4, 4).id)
    assert producer.wait([parent, child, later], timeout=30) == [2, 4, 6]

    job_id = cli(acl.url("producer"), "task-producer", "enqueue", "worker.examples.add", "1", "2").stdout.strip()
    assert cli(acl.url("producer"), "task-producer", "wait", job_id).stdout.strip() == "3"
    cli(acl.url("worker"), "task-producer", "status")  # what NOTES.txt says to run in a worker Pod
    cli(acl.url("worker"), "task-worker", "check", "--name", "single")  # the worker Pods' liveness probe
    status = json.loads(cli(acl.url("producer"), "task-producer", "status", "--json").stdout)
    counts = {k: status["queues"]["default"][k] for k in ("queued", "failed", "finished")}
    assert counts == {"queued": 0, "failed": 1, "finished": 10}, counts
    requeued = cli(acl.url("producer"), "task-producer", "requeue", "--failed", "--all").stdout.split()
    assert requeued == [failing.id]
    wait_for(lambda: failing.get_meta(refresh=True)["attempt"] == 3, timeout=20, what="the requeued job's run")
    wait_for(lambda: failing.get_status(refresh=True) == "failed", timeout=20, what="it to fail again")

    # The helm test hook Pod's own script, as the producer user it runs as.
    (pod,) = [d for d in chart.docs() if d["kind"] == "Pod"]
    hook = pod["spec"]["containers"][0]["args"][0]
    env = role_env(acl.url("producer"), TEST_TIMEOUT="20")
    result = subprocess.run([str(BIN / "python"), "-c", hook], env=env, capture_output=True, text=True, timeout=60)
    assert "result 5, 3 worker(s) registered" in result.stdout, result.stdout + result.stderr
    nothing_refused(acl)


def test_the_autoscaler_scales_schedules_and_reaps(acl: AclRedis, start: Callable[..., Proc], tmp_path: Path) -> None:
    """The whole fleet is lost with a job running and a job coming due: the autoscaler alone (no worker is left to
    reap or to schedule) puts both on the queue, scales up from zero, runs a retry's due time, and scales down."""
    producer = Producer(acl.url("producer"), modules=TASK_MODULES)
    own = connect(acl.url("autoscaler"))
    workers_env = Settings(task_modules=(TASK_MODULES,)).child_env(REDIS_URL=acl.url("worker"), LOG_FORMAT="json")
    deployment = LocalDeployment(own, workers_env, ("default",), log_file=tmp_path / "w.log").start()
    autoscaler = Autoscaler(own, ("default",), deployment, Bounds(0, 2, 10, 1.0), interval=0.1)
    try:
        autoscaler.step()  # takes RQ's scheduler lock first, as a long-running autoscaler holds it
        lock = acl.admin.get("rq:scheduler-lock:default")
        assert autoscaler.housekeeper is not None  # Autoscaler's housekeeping is on by default
        assert lock == autoscaler.housekeeper.due_jobs._scheduler.name.encode(), (
            "the autoscaler could not take the lock"
        )
        victim = start(acl.url("worker"), "task-worker", TASK_ABANDON_AFTER="3")
        lost = producer.enqueue("worker.examples.sleep", 2)
        wait_for(lambda: lost.get_status(refresh=True) == "started", timeout=20, what="the job to start")
        os.killpg(victim.pid, signal.SIGKILL)
        wait_for(lambda: not acl.admin.zcount("rq:wip:default", time.time(), "+inf"), what="the lease to lapse")
        later = producer.queue().enqueue_in(timedelta(seconds=1), "worker.examples.add", 1, 2)
        with running(autoscaler):
            assert producer.wait([lost, later], timeout=60) == [2, 3]
            assert acl.admin.hget(f"rq:job:{lost.id}", "abandoned") == b"1", "not requeued by the reaper"
            first = autoscaler.events[0]  # from zero, the dead worker's job counted as queued, not as running
            assert (first.previous, first.queued > 0, first.in_flight) == (0, True, 0), first
            wait_for(lambda: deployment.get_replicas() == 0, timeout=20, what="scale-down to zero")
            retried = producer.enqueue("worker.examples.flaky", 1, retries=1, retry_backoff=3)
            assert producer.wait([retried], timeout=30) == [2], "the retry did not come due"
            # What NOTES.txt tells ops to run in the autoscaler's Pod, with its credentials.
            noop = cli(acl.url("autoscaler"), "task-producer", "enqueue", "worker.examples.noop").stdout.strip()
            cli(acl.url("autoscaler"), "task-producer", "status")
            cli(acl.url("producer"), "task-producer", "wait", noop)
            facts = cli(acl.url("producer"), "task-producer", "status", "--json", WORKER_DEPLOYMENT="local").stdout
            assert json.loads(facts)["autoscaler"]["state"] == "active", facts
            wait_for(lambda: not deployment.running(), timeout=30, what="scale-down to zero again")
    finally:
        deployment.close(timeout=10)
    assert acl.admin.smembers("rq:workers") == set(), "the dead worker was not forgotten"
    nothing_refused(acl)


# --- the dashboard -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "read-write"])
def test_the_dashboard_shows_everything_as_its_user(
    chart: Helm, servers: Callable[..., AclRedis], start: Callable[..., Proc], read_only: bool
) -> None:
    mode = f"dashboard.readOnly={str(read_only).lower()}"
    acl = servers(mode)
    producer = Producer(acl.url("producer"), modules=TASK_MODULES)
    start(acl.url("worker"), "task-worker", "--name", "busy-one")
    done = producer.enqueue("worker.examples.add", 1, 2)
    failed = producer.enqueue("worker.examples.fail", "disk full")
    producer.wait([done], timeout=20)
    wait_for(lambda: failed.get_status(refresh=True) == "failed", timeout=20, what="the failed job")
    busy = producer.enqueue("worker.examples.sleep", 60)
    wait_for(lambda: busy.get_status(refresh=True) == "started", timeout=20, what="the busy job")
    producer.enqueue("worker.examples.noop")

    port = free_port()
    docs = chart.docs("dashboard.enabled=true", f"dashboard.port={port}", mode)
    container = the_container(docs, "Deployment", "task-processor-dashboard")
    assert ("--read-only" in container["command"]) is read_only
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e and e["name"] != "REDIS_URL"}
    login = {"RQ_DASHBOARD_USERNAME": "ops", "RQ_DASHBOARD_PASSWORD": "pw"}
    start(acl.url("dashboard"), *container["command"], **plain, **login)
    auth = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}

    def call(path: str, method: str = "GET") -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=auth, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def data(path: str) -> Any:
        status, body = call(path)
        assert status == 200, f"GET {path} answered {status}: {body[-500:]!r}"
        return json.loads(body)

    wait_for(lambda: call("/0/data/queues.json")[0], timeout=20, what="the dashboard to listen")
    (queue,) = data("/0/data/queues.json")["queues"]
    counts = {k: queue[f"{k}_job_registry_count"] for k in ("started", "failed", "finished")}
    assert (queue["count"], counts) == (1, {"started": 1, "failed": 1, "finished": 1}), queue
    (worker,) = data("/0/data/workers.json")["workers"]
    assert worker["current_job"]["job_id"] == busy.id
    for registry, job in (("failed", failed), ("finished", done), ("started", busy)):
        listed = data(f"/0/data/jobs/default/{registry}/8/asc/1.json")["jobs"]
        assert [j["id"] for j in listed] == [job.id], registry
    detail = data(f"/0/data/job/{failed.id}.json")
    assert detail["exc_info"].strip().splitlines()[-1] == "RuntimeError: disk full"
    assert [call(page)[0] for page in ("/", "/0/view/workers", f"/0/view/job/{failed.id}")] == [200] * 3

    nothing_refused(acl)
    status, _ = call(f"/job/{failed.id}/requeue", "POST")
    if read_only:
        assert status == 403
        assert failed.get_status(refresh=True) == "failed"
    else:  # the dashboard's user writes job data (RQ's Lua included), and no more
        assert status == 200
        assert failed.get_status(refresh=True) == "queued"
        assert call("/queue/default/queued/empty", "POST")[0] == 200
        assert acl.admin.llen("rq:queue:default") == 0, "the queue was not emptied"
        assert call("/queue/default/finished/empty", "POST")[0] == 200
        assert acl.admin.zcard("rq:finished:default") == 0
        nothing_refused(acl)
        assert refused(acl.client("dashboard"), "SREM", "rq:workers", "rq:worker:busy-one")
