"""The ReplicaSet's scale-in order (tests/replicaset.py), rule by rule, and the emulated kubelet ranking its Pods
by it: one row per rule (two Pods that differ in that rule only), then rows where an earlier rule wins."""

from __future__ import annotations

import os
import signal
import time
from typing import Any, NamedTuple

import pytest
import redis

from producer.scaling.kube.deployment import DELETION_COST
from task_processor.observe import list_workers
from tests.conftest import wait_for
from tests.kubeapi.fixtures import kube_api  # noqa: F401
from tests.kubeapi.server import KubeAPI
from tests.kubelet import NODE_NAME, Kubelet, kubelet  # noqa: F401
from tests.replicaset import deletion_cost, scale_in_order

T0 = "2024-05-01T10:00:00Z"
T1 = "2024-05-01T10:05:00Z"
"""Two times: ``T1`` is the later one."""


def pod(
    name: str = "pod",
    *,
    node: str = "node-a",
    phase: str | None = "Running",
    ready: bool = True,
    ready_at: str | None = T0,
    cost: str | None = None,
    restarts: tuple[int, ...] = (0,),
    created: str | None = T0,
) -> dict[str, Any]:
    """A Pod as the API shows it; every argument left alone gives the same, ready, Running Pod."""
    condition: dict[str, Any] = {"type": "Ready", "status": "True" if ready else "False"}
    if ready_at is not None:
        condition["lastTransitionTime"] = ready_at
    metadata: dict[str, Any] = {"name": name, "annotations": {} if cost is None else {DELETION_COST: cost}}
    if created is not None:
        metadata["creationTimestamp"] = created
    status: dict[str, Any] = {
        "conditions": [condition],
        "containerStatuses": [{"name": f"c{i}", "restartCount": n} for i, n in enumerate(restarts)],
    }
    if phase is not None:
        status["phase"] = phase
    return {"metadata": metadata, "spec": {"nodeName": node}, "status": status}


GONE = {**pod(node="node-a"), "metadata": {"name": "gone", "deletionTimestamp": T0}}
"""A terminating Pod on node-a."""


class Row(NamedTuple):
    first: dict[str, Any]
    """Deleted before ``then``."""
    then: dict[str, Any]
    others: tuple[dict[str, Any], ...] = ()
    """More related Pods, counted by the node rank only."""


ROWS = {
    # One rule each: the two Pods differ in that rule's input only.
    "1 unassigned first": Row(pod(node=""), pod()),
    "2 Pending before Unknown": Row(pod(phase="Pending"), pod(phase="Unknown")),
    "2 Unknown before Running": Row(pod(phase="Unknown"), pod(phase="Running")),
    "2 no phase ranks as Pending": Row(pod(phase=None), pod(phase="Unknown")),
    "2 Failed ranks as Pending": Row(pod(phase="Failed"), pod(phase="Unknown")),
    "3 not ready first": Row(pod(ready=False), pod(ready=True)),
    "4 lower cost first": Row(pod(cost="-1000"), pod(cost="1000")),
    "4 missing cost is 0": Row(pod(cost="-1"), pod(cost=None)),
    "4 missing cost is 0, below 1": Row(pod(cost=None), pod(cost="1")),
    "4 leading + is invalid: 0": Row(pod(cost="+5"), pod(cost="1")),
    "4 leading zero is invalid: 0": Row(pod(cost="07"), pod(cost="1")),
    "4 over int32 is invalid: 0": Row(pod(cost="2147483648"), pod(cost="1")),
    "4 int32 min is valid": Row(pod(cost="-2147483648"), pod(cost="-2147483647")),
    "5 doubled up first": Row(pod(node="node-a"), pod(node="node-b"), (pod(node="node-a"),)),
    "5 terminating Pods do not count": Row(pod(node="node-b"), pod(node="node-a"), (pod(node="node-b"), *[GONE] * 2)),
    "6 ready later first": Row(pod(ready_at=T1), pod(ready_at=T0)),
    "6 no ready time first": Row(pod(ready_at=None), pod(ready_at=T0)),
    "7 more restarts first": Row(pod(restarts=(3,)), pod(restarts=(1,))),
    "7 the container that restarted most": Row(pod(restarts=(0, 5)), pod(restarts=(2, 2))),
    "8 newer first": Row(pod(created=T1), pod(created=T0)),
    "8 no creation time first": Row(pod(created=None), pod(created=T0)),
    # Precedence: each Pod wins a later rule, the earlier rule decides.
    "1 over 2": Row(pod(node="", phase="Running"), pod(phase="Pending")),
    "2 over 3": Row(pod(phase="Pending", ready=True), pod(phase="Running", ready=False)),
    "3 over 4: unready with high cost before ready with low cost": Row(
        pod(ready=False, cost="1000"), pod(ready=True, cost="-1000")
    ),
    "4 over 5: low cost before doubled up": Row(
        pod(node="node-b", cost="-1"), pod(node="node-a"), (pod(node="node-a"),)
    ),
    "5 over 6": Row(pod(node="node-a", ready_at=T0), pod(node="node-b", ready_at=T1), (pod(node="node-a"),)),
    "4 over 6: low cost long ready before high cost just ready": Row(
        pod(cost="-1000", ready_at=T0), pod(cost="1000", ready_at=T1)
    ),
    "6 over 7": Row(pod(ready_at=T1, restarts=(0,)), pod(ready_at=T0, restarts=(5,))),
    "6 over 8": Row(pod(ready_at=T1, created=T0), pod(ready_at=T0, created=T1)),
    "7 over 8": Row(pod(restarts=(2,), created=T0), pod(restarts=(1,), created=T1)),
    "6 compares ready Pods only": Row(
        pod(ready=False, ready_at=T0, created=T1), pod(ready=False, ready_at=T1, created=T0)
    ),
    "2 different nodes: no rule-1 decision": Row(pod(node="node-b", phase="Pending"), pod(node="node-a")),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_the_first_pod_is_deleted_first(row: Row) -> None:
    first = {**row.first, "metadata": {**row.first["metadata"], "name": "first"}}
    then = {**row.then, "metadata": {**row.then["metadata"], "name": "then"}}
    related = [first, then, *row.others]
    for given in ([first, then], [then, first]):  # whatever the order given: the rule decides, not the sort
        assert [p["metadata"]["name"] for p in scale_in_order(given, related)] == ["first", "then"]


def test_pods_no_rule_tells_apart_keep_their_order() -> None:
    pods = [pod(name) for name in "abc"]
    assert [p["metadata"]["name"] for p in scale_in_order(pods)] == ["a", "b", "c"]
    assert scale_in_order([]) == []


def test_a_whole_replicaset_in_order() -> None:
    ordered = [
        pod("unassigned", node="", phase="Pending", ready=False),
        pod("pending", phase="Pending", ready=False),
        pod("unknown", phase="Unknown", ready=False),
        pod("unready", ready=False, cost="5"),
        pod("idle", cost="-1000", ready_at=T0),
        pod("just-ready", ready_at=T1),
        pod("restarted", restarts=(4,)),
        pod("new", created=T1),
        pod("old"),
        pod("busy", cost="1000", ready_at=T1, restarts=(9,), created=T1),
    ]
    shuffled = ordered[1::2] + ordered[::2][::-1]
    assert [p["metadata"]["name"] for p in scale_in_order(shuffled)] == [p["metadata"]["name"] for p in ordered]


@pytest.mark.parametrize(
    ("value", "cost"),
    [("-5", -5), ("0", 0), ("42", 42), ("-007", -7), ("-0", 0), ("", 0), ("-", 0), (" 1", 0), ("1e3", 0)],
)
def test_deletion_cost_parses_as_upstream(value: str, cost: int) -> None:
    assert deletion_cost(pod(cost=value)) == cost


def test_the_kubelets_pods_carry_the_status_the_ranking_reads(
    kube_api: KubeAPI,  # noqa: F811
    kubelet: Kubelet,  # noqa: F811
    conn: redis.Redis,
) -> None:
    """Bound, Running and Ready, with restart counts; a worker killed and restarted in its Pod counts a restart
    and is ready again later, so its Pod is the one a scale-in removes (both have no deletion cost)."""
    kube_api.patch("deployments", "task-processor", {"spec": {"replicas": 2}})
    wait_for(lambda: len(list_workers(conn)) == 2, timeout=20, what="2 registered workers")
    pods = kubelet.pods()
    assert {p["spec"]["nodeName"] for p in pods} == {NODE_NAME}
    assert {p["status"]["phase"] for p in pods} == {"Running"}
    assert all(p["status"]["conditions"][0]["status"] == "True" for p in pods)
    assert [p["status"]["containerStatuses"][0]["restartCount"] for p in pods] == [0, 0]

    time.sleep(1.1)  # the restart's ready time is a later second (API times are whole seconds)
    victim = next(w for w in kubelet.local.running() if w.hostname == pods[0]["metadata"]["name"])
    os.kill(victim.pid, signal.SIGKILL)

    def restarted() -> dict[str, Any] | None:
        by_name = {p["metadata"]["name"]: p for p in kubelet.pods()}
        status = by_name[victim.hostname]["status"]
        ready = status["conditions"][0]["status"] == "True"
        return status if ready and status["containerStatuses"][0]["restartCount"] == 1 else None

    status = wait_for(restarted, timeout=20, what="the Pod ready again with 1 restart")
    assert status["conditions"][0]["lastTransitionTime"] > pods[0]["status"]["conditions"][0]["lastTransitionTime"]
    kube_api.patch("deployments", "task-processor", {"spec": {"replicas": 1}})
    wait_for(
        lambda: [p["metadata"]["name"] for p in kubelet.pods()] == [pods[1]["metadata"]["name"]],
        timeout=20,
        what="the restarted Pod to go",
    )
