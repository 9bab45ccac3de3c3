"""The whole cluster path on one machine: Redis, the Kubernetes API emulator, an emulated kubelet running the
worker Deployment's Pods as real ``task-worker`` processes, and the real autoscaler sizing that Deployment."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace

import redis
from rq.job import Job, JobStatus

from producer import Producer, Task
from producer.commands.autoscale import build
from producer.scaling.fleet import Fleet
from producer.scaling.kube.client import KubeClient
from producer.scaling.kube.deployment import BUSY_COST, DELETION_COST, IDLE_COST
from producer.scaling.report import LoopState, Report
from task_processor.observe import list_workers
from task_processor.settings import Settings
from tests.conftest import Proc, decoded, running, wait_for
from tests.kubeapi.fixtures import kube_api  # noqa: F401
from tests.kubeapi.server import KubeAPI
from tests.kubelet import Kubelet, kubelet  # noqa: F401

DEPLOYMENT = "task-processor"
POD_NAME = re.compile(rf"{DEPLOYMENT}-[0-9a-f]{{10}}-[a-z0-9]{{5}}")
AUTOSCALE = Settings(autoscale_min=0, autoscale_max=4, jobs_per_worker=4, autoscale_interval=0.1, scale_down_delay=1.5)
"""The autoscaler's settings in every test: small, so that a burst scales up and back to zero in seconds."""


def autoscaler_thread(redis_url: str, api: KubeAPI) -> AbstractContextManager[Fleet]:
    """The autoscaler as ``task-producer autoscale`` builds it (Lease included), looping in a thread."""
    return running(build(replace(AUTOSCALE, redis_url=redis_url), KubeClient(api.api_client(), "default")))


def pod_names(node: Kubelet) -> set[str]:
    return {pod["metadata"]["name"] for pod in node.pods()}


def burst_then_idle(api: KubeAPI, node: Kubelet, producer: Producer, conn: redis.Redis, count: int) -> None:
    """Enqueue ``count`` short tasks on an empty Deployment; see it scale to the max, drain, and return to zero
    with every Pod and process gone; then every task has run exactly once and finished."""
    jobs = producer.enqueue_many(Task("worker.examples.record", ("ran", str(i), 0.2)) for i in range(count))
    wait_for(lambda: api.replicas(DEPLOYMENT) == AUTOSCALE.autoscale_max, timeout=10, what="scale-up to the max")
    # Each Pod runs one worker, registered under the Pod's name: how the autoscaler matches them.
    names = wait_for(lambda: len(pod_names(node)) == AUTOSCALE.autoscale_max and pod_names(node), what="the Pods")
    assert all(POD_NAME.fullmatch(name) for name in names), names
    wait_for(lambda: {w.hostname for w in list_workers(conn)} == names, timeout=20, what="a worker in every Pod")
    producer.wait(jobs, timeout=30)
    wait_for(lambda: api.replicas(DEPLOYMENT) == 0, timeout=15, what="scale-down to zero")
    wait_for(lambda: not node.pods(), timeout=15, what="the Pods to go")
    wait_for(lambda: not node.local.running(), timeout=15, what="the worker processes to exit")
    assert not list_workers(conn)
    ran = decoded(conn.lrange("ran", 0, -1))
    assert sorted(ran, key=int) == [str(i) for i in range(count)]  # none lost, none twice
    fetched = Job.fetch_many([job.id for job in jobs], connection=conn, serializer="json")
    assert [job.get_status() if job else None for job in fetched] == [JobStatus.FINISHED] * count
    # What `task-producer status` shows: the autoscaler, active, asks for and sees zero replicas.
    wait_for(
        lambda: (
            (report := Report.read(conn, DEPLOYMENT))
            and (report.state, report.desired, report.current) == (LoopState.ACTIVE, 0, 0)
        ),
        timeout=15,
        what="the autoscaler to publish 0 of 0 replicas",
    )


def test_a_burst_scales_pods_up_to_the_max_and_back_to_zero(
    kube_api: KubeAPI,  # noqa: F811
    kubelet: Kubelet,  # noqa: F811
    producer: Producer,
    conn: redis.Redis,
    redis_url: str,
) -> None:
    with autoscaler_thread(redis_url, kube_api):
        burst_then_idle(kube_api, kubelet, producer, conn, count=40)


def test_scale_in_removes_idle_pods_and_spares_the_busy_one(
    kube_api: KubeAPI,  # noqa: F811
    kubelet: Kubelet,  # noqa: F811
    producer: Producer,
    conn: redis.Redis,
    redis_url: str,
) -> None:
    kube_api.patch("deployments", DEPLOYMENT, {"spec": {"replicas": 3}})  # as `kubectl scale` would
    wait_for(lambda: len(list_workers(conn)) == 3, timeout=20, what="3 registered workers")
    job = producer.enqueue("worker.examples.record", "ran", "slow", seconds=4)
    busy_pod = wait_for(lambda: [w.hostname for w in list_workers(conn) if w.busy], what="a busy worker")[0]
    assert busy_pod in pod_names(kubelet)
    kube_api.clear_requests()
    with autoscaler_thread(redis_url, kube_api):
        # Demand is the one running job: after the scale-down delay, the autoscaler goes to the busy floor.
        wait_for(lambda: kube_api.replicas(DEPLOYMENT) == 1, timeout=10, what="scale-in to the busy worker")
        wait_for(lambda: pod_names(kubelet) == {busy_pod}, timeout=15, what="the idle Pods to go")
        assert [w.hostname for w in kubelet.local.running()] == [busy_pod]
        assert producer.wait([job], timeout=10) == ["slow"]
    job.refresh()
    assert (job.get_status(), job.meta["attempt"]) == (JobStatus.FINISHED, 1)  # ran once, never interrupted
    assert decoded(conn.lrange("ran", 0, -1)) == ["slow"]

    # The ReplicaSet picks which Pods go by their deletion cost: the idle ones had to be cheaper before the scale.
    patches = kube_api.requests("PATCH")
    first_scale = next(i for i, r in enumerate(patches) if r.path.endswith(f"/deployments/{DEPLOYMENT}/scale"))
    assert patches[first_scale].body["spec"] == {"replicas": 1}
    costs: dict[str, str] = {
        r.path.rsplit("/", 1)[-1]: r.body["metadata"]["annotations"][DELETION_COST]
        for r in patches[:first_scale]
        if "/pods/" in r.path
    }
    busy_cost = costs.pop(busy_pod)
    assert busy_cost == BUSY_COST
    assert len(costs) == 2
    assert set(costs.values()) == {IDLE_COST}
    assert all(int(cost) < int(busy_cost) for cost in costs.values()), costs  # lower cost: deleted first


def test_the_autoscale_command_drives_the_deployment(
    kube_api: KubeAPI,  # noqa: F811
    kubelet: Kubelet,  # noqa: F811
    producer: Producer,
    conn: redis.Redis,
    spawn: Callable[..., Proc],
) -> None:
    """``task-producer autoscale`` as a process, configured like the Deployment's container, against the emulator."""
    proc = spawn(
        "task-producer",
        "autoscale",
        "--kubeconfig",
        str(kube_api.kubeconfig),
        extra_env={
            "WORKER_NAMESPACE": "default",
            "AUTOSCALE_MIN": str(AUTOSCALE.autoscale_min),
            "AUTOSCALE_MAX": str(AUTOSCALE.autoscale_max),
            "AUTOSCALE_JOBS_PER_WORKER": str(AUTOSCALE.jobs_per_worker),
            "AUTOSCALE_INTERVAL": str(AUTOSCALE.autoscale_interval),
            "AUTOSCALE_SCALE_DOWN_DELAY": str(AUTOSCALE.scale_down_delay),
        },
    )
    burst_then_idle(kube_api, kubelet, producer, conn, count=24)
    proc.signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    # It logs each new decision once: straight up to the max, then down (step by step as demand falls) to zero.
    decisions = [line for line in proc.json_lines() if line.get("event") == "scaling decision"]
    assert [d["desired"] for d in decisions if d["reason"] == "scale-up"] == [AUTOSCALE.autoscale_max]
    assert decisions[-1]["desired"] == 0


def test_a_worker_that_dies_is_restarted_in_its_pod(
    kube_api: KubeAPI,  # noqa: F811
    kubelet: Kubelet,  # noqa: F811
    conn: redis.Redis,
) -> None:
    kube_api.patch("deployments", DEPLOYMENT, {"spec": {"replicas": 1}})
    first = wait_for(lambda: list_workers(conn), timeout=20, what="a registered worker")[0]
    (pod,) = kubelet.pods()
    assert first.hostname == pod["metadata"]["name"]
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    # RQ keeps a killed worker's key until it expires: look for a live process under the same Pod name.
    restarted = wait_for(
        lambda: [w for w in kubelet.local.running() if w.pid != first.pid], timeout=20, what="a restarted worker"
    )[0]
    wait_for(
        lambda: (first.hostname, restarted.pid) in {(w.hostname, w.pid) for w in list_workers(conn)},
        timeout=20,
        what="the restarted worker to register under the Pod's name",
    )
    assert [p["metadata"]["uid"] for p in kubelet.pods()] == [pod["metadata"]["uid"]]  # the same Pod
    assert kubelet.local.counters.replaced == 1
