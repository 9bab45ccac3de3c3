"""The autoscaler against an API server over real HTTP: the official client, kubectl, faults, two replicas."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import kubernetes.client
import pytest
import redis

from producer import Producer, Task
from producer.commands.autoscale import build
from producer.commands.redis_server import free_port
from producer.scaling.fleet import Fleet
from producer.scaling.kube.client import ConflictError, KubeClient, NotFoundError, UnreachableError
from producer.scaling.kube.deployment import KubeDeployment
from producer.scaling.kube.leader import LeaderElector
from producer.scaling.kube.pools import FALLBACK, KubePools
from task_processor.settings import Settings
from tests.conftest import Proc, running, wait_for
from tests.kubeapi.fixtures import kube_api, requires_kubectl  # noqa: F401
from tests.kubeapi.server import KubeAPI

SCALE = r"/namespaces/default/deployments/task-processor/scale$"
DEPLOYMENT = r"/namespaces/default/deployments/task-processor$"


@pytest.fixture
def settings(loop_settings: Settings) -> Settings:
    return loop_settings


def client_for(api: KubeAPI) -> KubeClient:
    return KubeClient(api.api_client(), "default")


def scale_writes(api: KubeAPI) -> list[int]:
    """Replica counts the autoscaler (not kubectl, not the test) patched through the scale subresource."""
    return [
        r.body["spec"]["replicas"]
        for r in api.requests("PATCH", SCALE)
        if r.headers.get("User-Agent", "").startswith("task-producer/") and r.status == 200
    ]


def enqueue(producer: Producer, count: int) -> None:
    producer.enqueue_many([Task("worker.examples.noop") for _ in range(count)])


def count_steps(autoscaler: Fleet) -> list[float]:
    """The times of the loop's passes as leader (the loop calls ``step`` only while it leads), as they happen."""
    times: list[float] = []
    step = autoscaler.step

    def counted() -> Any:
        times.append(time.monotonic())
        return step()

    autoscaler.step = counted  # type: ignore[method-assign]
    return times


def test_kube_client_reads_and_scales_through_the_scale_subresource(kube_api: KubeAPI) -> None:  # noqa: F811
    kube_api.create_deployment("task-processor", replicas=2)
    kube = client_for(kube_api)
    assert kube.get_deployment("task-processor").replicas == 2
    kube.scale("task-processor", 5)
    assert kube_api.replicas() == 5
    patch = kube_api.requests("PATCH", SCALE)[-1]
    assert patch.body == {"spec": {"replicas": 5}}
    assert patch.content_type == "application/merge-patch+json"
    read = kube.get_deployment("task-processor")
    kube.scale("task-processor", 6, read.resource_version)  # conditional on the version read
    assert kube_api.requests("PATCH", SCALE)[-1].body == {
        "metadata": {"resourceVersion": read.resource_version},
        "spec": {"replicas": 6},
    }
    with pytest.raises(ConflictError, match=r"conflict on patch deployments.apps/scale default/task-processor"):
        kube.scale("task-processor", 1, read.resource_version)  # stale now
    assert kube_api.replicas() == 6
    with pytest.raises(NotFoundError, match=r"deployments.apps default/nope not found \(on get\)"):
        kube.get_deployment("nope")


def test_scales_from_zero_in_one_step_after_an_enqueue(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
) -> None:
    kube_api.create_deployment("task-processor", replicas=0)
    autoscaler = build(replace(settings, autoscale_interval=0.25), client_for(kube_api))
    steps = count_steps(autoscaler)
    with running(autoscaler):
        wait_for(lambda: len(steps) >= 2, what="two passes as leader with nothing to do")
        assert kube_api.replicas() == 0
        enqueue(producer, 12)
        wait_for(lambda: kube_api.replicas() > 0, timeout=30, what="scale from zero")
    assert kube_api.replicas() == 3  # ceil(12 / 5): up in one step
    assert scale_writes(kube_api) == [3]


def test_a_write_racing_the_autoscalers_is_not_overwritten(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
    logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """A kubectl scale served between the autoscaler's fresh read and its PATCH: the PATCH carries the version it
    read, so it answers 409 and changes nothing; the loop then sees ops' replicas and holds them."""
    kube_api.create_deployment("task-processor", replicas=0)
    ops_write = lambda: kube_api.patch("deployments", "task-processor", {"spec": {"replicas": 4}})  # noqa: E731
    kube_api.before("PATCH", SCALE, ops_write)
    autoscaler = build(replace(settings, manual_hold=60.0), client_for(kube_api))
    steps = count_steps(autoscaler)
    with running(autoscaler):
        wait_for(lambda: autoscaler.mode == "active", what="the loop to lead")
        enqueue(producer, 12)  # 3 replicas wanted
        wait_for(lambda: autoscaler.mode == "holding", what="the hold on ops' replicas")
        held = len(steps)
        wait_for(lambda: len(steps) >= held + 20, what="twenty more passes")
    assert kube_api.replicas() == 4
    assert [(r.body["spec"]["replicas"], r.status) for r in kube_api.requests("PATCH", SCALE)] == [(3, 409)]
    events = [line["event"] for line in logs()]
    assert sum("changed just before our write" in event for event in events) == 1
    assert sum("changed by someone else" in event for event in events) == 1
    assert not any(event.startswith("autoscaler step failed") for event in events)


def test_no_api_write_when_nothing_changes(kube_api: KubeAPI, settings: Settings) -> None:  # noqa: F811
    kube_api.create_deployment("task-processor", replicas=0)
    autoscaler = build(settings, client_for(kube_api))
    steps = count_steps(autoscaler)
    with running(autoscaler):
        wait_for(lambda: len(steps) >= 20, what="twenty passes as leader with nothing to do")
        assert isinstance(autoscaler.elector, LeaderElector)
        assert autoscaler.elector.leading  # passes run only while leading; it still leads at the end
    assert autoscaler.mode == "active"
    assert kube_api.requests("PATCH", "/deployments/") == []
    assert kube_api.requests("PUT", "/deployments/") == []


def test_the_deployment_is_read_at_most_every_two_seconds(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
) -> None:
    kube_api.create_deployment("task-processor", replicas=0)
    autoscaler = build(settings, client_for(kube_api))  # a pass every 0.05 s
    steps = count_steps(autoscaler)
    started = time.monotonic()
    with running(autoscaler):
        wait_for(lambda: time.monotonic() - started >= 4.5 and len(steps) >= 40, what="passes for 4.5 s")
    elapsed = time.monotonic() - started
    reads = len(kube_api.requests("GET", DEPLOYMENT))
    assert reads <= 1 + elapsed // 2, f"{reads} reads of the Deployment in {elapsed:.1f}s ({len(steps)} passes)"
    assert reads >= 2  # and the cache does expire: a change by ops is seen within 2 s


@requires_kubectl
@pytest.mark.parametrize("change", ["pause", "scale"])
def test_a_change_inside_the_read_cache_is_seen_before_a_write(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
    change: str,
) -> None:
    """Ops change the Deployment while the loop's cached read is still fresh, then work arrives: the loop wants
    to scale, but its uncached read right before the write sees ops' change, and it writes nothing."""
    kube_api.create_deployment("task-processor", replicas=0)
    autoscaler = build(replace(settings, manual_hold=60.0), client_for(kube_api))
    autoscaler.discover()
    target = autoscaler.pools[FALLBACK].target
    assert isinstance(target, KubeDeployment)
    target.resync = 3600.0  # the cached read never expires here: only the read before a write sees ops
    steps = count_steps(autoscaler)
    with running(autoscaler):
        wait_for(lambda: len(steps) >= 2, what="the loop to lead with a cached read")
        if change == "pause":
            kube_api.kubectl(
                "annotate", "deployment", "task-processor", "task-processor.io/autoscale=paused", check=True
            )
        else:
            kube_api.kubectl("scale", "deployment", "task-processor", "--replicas=4", check=True)
        enqueue(producer, 30)  # 6 replicas wanted
        wait_for(lambda: autoscaler.mode == ("paused" if change == "pause" else "holding"), what="the change seen")
        seen = len(steps)
        wait_for(lambda: len(steps) >= seen + 20, what="twenty more passes")
    assert kube_api.replicas() == (0 if change == "pause" else 4)
    assert [r.body["spec"]["replicas"] for r in kube_api.requests("PATCH", SCALE)] == ([] if change == "pause" else [4])
    ours = [r for r in kube_api.requests("PATCH", SCALE) if r.headers["User-Agent"].startswith("task-producer/")]
    assert ours == []  # not even a write refused with 409: the uncached read saw the change first


@requires_kubectl
def test_a_manual_kubectl_scale_is_held_then_handed_back(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    logs: Callable[[], list[dict[str, Any]]],
) -> None:
    kube_api.create_deployment("task-processor", replicas=0)
    autoscaler = build(replace(settings, manual_hold=1.5), client_for(kube_api))
    with running(autoscaler):
        wait_for(lambda: autoscaler.mode == "active", what="the loop to run")
        kube_api.kubectl("scale", "deployment", "task-processor", "--replicas=4", check=True)
        wait_for(lambda: autoscaler.mode == "holding", what="the hold")
        held_at = time.monotonic()
        wait_for(lambda: kube_api.replicas() == 0, timeout=10, what="scale back to the minimum after the hold")
        held_for = time.monotonic() - held_at
    assert held_for >= 1.5  # left alone for the hold, then the demand (none) wins
    assert scale_writes(kube_api) == [0]
    lines = [line for line in logs() if "someone else" in line["event"]]
    assert len(lines) == 1
    assert (lines[0]["replicas"], lines[0]["hold_seconds"]) == (4, 1.5)


@requires_kubectl
def test_the_pause_annotation_hands_control_to_ops(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
    conn: redis.Redis,
) -> None:
    kube_api.create_deployment("task-processor", replicas=1)
    kube_api.kubectl("annotate", "deployment", "task-processor", "task-processor.io/autoscale=paused", check=True)
    autoscaler = build(settings, client_for(kube_api))
    with running(autoscaler):
        enqueue(producer, 30)
        wait_for(lambda: autoscaler.mode == "paused", what="the pause to be seen")
        time.sleep(0.5)
        assert kube_api.replicas() == 1
        assert conn.hget("task-processor:autoscaler:task-processor", "state") == b"paused"
        kube_api.kubectl("annotate", "deployment", "task-processor", "task-processor.io/autoscale-", check=True)
        wait_for(lambda: kube_api.replicas() == 6, timeout=10, what="scaling once the annotation is gone")
    assert scale_writes(kube_api) == [6]


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (503, None), (429, 1)])
def test_passing_api_faults_are_retried(
    kube_api: KubeAPI,  # noqa: F811
    status: int,
    retry_after: int | None,
) -> None:
    kube_api.create_deployment("task-processor", replicas=1)
    kube_api.fail("PATCH", SCALE, status, times=2, retry_after=retry_after)
    started = time.monotonic()
    client_for(kube_api).scale("task-processor", 2)
    assert kube_api.replicas() == 2
    assert [r.status for r in kube_api.requests("PATCH", SCALE)] == [status, status, 200]
    if retry_after:
        assert time.monotonic() - started >= 2 * retry_after  # Retry-After honoured on each retry


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (403, "forbidden to patch deployments.apps/scale default/task-processor: grant the verb 'patch'"),
        (500, "API server failed patch deployments.apps/scale default/task-processor (500"),
    ],
)
def test_the_loop_survives_api_errors_and_says_so_once(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
    logs: Callable[[], list[dict[str, Any]]],
    status: int,
    expected: str,
) -> None:
    kube_api.create_deployment("task-processor", replicas=0)
    kube_api.fail("PATCH", SCALE, status, times=5)  # more than one call's retries
    enqueue(producer, 3)
    with running(build(settings, client_for(kube_api))):
        wait_for(lambda: kube_api.replicas() == 1, timeout=15, what="the scale once the faults pass")
    failures = [line for line in logs() if line["event"].startswith("autoscaler step failed")]
    assert len(failures) == 1
    assert expected in failures[0]["error"]
    assert any(line["event"] == "autoscaler recovered" for line in logs())


def test_missing_deployment_and_rbac_are_one_clear_line(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    spawn: Callable[..., Proc],
) -> None:
    env = {
        "WORKER_NAMESPACE": "default",
        "AUTOSCALE_INTERVAL": "0.05",
        "LOG_FORMAT": "json",
    }
    missing = spawn("task-producer", "autoscale", "--kubeconfig", str(kube_api.kubeconfig), extra_env=env)
    wait_for(lambda: "not found" in missing.output(), timeout=15, what="the missing-Deployment line")
    time.sleep(0.5)  # many more failing steps
    lines = [line for line in missing.json_lines() if line.get("event", "").startswith("autoscaler step failed")]
    assert [line["error"] for line in lines] == [
        "deployments.apps default/task-processor not found (on get): create it, or set "
        "WORKER_DEPLOYMENT/WORKER_NAMESPACE"
    ]
    assert missing.popen.poll() is None  # still running, not crash-looping

    kube_api.create_deployment("task-processor", replicas=0)
    kube_api.fail("GET", r"/deployments/task-processor$", 403, times=1000)
    wait_for(lambda: "forbidden to get" in missing.output(), timeout=15, what="the RBAC line")
    assert missing.output().count("forbidden to get deployments.apps default/task-processor") == 1


def test_two_autoscalers_with_one_lease_never_both_write(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
) -> None:
    kube_api.create_deployment("task-processor", replicas=0)

    def replica(name: str) -> Fleet:
        autoscaler = build(settings, client_for(kube_api))
        elector = autoscaler.elector
        assert isinstance(elector, LeaderElector)
        autoscaler.elector = LeaderElector(  # a short Lease, renewed often
            elector.kube, elector.lease_name, name, duration=3, renew_deadline=2.0, retry_period=0.2
        )
        assert isinstance(autoscaler.source, KubePools)
        autoscaler.source.kube.api_client.user_agent = f"task-producer/{name}"
        return autoscaler

    first, second = replica("first"), replica("second")
    with running(first):
        wait_for(lambda: first.elector.leading, what="the first to lead")  # type: ignore[union-attr]
        with running(second):
            for count in (10, 20, 30):
                enqueue(producer, 10)

                def scaled(c: int = count) -> bool:
                    return kube_api.replicas() == min(6, -(-c // 5))

                wait_for(scaled, timeout=10, what=f"{count}")
            assert second.mode == "follower"
        agents = {r.headers["User-Agent"] for r in kube_api.requests("PATCH", SCALE)}
        assert agents == {"task-producer/first"}
    # The leader released the Lease on stop: the other replica takes over at once, not after it expires.
    with running(second):
        wait_for(lambda: second.elector.leading, timeout=3, what="the second to lead")  # type: ignore[union-attr]
        producer.connection.delete("rq:queue:default")
        wait_for(lambda: kube_api.replicas() == 0, timeout=10, what="the second to scale down")
    writers = [r.headers["User-Agent"] for r in kube_api.requests("PATCH", SCALE)]
    assert writers[-1] == "task-producer/second"
    assert writers == sorted(writers)  # all of first's writes, then all of second's: never interleaved


def test_pods_are_found_by_the_full_selector(kube_api: KubeAPI) -> None:  # noqa: F811
    """matchExpressions count too: a selector of matchLabels alone would mark other apps' Pods."""
    kube_api.create_deployment("task-processor", replicas=1)
    kube_api.patch(
        "deployments",
        "task-processor",
        {
            "spec": {
                "selector": {
                    "matchLabels": None,
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["work"]}],
                }
            }
        },
    )
    for name, tier in (("mine", "work"), ("theirs", "web")):
        kube_api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"tier": tier}}})
    target = KubeDeployment(client_for(kube_api), "task-processor")
    assert target.read().replicas == 1
    target.set_replicas(0)
    marked = {r.path.rsplit("/", 1)[-1] for r in kube_api.requests("PATCH", "/pods/")}
    assert marked == {"mine"}


def test_an_unreachable_api_server_is_retried_then_named() -> None:
    dead = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=f"http://127.0.0.1:{free_port()}"))
    expected = r"API server unreachable on get deployments.apps default/task-processor"
    with pytest.raises(UnreachableError, match=expected):
        KubeClient(dead, "default").get_deployment("task-processor")
