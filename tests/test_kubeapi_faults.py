"""The Kubernetes API emulator's faults, as the official client sees them over real HTTP: an injected error reaches
the client and changes nothing, a hung request times out while others are served, a slow one is answered late and
still applied, stopping the server does not wait for a hung request; and the request log records what was sent.
The client's view of a working server: tests/test_kubeapi_client.py; what these share: tests/kubeapi_client.py."""

from __future__ import annotations

import json
import threading
import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.kubeapi import KubeAPI
from tests.kubeapi.fixtures import kube_api  # noqa: F401
from tests.kubeapi_client import (
    NS,
    SCALE_PATH,
    apps_fixture,  # noqa: F401  (the apps fixture)
)


@pytest.mark.parametrize("status", [403, 404, 409, 429, 500])
def test_injected_errors_reach_the_client_and_change_nothing(
    kube_api: KubeAPI,  # noqa: F811
    apps: client.AppsV1Api,
    status: int,
) -> None:
    kube_api.create_deployment(replicas=1)
    before = kube_api.get("deployment", "task-processor")
    assert before is not None
    version = before["metadata"]["resourceVersion"]
    kube_api.fail("PATCH", SCALE_PATH, status, retry_after=2 if status == 429 else None)

    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment_scale("task-processor", NS, {"spec": {"replicas": 5}})
    assert caught.value.status == status
    assert caught.value.body is not None
    assert json.loads(caught.value.body)["kind"] == "Status"
    if status == 429:
        assert caught.value.headers is not None
        assert caught.value.headers["Retry-After"] == "2"
    after = kube_api.get("deployment", "task-processor")
    assert after is not None
    assert after["spec"]["replicas"] == 1
    assert after["metadata"]["resourceVersion"] == version

    # The fault was for one request only: the retry goes through.
    apps.patch_namespaced_deployment_scale("task-processor", NS, {"spec": {"replicas": 5}})
    assert kube_api.replicas() == 5


def test_request_log_records_what_was_sent(kube_api: KubeAPI, apps: client.AppsV1Api) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=2)
    kube_api.clear_requests()

    apps.read_namespaced_deployment_scale("task-processor", NS)
    assert [(r.method, r.path, r.status) for r in kube_api.requests()] == [
        ("GET", "/apis/apps/v1/namespaces/default/deployments/task-processor/scale", 200)
    ]
    assert kube_api.requests("PATCH") == []  # e.g. "the autoscaler sent no PATCH"

    kube_api.fail("PATCH", SCALE_PATH, 403)
    with pytest.raises(ApiException):
        apps.patch_namespaced_deployment_scale("task-processor", NS, {"spec": {"replicas": 3}})
    (refused,) = kube_api.requests("PATCH", "/scale$")
    assert (refused.status, refused.body) == (403, {"spec": {"replicas": 3}})


def test_a_hung_request_times_out_while_others_are_served(kube_api: KubeAPI, apps: client.AppsV1Api) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=1)
    hung = kube_api.hang("GET", r"/deployments/task-processor$")
    apps.api_client.configuration.retries = False  # urllib3 would otherwise retry the read time-out itself
    apps = client.AppsV1Api(client.ApiClient(apps.api_client.configuration))
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            apps.read_namespaced_deployment("task-processor", NS, _request_timeout=(5, 0.5))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    deadline = time.monotonic() + 5
    while hung.hits == 0 and time.monotonic() < deadline:  # until the server holds the request
        time.sleep(0.01)
    assert hung.hits == 1
    served = client.AppsV1Api(kube_api.api_client()).read_namespaced_deployment_scale("task-processor", NS)
    assert served.spec is not None
    assert served.spec.replicas == 1
    thread.join(timeout=10)
    assert [type(e).__name__ for e in outcome] == ["ReadTimeoutError"]


def test_a_slow_request_is_answered_late_and_applied(kube_api: KubeAPI, apps: client.AppsV1Api) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=1)
    kube_api.slow("GET", "/scale$", 0.3)
    started = time.monotonic()
    scale = apps.read_namespaced_deployment_scale("task-processor", NS, _request_timeout=(5, 5))
    assert scale.spec is not None
    assert scale.spec.replicas == 1
    assert time.monotonic() - started >= 0.3

    # A write whose client stops waiting still lands after the delay, as on a slow server.
    slow = kube_api.slow("PATCH", "/scale$", 1.0)
    apps.api_client.configuration.retries = False
    apps = client.AppsV1Api(client.ApiClient(apps.api_client.configuration))
    with pytest.raises(Exception, match="timed out"):
        apps.patch_namespaced_deployment_scale(
            "task-processor", NS, {"spec": {"replicas": 4}}, _request_timeout=(5, 0.2)
        )
    assert (slow.hits, kube_api.replicas()) == (1, 1)
    deadline = time.monotonic() + 5
    while kube_api.replicas() != 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kube_api.replicas() == 4


def test_stop_does_not_wait_for_a_hung_request(kube_api: KubeAPI, apps: client.AppsV1Api) -> None:  # noqa: F811
    kube_api.create_deployment()
    hung = kube_api.hang("GET", "/deployments/task-processor$")

    def read() -> None:
        with pytest.raises(Exception):  # noqa: B017, PT011  (the connection ends without an answer)
            apps.read_namespaced_deployment("task-processor", NS)

    thread = threading.Thread(target=read)
    thread.start()
    deadline = time.monotonic() + 5
    while hung.hits == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    kube_api.stop()
    assert time.monotonic() - started < 2
    thread.join(timeout=10)
