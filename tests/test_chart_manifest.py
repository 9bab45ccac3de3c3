"""The plain manifest rendered from the Helm chart (deploy/task-processor.yaml): committed fresh and deterministic
(scripts/render-manifest), without a generated password or the ``helm test`` Pod, secure, and `kubectl apply`-able
against the API emulator (tests/kubeapi), where applying it again keeps the replicas the autoscaler set.

The other chart modules are listed in tests/test_chart.py.
"""

from __future__ import annotations

import subprocess

import yaml

from tests.chart import REPO_ROOT
from tests.chart_checks import REDIS_USERS, security_problems
from tests.kubeapi.fixtures import kube_api, requires_helm, requires_kubectl  # noqa: F401
from tests.kubeapi.server import KubeAPI

MANIFEST = REPO_ROOT / "deploy" / "task-processor.yaml"
RENDER_SCRIPT = REPO_ROOT / "scripts" / "render-manifest"

SERVED_KINDS = {"Deployment", "Service", "ServiceAccount", "Secret", "ConfigMap", "Role", "RoleBinding"}
"""What the API emulator (tests/kubeapi) serves among the manifest's kinds."""

UNSERVED_KINDS = {"StatefulSet", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"}
"""Kinds the emulator does not serve: left out of the apply test. A new kind must be put in one of the two sets."""


def render_manifest(*args: str) -> str:
    result = subprocess.run(
        ["bash", str(RENDER_SCRIPT), "--stdout", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"scripts/render-manifest failed:\n{result.stderr}"
    return result.stdout


@requires_helm
def test_the_committed_manifest_is_a_fresh_render() -> None:
    fresh = render_manifest()
    assert MANIFEST.exists(), "deploy/task-processor.yaml is missing: run scripts/render-manifest"
    assert MANIFEST.read_text() == fresh, (
        "deploy/task-processor.yaml differs from the chart rendered with its defaults: run scripts/render-manifest"
    )
    assert render_manifest() == fresh, "two renders differ: the manifest would not be deterministic"
    docs = [d for d in yaml.safe_load_all(fresh) if d]
    assert "Secret" not in {d["kind"] for d in docs}, "the committed manifest must not carry a generated password"
    assert "Pod" not in {d["kind"] for d in docs}, "the helm test hook does not belong in the plain manifest"
    assert fresh.startswith("# task-processor"), "the manifest lost its header"
    assert "kubectl create secret generic task-processor-redis" in fresh, "the header must say to create the Secret"
    assert not security_problems(docs)


@requires_kubectl
def test_the_manifest_applies_and_reapplying_keeps_the_autoscaled_replicas(kube_api: KubeAPI) -> None:  # noqa: F811
    """The emulator serves Deployments, Services, ServiceAccounts, Secrets, ConfigMaps, Roles and RoleBindings:
    those objects of the manifest are applied (here: both Deployments, the two Redis Services, the ServiceAccount,
    its Role and RoleBinding, plus the Secret the header asks for); StatefulSet and PodDisruptionBudget are not
    served and are left out."""
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    kinds = {d["kind"] for d in docs}
    assert kinds <= SERVED_KINDS | UNSERVED_KINDS, f"new kinds {kinds - SERVED_KINDS - UNSERVED_KINDS}: sort them"
    served = [d for d in docs if d["kind"] in SERVED_KINDS]
    path = kube_api.workdir / "served.yaml"
    path.write_text(yaml.safe_dump_all(served))

    # What the manifest's header asks for first: the Secret with the Redis users' passwords.
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "task-processor-redis"},
        "stringData": {f"{role}-password": "0123456789abcdef" for role in REDIS_USERS},
    }
    created = kube_api.kubectl("apply", "--validate=false", "-f", "-", input=yaml.safe_dump(secret))
    assert created.returncode == 0, created.stderr
    applied = kube_api.kubectl("apply", "--validate=false", "-f", str(path))
    assert applied.returncode == 0, f"kubectl apply failed:\n{applied.stdout}\n{applied.stderr}"

    assert kube_api.get("deployments", "task-processor") is not None, "no worker Deployment named task-processor"
    for resource, name in (
        ("deployments", "task-processor-producer"),
        ("serviceaccounts", "task-processor-producer"),
        ("roles", "task-processor-producer"),
        ("rolebindings", "task-processor-producer"),
        ("services", "task-processor-redis"),
    ):
        assert kube_api.get(resource, name) is not None, f"{resource}/{name} was not created"

    # The autoscaler (or ops) sets the count; applying the manifest again must not reset it.
    kube_api.kubectl("scale", "deployment", "task-processor", "--replicas=5", check=True)
    again = kube_api.kubectl("apply", "--validate=false", "-f", str(path))
    assert again.returncode == 0, again.stderr
    assert kube_api.replicas("task-processor") == 5, "re-applying the manifest reset the worker replicas"
