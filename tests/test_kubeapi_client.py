"""The Kubernetes API emulator behaves like an API server for what this project uses, as the official client sees it
over real HTTP: the Scale subresource, Deployments, Leases and Pods with their resourceVersions and label selectors,
watch, and validation that refuses what a real server refuses, with its messages. Injected faults and the request
log: tests/test_kubeapi_faults.py; kubectl and helm: tests/test_kubeapi_kubectl.py; what these share:
tests/kubeapi_client.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.kubeapi import KubeAPI
from tests.kubeapi.fixtures import kube_api  # noqa: F401
from tests.kubeapi_client import (
    NS,
    apps_fixture,  # noqa: F401  (the apps fixture)
)


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
