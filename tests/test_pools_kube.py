"""Worker pools over real HTTP: the autoscaler as ``task-producer autoscale`` builds it, against the API emulator,
with ops working through ``kubectl``."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from producer import Producer, Task
from producer.commands.autoscale import build
from producer.scaling.fleet import DISCOVER_EVERY, Fleet
from producer.scaling.kube.client import KubeClient
from producer.scaling.pools import POOL_LABEL
from task_processor.observe import list_workers
from task_processor.settings import Settings
from tests.conftest import decoded, run, running, wait_for
from tests.kubeapi.fixtures import kube_api, requires_kubectl  # noqa: F401
from tests.kubeapi.server import KubeAPI
from tests.kubelet import Kubelet


@pytest.fixture
def settings(loop_settings: Settings) -> Settings:
    return loop_settings


def pool(api: KubeAPI, name: str, queues: str, **annotations: str) -> None:
    """A worker Deployment labelled as the pool ``name``, with its queues and any other task-processor.io/ one."""
    api.create_deployment(name, replicas=0, labels={"app": name, POOL_LABEL: name})
    notes = {"task-processor.io/queues": queues}
    notes.update({f"task-processor.io/{key.replace('_', '-')}": value for key, value in annotations.items()})
    api.patch("deployments", name, {"metadata": {"annotations": notes}})


def fleet(api: KubeAPI, settings: Settings, discover_every: float = 0.2) -> Fleet:
    autoscaler = build(settings, KubeClient(api.api_client(), "default"))
    autoscaler.discover_every = discover_every
    return autoscaler


def count_passes(autoscaler: Fleet) -> list[float]:
    passes: list[float] = []
    step = autoscaler.step

    def counted() -> None:
        passes.append(time.monotonic())
        step()

    autoscaler.step = counted  # type: ignore[method-assign]
    return passes


def enqueue(producer: Producer, queue: str, count: int) -> None:
    producer.enqueue_many([Task("worker.examples.noop", queue=queue) for _ in range(count)])


def writes(api: KubeAPI, name: str) -> list[int]:
    return [
        r.body["spec"]["replicas"]
        for r in api.requests("PATCH", rf"/deployments/{name}/scale$")
        if r.headers.get("User-Agent", "").startswith("task-producer/") and r.status == 200
    ]


def test_two_pools_are_sized_from_their_own_queues_and_bounds(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
    env: dict[str, str],
) -> None:
    pool(kube_api, "fast", "fast")
    pool(kube_api, "bulk", "bulk", max_replicas="3", jobs_per_worker="2")
    kube_api.create_deployment("task-processor", replicas=0)  # the settings' Deployment: not a pool, not sized
    with running(fleet(kube_api, settings)):
        enqueue(producer, "fast", 10)  # 2 workers of 5 jobs
        enqueue(producer, "bulk", 40)  # 20 workers of 2 jobs, but at most 3
        wait_for(lambda: (kube_api.replicas("fast"), kube_api.replicas("bulk")) == (2, 3), what="both pools sized")
        # task-producer status groups them by pool, as the autoscaler published them.
        pools = wait_for(
            lambda: (
                (p := json.loads(run(["task-producer", "status", "--json"], env).stdout)["pools"])
                and p.get("fast", {}).get("current") == 2
                and p
            ),
            what="status to show the pools",
        )
        assert set(pools) == {"fast", "bulk"}
        assert pools["bulk"] | {"updated_seconds_ago": 0} == {
            "deployment": "bulk",
            "queues": ["bulk"],
            "state": "active",
            "desired": 3,
            "current": 3,
            "reason": "steady",
            "workers": 0,
            "busy": 0,
            "updated_seconds_ago": 0,
        }
        table = run(["task-producer", "status"], env).stdout
        assert re.search(r"^POOL\s+DEPLOYMENT\s+QUEUES\s+STATE\s+DESIRED\s+CURRENT\s+WORKERS\s+BUSY$", table, re.M)
        assert re.search(r"^bulk\s+bulk\s+bulk\s+active\s+3\s+3\s+0\s+0$", table, re.M), table
        producer.connection.delete("rq:queue:fast")
        wait_for(lambda: kube_api.replicas("fast") == 0, timeout=10, what="the fast pool back to zero")
        assert kube_api.replicas("bulk") == 3
    assert writes(kube_api, "fast") == [2, 0]
    assert writes(kube_api, "bulk") == [3]
    assert writes(kube_api, "task-processor") == []


@requires_kubectl
def test_a_pool_added_with_kubectl_is_sized_without_a_restart(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
) -> None:
    pool(kube_api, "fast", "fast")
    kube_api.create_deployment("late", replicas=0, labels={"app": "late"})
    enqueue(producer, "reports", 12)
    autoscaler = fleet(kube_api, settings, discover_every=DISCOVER_EVERY)
    passes = count_passes(autoscaler)
    with running(autoscaler):
        wait_for(lambda: "fast" in autoscaler.pools, what="the first pool")
        kube_api.kubectl("annotate", "deployment", "late", "task-processor.io/queues=reports", check=True)
        kube_api.kubectl("label", "deployment", "late", f"{POOL_LABEL}=reports", check=True)
        labelled = time.monotonic()
        wait_for(lambda: kube_api.replicas("late") == 3, timeout=10, what="the new pool sized")
        assert time.monotonic() - labelled <= 10.0
        # Ops take the label away: the Deployment is left alone from then on.
        kube_api.kubectl("label", "deployment", "late", f"{POOL_LABEL}-", check=True)
        wait_for(lambda: "reports" not in autoscaler.pools, timeout=10, what="the pool dropped")
        producer.connection.delete("rq:queue:reports")
        seen = len(passes)  # a sized pool would now go to zero within its 0.5 s scale-down delay
        wait_for(lambda: len(passes) >= seen + 40, what="forty more passes")
    assert kube_api.replicas("late") == 3
    assert writes(kube_api, "late") == [3]


def test_a_bad_annotation_leaves_its_pool_alone_and_the_others_go_on(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
    logs: Callable[[], list[dict[str, Any]]],
) -> None:
    pool(kube_api, "good", "good")
    pool(kube_api, "broken", "broken", max_replicas="lots")
    enqueue(producer, "broken", 10)
    with running(fleet(kube_api, settings)) as autoscaler:
        enqueue(producer, "good", 10)
        wait_for(lambda: kube_api.replicas("good") == 2, what="the good pool sized")
        discoveries = len(kube_api.requests("GET", r"/deployments$"))
        wait_for(lambda: len(kube_api.requests("GET", r"/deployments$")) >= discoveries + 3, what="more discoveries")
        assert set(autoscaler.pools) == {"good"}
        # Fixed by ops: picked up at the next discovery.
        kube_api.patch("deployments", "broken", {"metadata": {"annotations": {"task-processor.io/max-replicas": "4"}}})
        wait_for(lambda: kube_api.replicas("broken") == 2, timeout=10, what="the fixed pool sized")
    complaints = [line for line in logs() if "task-processor.io/max-replicas" in line["event"]]
    assert len(complaints) == 1, complaints  # once, however many discoveries saw it
    line = complaints[0]
    assert line["event"].startswith("Deployment default/broken: task-processor.io/max-replicas='lots' is not a number")
    assert line["event"].endswith("this pool is left alone until it is fixed")
    assert line["deployment"] == "broken"
    assert writes(kube_api, "broken") == [2]


@requires_kubectl
def test_one_pool_paused_while_another_scales(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
) -> None:
    pool(kube_api, "a", "a")
    pool(kube_api, "b", "b")
    kube_api.kubectl("annotate", "deployment", "a", "task-processor.io/autoscale=paused", check=True)
    with running(fleet(kube_api, settings)) as autoscaler:
        enqueue(producer, "a", 10)
        enqueue(producer, "b", 10)
        wait_for(lambda: kube_api.replicas("b") == 2, what="the running pool sized")
        wait_for(lambda: "a" in autoscaler.pools and autoscaler.pools["a"].mode == "paused", what="a paused")
        assert kube_api.replicas("a") == 0
        kube_api.kubectl("annotate", "deployment", "a", "task-processor.io/autoscale-", check=True)
        wait_for(lambda: kube_api.replicas("a") == 2, timeout=10, what="a sized once unpaused")
    assert writes(kube_api, "a") == [2]


def test_a_queue_two_pools_serve_is_split_between_them(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
) -> None:
    pool(kube_api, "x", "shared", jobs_per_worker="1")
    pool(kube_api, "y", "own,shared", jobs_per_worker="1")
    with running(fleet(kube_api, settings)):
        enqueue(producer, "shared", 1)
        wait_for(lambda: kube_api.replicas("x") == 1, what="one job wakes one pool")
        enqueue(producer, "shared", 9)
        wait_for(lambda: (kube_api.replicas("x"), kube_api.replicas("y")) == (5, 5), what="ten jobs split evenly")
    assert writes(kube_api, "y") == [5]


def test_api_traffic_stays_one_list_and_one_read_per_pool_every_two_seconds(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
) -> None:
    pool(kube_api, "a", "a")
    pool(kube_api, "b", "b")
    autoscaler = fleet(kube_api, settings, discover_every=DISCOVER_EVERY)  # a pass every 0.05 s
    started = time.monotonic()
    with running(autoscaler):
        wait_for(lambda: time.monotonic() - started >= 4.5, what="4.5 s of passes")
    elapsed = time.monotonic() - started
    lists = len(kube_api.requests("GET", r"/deployments$"))
    assert 1 <= lists <= 1 + elapsed // DISCOVER_EVERY
    for name in ("a", "b"):
        reads = len(kube_api.requests("GET", rf"/deployments/{name}$"))
        assert 2 <= reads <= 1 + elapsed // 2, (name, reads, elapsed)


@pytest.mark.timeout(180)
def test_two_pools_of_real_workers_drain_their_queues_and_the_one_they_share(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
    conn: redis.Redis,
    env: dict[str, str],
    tmp_path: Path,
) -> None:
    """Two pool Deployments, each run by an emulated kubelet whose workers know their pool (WORKER_POOL): both
    scale up for their own queue and the shared one, every job runs once, and both go back to zero."""
    queues = {"fast": "fast,shared", "bulk": "bulk,shared"}
    pool(kube_api, "fast", queues["fast"], max_replicas="2", jobs_per_worker="4")
    pool(kube_api, "bulk", queues["bulk"], max_replicas="3", jobs_per_worker="4")
    nodes = [
        Kubelet(kube_api, conn, {**env, "TASK_QUEUES": q, "WORKER_POOL": name}, name, log_file=tmp_path / f"{name}.log")
        for name, q in queues.items()
    ]
    tasks = [
        Task("worker.examples.record", ("ran", f"{queue}-{i}", 0.2), queue=queue)
        for queue in ("fast", "bulk", "shared")
        for i in range(12)
    ]
    with nodes[0], nodes[1], running(fleet(kube_api, settings)):
        jobs = producer.enqueue_many(tasks)
        wait_for(
            lambda: (kube_api.replicas("fast"), kube_api.replicas("bulk")) == (2, 3), timeout=15, what="both pools up"
        )
        wait_for(
            lambda: {w.pool for w in list_workers(conn)} == {"fast", "bulk"}, timeout=20, what="workers of both pools"
        )
        producer.wait(jobs, timeout=90)
        wait_for(
            lambda: (kube_api.replicas("fast"), kube_api.replicas("bulk")) == (0, 0), timeout=15, what="both at zero"
        )
    ran = sorted(decoded(conn.lrange("ran", 0, -1)))
    assert ran == sorted(task.args[1] for task in tasks)  # none lost, none twice
