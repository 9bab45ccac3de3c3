"""The Kubernetes API emulator behaves like an API server for what this project uses: the official client,
kubectl and helm talk to it over real HTTP, and it refuses what a real server refuses."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.kubeapi import KubeAPI
from tests.kubeapi.fixtures import kube_api, requires_helm, requires_kubectl  # noqa: F401

NS = "default"
SCALE_PATH = r"/apis/apps/v1/namespaces/default/deployments/task-processor/scale$"


@pytest.fixture
def apps(kube_api: KubeAPI) -> client.AppsV1Api:  # noqa: F811
    return client.AppsV1Api(kube_api.api_client())


def test_official_client_scale_round_trip(kube_api: KubeAPI, apps: client.AppsV1Api) -> None:  # noqa: F811
    kube_api.create_deployment("task-processor", replicas=1, labels={"app": "task-processor"})

    scale = apps.read_namespaced_deployment_scale("task-processor", NS)
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert scale.spec is not None
    assert scale.status is not None
    assert scale.metadata is not None
    assert scale.spec.replicas == 1
    assert scale.status.selector == "app=task-processor"
    before = scale.metadata.resource_version
    assert before is not None

    patched = apps.patch_namespaced_deployment_scale("task-processor", NS, {"spec": {"replicas": 4}})
    assert patched.spec is not None
    assert patched.metadata is not None
    assert patched.spec.replicas == 4
    assert patched.metadata.resource_version is not None
    assert int(patched.metadata.resource_version) > int(before)
    deployment = kube_api.get("deployment", "task-processor")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 4
    assert deployment["metadata"]["generation"] == 2
    (sent,) = kube_api.requests("PATCH", "/scale$")
    assert sent.content_type == "application/strategic-merge-patch+json"

    # A JSON patch (a list body) is the other content type the client sends.
    ops = [{"op": "replace", "path": "/spec/replicas", "value": 2}]
    rescaled = apps.patch_namespaced_deployment_scale("task-processor", NS, ops)
    assert rescaled.spec is not None
    assert rescaled.spec.replicas == 2
    assert kube_api.replicas() == 2


def test_scale_put_with_stale_resource_version_conflicts(kube_api: KubeAPI, apps: client.AppsV1Api) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=1)
    stale = apps.read_namespaced_deployment_scale("task-processor", NS)
    apps.patch_namespaced_deployment_scale("task-processor", NS, {"spec": {"replicas": 2}})

    assert stale.spec is not None
    stale.spec.replicas = 9
    with pytest.raises(ApiException) as caught:
        apps.replace_namespaced_deployment_scale("task-processor", NS, stale)
    assert caught.value.status == 409
    assert caught.value.body is not None
    assert json.loads(caught.value.body)["reason"] == "Conflict"
    assert kube_api.replicas() == 2

    fresh = apps.read_namespaced_deployment_scale("task-processor", NS)
    assert fresh.spec is not None
    fresh.spec.replicas = 9
    replaced = apps.replace_namespaced_deployment_scale("task-processor", NS, fresh)
    assert replaced.spec is not None
    assert replaced.spec.replicas == 9
    assert kube_api.replicas() == 9


def test_deployment_list_and_metadata(kube_api: KubeAPI, apps: client.AppsV1Api) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=3)
    listed = apps.list_namespaced_deployment(NS)
    assert listed.kind == "DeploymentList"
    assert listed.api_version == "apps/v1"
    assert listed.metadata is not None
    assert listed.metadata.resource_version
    (item,) = listed.items
    assert item.metadata is not None
    assert item.metadata.uid
    assert item.metadata.generation == 1
    assert item.metadata.creation_timestamp is not None

    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment(NS, item)
    assert caught.value.status == 409  # AlreadyExists
    with pytest.raises(ApiException) as caught:
        apps.read_namespaced_deployment("missing", NS)
    assert caught.value.status == 404


def test_lease_update_with_stale_resource_version_conflicts(kube_api: KubeAPI) -> None:  # noqa: F811
    leases = client.CoordinationV1Api(kube_api.api_client())
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="task-producer"),
        spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15),
    )
    first = leases.create_namespaced_lease(NS, body)
    assert spec_of(leases.read_namespaced_lease("task-producer", NS)).holder_identity == "a"

    assert first.spec is not None
    assert first.metadata is not None
    first.spec.holder_identity = "b"
    second = leases.replace_namespaced_lease("task-producer", NS, first)
    assert second.metadata is not None
    assert second.metadata.resource_version != first.metadata.resource_version

    first.spec.holder_identity = "c"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as caught:
        leases.replace_namespaced_lease("task-producer", NS, first)
    assert caught.value.status == 409
    stale_patch = {
        "metadata": {"resourceVersion": first.metadata.resource_version},
        "spec": {"holderIdentity": "c"},
    }
    with pytest.raises(ApiException) as caught:
        leases.patch_namespaced_lease("task-producer", NS, stale_patch)
    assert caught.value.status == 409
    assert spec_of(leases.read_namespaced_lease("task-producer", NS)).holder_identity == "b"

    fresh_patch = {
        "metadata": {"resourceVersion": second.metadata.resource_version},
        "spec": {"holderIdentity": "c"},
    }
    assert spec_of(leases.patch_namespaced_lease("task-producer", NS, fresh_patch)).holder_identity == "c"


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


def test_pods_label_selector_and_annotation_patch(kube_api: KubeAPI) -> None:  # noqa: F811
    core = client.CoreV1Api(kube_api.api_client())
    for name, labels in [
        ("w1", {"app": "worker", "tier": "a"}),
        ("w2", {"app": "worker", "tier": "b"}),
        ("other", {"app": "web"}),
    ]:
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="i")]),
        )
        core.create_namespaced_pod(NS, pod)

    def names(selector: str) -> list[str]:
        listed = core.list_namespaced_pod(NS, label_selector=selector)
        assert listed.kind == "PodList"
        found: list[str] = []
        for p in listed.items:
            assert p.metadata is not None
            assert p.metadata.name is not None
            found.append(p.metadata.name)
        return found

    assert names("app=worker") == ["w1", "w2"]
    assert names("app!=worker") == ["other"]
    assert names("app=worker,tier in (b,c)") == ["w2"]
    assert names("!tier") == ["other"]
    assert names("") == ["other", "w1", "w2"]

    cost = {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-100"}}}
    patched = core.patch_namespaced_pod("w2", NS, cost)
    assert patched.metadata is not None
    assert patched.metadata.annotations == {"controller.kubernetes.io/pod-deletion-cost": "-100"}
    w2 = kube_api.get("pod", "w2")
    assert w2 is not None
    assert w2["metadata"]["labels"] == {"app": "worker", "tier": "b"}


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


def test_watch_streams_changes(kube_api: KubeAPI, apps: client.AppsV1Api) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=1)
    events = []
    stream = watch.Watch()
    for event in stream.stream(apps.list_namespaced_deployment, NS, timeout_seconds=10):
        events.append((event["type"], event["object"].spec.replicas))
        if len(events) == 1:  # the replay arrived: the watch is established, so the write is streamed
            kube_api.patch("deployment", "task-processor", {"spec": {"replicas": 3}})
        else:
            stream.stop()
    assert events == [("ADDED", 1), ("MODIFIED", 3)]


def test_store_helpers_version_every_write(kube_api: KubeAPI) -> None:  # noqa: F811
    created = kube_api.create_deployment(replicas=1)
    kube_api.patch("deployment", "task-processor", {"status": {"replicas": 1, "readyReplicas": 1}})
    served = client.AppsV1Api(kube_api.api_client()).read_namespaced_deployment_status("task-processor", NS)
    assert served.metadata is not None
    assert served.metadata.resource_version is not None
    assert int(served.metadata.resource_version) > int(created["metadata"]["resourceVersion"])
    assert served.status is not None
    assert served.status.ready_replicas == 1
    history = kube_api.objects["apps/v1/deployments", NS, "task-processor"].history
    assert len(history) == 2
    kube_api.delete("deployment", "task-processor")
    assert kube_api.get("deployment", "task-processor") is None


# --- kubectl and helm ------------------------------------------------------------------------------------


@requires_kubectl
def test_kubectl_get_deploy_shows_replicas(kube_api: KubeAPI) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=3)
    shown = kube_api.kubectl("get", "deploy", "task-processor", "-o", "json", check=True)
    deployment = json.loads(shown.stdout)
    assert deployment["kind"] == "Deployment"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["resourceVersion"]

    table = kube_api.kubectl("get", "deploy", check=True).stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[:2] == ["task-processor", "0/3"]


@requires_kubectl
def test_kubectl_scale_changes_spec_replicas(kube_api: KubeAPI) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=1)
    result = kube_api.kubectl("scale", "deployment", "task-processor", "--replicas=3")
    assert result.returncode == 0, result.stderr
    assert "scaled" in result.stdout
    assert kube_api.replicas() == 3
    (sent,) = kube_api.requests("PATCH", "/scale$")
    assert sent.content_type == "application/merge-patch+json"
    assert sent.body == {"spec": {"replicas": 3}}


@requires_kubectl
def test_kubectl_scale_current_replicas_precondition(kube_api: KubeAPI) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=3)
    ok = kube_api.kubectl("scale", "deployment", "task-processor", "--current-replicas=3", "--replicas=5")
    assert ok.returncode == 0, ok.stderr
    assert kube_api.replicas() == 5
    # kubectl reads the Scale, checks the precondition itself, then PUTs the Scale with its resourceVersion.
    (put,) = kube_api.requests("PUT", "/scale$")
    assert put.body["spec"]["replicas"] == 5
    assert put.body["metadata"]["resourceVersion"]

    kube_api.clear_requests()
    wrong = kube_api.kubectl("scale", "deployment", "task-processor", "--current-replicas=2", "--replicas=7")
    assert wrong.returncode != 0
    assert "Expected replicas to be 2, was 5" in wrong.stderr
    assert kube_api.replicas() == 5
    assert kube_api.requests("PUT") == kube_api.requests("PATCH") == []


@requires_kubectl
def test_kubectl_scale_loses_a_race_with_a_concurrent_scaler(kube_api: KubeAPI) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=3)
    # Someone else scales to 4 between kubectl's read and its write: the write carries a stale
    # resourceVersion, the server answers 409, kubectl re-reads and its precondition now fails.
    kube_api.before(
        "PUT", SCALE_PATH, lambda: kube_api.patch("deployment", "task-processor", {"spec": {"replicas": 4}})
    )
    raced = kube_api.kubectl("scale", "deployment", "task-processor", "--current-replicas=3", "--replicas=5")
    assert raced.returncode != 0
    assert "Expected replicas to be 3, was 4" in raced.stderr
    assert [r.status for r in kube_api.requests("PUT", "/scale$")] == [409]
    assert kube_api.replicas() == 4


@requires_kubectl
def test_kubectl_apply_creates_then_patches(kube_api: KubeAPI, tmp_path: Path) -> None:  # noqa: F811
    def manifest(replicas: int, image: str) -> str:
        return json.dumps(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "task-processor", "labels": {"app": "task-processor"}},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"app": "task-processor"}},
                    "template": {
                        "metadata": {"labels": {"app": "task-processor"}},
                        "spec": {
                            "containers": [
                                {"name": "worker", "image": image, "env": [{"name": "A", "value": "1"}]},
                                {"name": "sidecar", "image": "busybox"},
                            ]
                        },
                    },
                },
            }
        )

    path = tmp_path / "task-processor.json"
    path.write_text(manifest(2, "task-processor:1"))
    created = kube_api.kubectl("apply", "-f", str(path))
    assert created.returncode == 0, created.stderr
    assert "created" in created.stdout

    path.write_text(manifest(4, "task-processor:2"))
    configured = kube_api.kubectl("apply", "-f", str(path))
    assert configured.returncode == 0, configured.stderr
    assert "configured" in configured.stdout
    (patch,) = kube_api.requests("PATCH", "/deployments/task-processor$")
    assert patch.content_type == "application/strategic-merge-patch+json"

    deployment = kube_api.get("deployment", "task-processor")
    assert deployment is not None
    assert deployment["spec"]["replicas"] == 4
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("worker", "task-processor:2"),
        ("sidecar", "busybox"),
    ]
    assert containers[0]["env"] == [{"name": "A", "value": "1"}]


@requires_kubectl
def test_kubectl_sees_injected_errors(kube_api: KubeAPI) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=1)
    kube_api.fail("PATCH", SCALE_PATH, 403, message="scaling is forbidden here")
    refused = kube_api.kubectl("scale", "deployment", "task-processor", "--replicas=3")
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr
    assert "scaling is forbidden here" in refused.stderr
    assert kube_api.replicas() == 1


@requires_helm
def test_helm_runs_with_a_private_home(kube_api: KubeAPI) -> None:  # noqa: F811
    kube_api.helm("list", "--namespace", NS, check=True)  # helm keeps releases in Secrets
    (listed,) = kube_api.requests("GET", "/namespaces/default/secrets$")
    assert (listed.status, listed.query.get("labelSelector")) == (200, "owner=helm")


def test_scale_patch_with_stale_resource_version_conflicts(kube_api: KubeAPI, apps: client.AppsV1Api) -> None:  # noqa: F811
    kube_api.create_deployment(replicas=1)
    stale = apps.read_namespaced_deployment_scale("task-processor", NS)
    deployment = apps.read_namespaced_deployment("task-processor", NS)
    assert stale.metadata is not None
    assert deployment.metadata is not None
    assert (stale.metadata.uid, stale.metadata.creation_timestamp) == (
        deployment.metadata.uid,
        deployment.metadata.creation_timestamp,
    )
    apps.patch_namespaced_deployment_scale("task-processor", NS, {"spec": {"replicas": 2}})
    patch = {"metadata": {"resourceVersion": stale.metadata.resource_version}, "spec": {"replicas": 7}}
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment_scale("task-processor", NS, patch)
    assert caught.value.status == 409
    assert kube_api.replicas() == 2


def _invalid(call: Callable[[], object]) -> dict[str, Any]:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status in (400, 422)
    assert caught.value.body is not None
    status: dict[str, Any] = json.loads(caught.value.body)
    return status


def spec_of(lease: client.V1Lease) -> client.V1LeaseSpec:
    assert lease.spec is not None
    return lease.spec


def test_validation_answers_like_the_api_server(kube_api: KubeAPI) -> None:  # noqa: F811
    core, leases = client.CoreV1Api(kube_api.api_client()), client.CoordinationV1Api(kube_api.api_client())
    lease = {"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}
    # The client sends a plain dict body as it is, though its signatures name only the model classes: the
    # `type: ignore[arg-type]` comments below.
    refused = _invalid(lambda: leases.create_namespaced_lease(NS, lease))  # type: ignore[arg-type]  # dict body
    assert refused["message"] == (
        'Lease.coordination.k8s.io "l" is invalid: [spec.leaseDurationSeconds: Invalid value: 0: must be greater '
        "than 0, spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0]"
    )
    assert refused["details"]["causes"][0] == {
        "reason": "FieldValueInvalid",
        "message": "Invalid value: 0: must be greater than 0",
        "field": "spec.leaseDurationSeconds",
    }
    # A MicroTime needs six fractional digits: what the client sends for a datetime with microsecond=0 fails.
    whole_second = {"metadata": {"name": "l"}, "spec": {"renewTime": "2026-12-01T10:00:00Z"}}
    refused = _invalid(lambda: leases.create_namespaced_lease(NS, whole_second))  # type: ignore[arg-type]  # dict body
    assert (refused["code"], refused["reason"]) == (400, "BadRequest")
    assert 'cannot parse "+00:00" as ".000000"' in refused["message"]  # the client re-serialized the time
    micro = {"metadata": {"name": "l"}, "spec": {"renewTime": "2026-12-01T10:00:00.123456Z"}}
    renewed = spec_of(leases.create_namespaced_lease(NS, micro)).renew_time  # type: ignore[arg-type]  # dict body
    assert renewed is not None
    assert renewed.microsecond == 123456

    pod = {"metadata": {"name": "w1"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    core.create_namespaced_pod(NS, pod)  # type: ignore[arg-type]  # dict body
    cost = {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "abc"}}}
    refused = _invalid(lambda: core.patch_namespaced_pod("w1", NS, cost))
    assert refused["message"] == (
        'Pod "w1" is invalid: metadata.annotations[controller.kubernetes.io/pod-deletion-cost]: '
        'Invalid value: "abc": must be a 32bit integer'
    )
    w1 = kube_api.get("pod", "w1")
    assert w1 is not None
    assert "pod-deletion-cost" not in str(w1["metadata"].get("annotations"))
    bad = {**pod, "metadata": {"name": "w2", **cost["metadata"]}}
    refused = _invalid(lambda: core.create_namespaced_pod(NS, bad))  # type: ignore[arg-type]  # dict body
    assert refused["reason"] == "Invalid"

    bad_metadata: list[tuple[dict[str, Any], str]] = [
        ({"name": "Bad_Name"}, "metadata.name"),
        ({"name": "ok", "labels": {"app": "not ok"}}, "metadata.labels"),
        ({"name": "ok", "annotations": {"a/b/c": "x"}}, "metadata.annotations"),
    ]
    for meta, field in bad_metadata:

        def create(meta: dict[str, Any] = meta) -> object:
            return core.create_namespaced_config_map(NS, {"metadata": meta})  # type: ignore[arg-type]  # dict body

        refused = _invalid(create)
        assert refused["details"]["causes"][0]["field"] == field
    bad_name = {"metadata": {"name": "Bad_Name"}}
    refused = _invalid(lambda: core.create_namespaced_config_map(NS, bad_name))  # type: ignore[arg-type]  # dict body
    assert refused["message"].startswith(
        'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'
    )


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
