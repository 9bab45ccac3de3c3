"""What the autoscaler did, as Kubernetes Events on each pool's Deployment: seen with kubectl, rate-limited, and
never in the way of scaling."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from producer import Producer, Task
from producer.scaling.kube.client import KubeClient
from producer.scaling.kube.events import BURST, REFILL, KubeEvents
from task_processor.settings import Settings
from tests.conftest import running, wait_for
from tests.kubeapi.fixtures import kube_api, requires_kubectl  # noqa: F401
from tests.kubeapi.server import KubeAPI
from tests.test_pools_kube import fleet, pool

EVENTS = r"/api/v1/namespaces/default/events$"


@pytest.fixture
def settings(loop_settings: Settings) -> Settings:
    return replace(loop_settings, manual_hold=60.0)  # long enough to see a hold


def events_of(api: KubeAPI, name: str) -> list[dict[str, Any]]:
    return [e for e in api.list("events") if e["involvedObject"]["name"] == name]


def reasons(api: KubeAPI, name: str) -> list[str]:
    return [e["reason"] for e in sorted(events_of(api, name), key=lambda e: e["metadata"]["name"])]


@requires_kubectl
def test_writes_pauses_and_holds_are_events_that_kubectl_shows(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
) -> None:
    pool(kube_api, "fast", "fast")
    uid = kube_api.get("deployments", "fast")["metadata"]["uid"]  # type: ignore[index]
    with running(fleet(kube_api, settings)):
        producer.enqueue_many([Task("worker.examples.noop", queue="fast") for _ in range(10)])
        wait_for(lambda: "SuccessfulRescale" in reasons(kube_api, "fast"), what="the scale-up's Event")
        (event,) = events_of(kube_api, "fast")
        assert event["involvedObject"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "fast",
            "namespace": "default",
            "uid": uid,
        }
        assert (event["type"], event["source"], event["count"]) == (
            "Normal",
            {"component": "task-processor-autoscaler"},
            1,
        )
        assert (
            event["message"]
            == "New size: 2 (was 0); reason: scale-up; demand 2: 10 queued, 0 in flight, 0 busy workers"
        )
        described = kube_api.kubectl("describe", "deployment", "fast", check=True).stdout
        assert "SuccessfulRescale" in described, described
        assert "New size: 2 (was 0)" in described, described

        kube_api.kubectl("annotate", "deployment", "fast", "task-processor.io/autoscale=paused", check=True)
        wait_for(lambda: "ScalingPaused" in reasons(kube_api, "fast"), what="the pause's Event")
        kube_api.kubectl("annotate", "deployment", "fast", "task-processor.io/autoscale-", check=True)
        wait_for(lambda: "ScalingResumed" in reasons(kube_api, "fast"), what="the resume's Event")
        kube_api.kubectl("scale", "deployment", "fast", "--replicas=5", check=True)
        wait_for(lambda: "ScalingHeld" in reasons(kube_api, "fast"), what="the hold's Event")
    listed = json.loads(kube_api.kubectl("get", "events", "-o", "json", check=True).stdout)["items"]
    held = next(e for e in listed if e["reason"] == "ScalingHeld")
    assert held["message"] == "Replicas set to 5 by someone else (kubectl scale?), not 2: left alone for 60 s"
    assert reasons(kube_api, "fast") == ["SuccessfulRescale", "ScalingPaused", "ScalingResumed", "ScalingHeld"]


def test_a_busy_deployment_gets_a_burst_then_one_event_per_period(kube_api: KubeAPI) -> None:  # noqa: F811
    kube_api.create_deployment("busy", replicas=0)
    now = [1000.0]
    recorder = KubeEvents(KubeClient(kube_api.api_client(), "default"), "busy", lambda: None, "test", lambda: now[0])
    for i in range(BURST + 5):
        recorder.record("SuccessfulRescale", f"write {i}")
    assert len(events_of(kube_api, "busy")) == BURST
    now[0] += REFILL
    recorder.record("SuccessfulRescale", "after the pause")
    latest = max(events_of(kube_api, "busy"), key=lambda e: e["metadata"]["name"])
    assert latest["message"] == f"after the pause (5 earlier events skipped: at most one per {REFILL:g} s)"
    assert len(events_of(kube_api, "busy")) == BURST + 1


def test_events_that_cannot_be_written_never_stop_scaling(
    kube_api: KubeAPI,  # noqa: F811
    settings: Settings,
    producer: Producer,
    logs: Callable[[], list[dict[str, Any]]],
) -> None:
    pool(kube_api, "fast", "fast")
    kube_api.fail("POST", EVENTS, 403, times=100)
    with running(fleet(kube_api, replace(settings, manual_hold=0.0))):
        producer.enqueue_many([Task("worker.examples.noop", queue="fast") for _ in range(10)])
        wait_for(lambda: kube_api.replicas("fast") == 2, what="the scale-up")
        producer.connection.delete("rq:queue:fast")
        wait_for(lambda: kube_api.replicas("fast") == 0, timeout=10, what="the scale-in")
    assert events_of(kube_api, "fast") == []
    lines = [line for line in logs() if line["event"].startswith("could not record a Kubernetes Event")]
    assert len(lines) == 1, lines  # once, not once per Event
    assert "forbidden to create events" in lines[0]["error"]
