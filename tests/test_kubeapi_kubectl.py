"""The Kubernetes API emulator serves the pinned kubectl and helm (scripts/k8s-tools) over real HTTP: get, scale
with and without a replica precondition (and losing a race with another scaler), apply creating then patching,
injected errors shown by kubectl, helm with a private home. The official client's view:
tests/test_kubeapi_client.py; what these share: tests/kubeapi_client.py."""

from __future__ import annotations

import json
from pathlib import Path

from tests.kubeapi import KubeAPI
from tests.kubeapi.fixtures import kube_api, requires_helm, requires_kubectl  # noqa: F401
from tests.kubeapi_client import NS, SCALE_PATH


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
