"""What the chart tests share (tests/test_chart.py and tests/test_chart_*.py; tests/test_acl_*.py and others too): the
pinned helm and what the ``helm``
fixture (tests/conftest.py) returns, the value sets the variant tests render, and readers of rendered objects (find
one, its Pods' labels and containers, label selectors)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kubeapi.server import HELM

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART = REPO_ROOT / "charts" / "task-processor"
KUBERNETES_VALIDATE = Path(sys.executable).parent / "kubernetes-validate"

ALL_ON = (
    "dashboard.enabled=true",
    "networkPolicy.enabled=true",
    "metrics.enabled=true",
    "serviceMonitor.enabled=true",
)
EXTERNAL_REDIS = ("redis.enabled=false", "externalRedis.existingSecret=my-redis")
SENTINEL = ("redis.sentinel.enabled=true",)
"""The in-chart Redis as three Pods with a Sentinel each (tests/test_chart_sentinel.py)."""
EXTERNAL_SENTINEL = (
    *EXTERNAL_REDIS,
    "externalRedis.sentinel.enabled=true",
    "externalRedis.sentinel.hosts={sentinel-0.cache:26379,sentinel-1.cache:26379,10.0.0.7:26379}",
    "externalRedis.sentinel.masterSet=cache",
)
"""A Redis of one's own behind three Sentinels, its password in the Secret "my-redis"."""
POOLS = (
    "pools.bulk.queues={bulk,default}",
    "pools.bulk.max=40",
    "pools.bulk.jobsPerWorker=50",
    "pools.bulk.scaleDownDelay=300",
    "pools.bulk.resources.requests.cpu=2",
    "pools.bulk.resources.requests.memory=4Gi",
    "pools.bulk.nodeSelector.pool=batch",
    "pools.bulk.tolerations[0].key=dedicated",
    "pools.bulk.tolerations[0].operator=Equal",
    "pools.bulk.tolerations[0].value=batch",
    "pools.bulk.tolerations[0].effect=NoSchedule",
    "pools.gpu.queues={render}",
    "pools.gpu.image.repository=registry.example.com/gpu-worker",
    "pools.gpu.image.tag=2.0",
    "pools.gpu.targetWait=off",
    "pools.gpu.min=1",
    "pools.gpu.max=4",
)
"""Three worker pools: "default" from values.yaml, "bulk" with bounds and placement of its own, "gpu" its image."""
VARIANTS = {
    "defaults": (),
    "all-on": ALL_ON,
    "external-redis": EXTERNAL_REDIS,
    "no-autoscaler": ("autoscale.enabled=false",),
    "pools": POOLS,
}
POOL_LABEL = "task-processor.io/pool"
"""Names a worker Pod's pool (the autoscaler, WORKER_POOL); on each pool's Deployment, budget and Pods."""
WORKER_LABEL = "task-processor.io/worker"
"""On every pool's Deployment, budget and Pods ("true"): what is meant for all workers selects it."""

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "Pod"}

# --- helm ---------------------------------------------------------------------------------------------------


class Helm:
    """The pinned helm with a private HOME (it neither reads nor writes the user's configuration); renders are
    cached, since most tests look at the same few."""

    def __init__(self, home: Path) -> None:
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "KUBECONFIG": str(home / "no-kubeconfig"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        self._cache: dict[tuple[str, ...], str] = {}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(HELM), *args], capture_output=True, text=True, env=self.env, timeout=60, check=False)

    def template_args(self, sets: tuple[str, ...], release: str, namespace: str, extra: tuple[str, ...]) -> list[str]:
        return ["template", release, str(CHART), "--namespace", namespace, *extra, *(f"--set={s}" for s in sets)]

    def template(
        self,
        *sets: str,
        release: str = "task-processor",
        namespace: str = "default",
        extra: tuple[str, ...] = (),
    ) -> str:
        args = self.template_args(sets, release, namespace, extra)
        key = tuple(args)
        if key not in self._cache:
            result = self.run(*args)
            assert result.returncode == 0, f"helm {' '.join(args)} failed:\n{result.stderr}"
            self._cache[key] = result.stdout
        return self._cache[key]

    def docs(self, *sets: str, **kwargs: Any) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.template(*sets, **kwargs)) if d]


def new_helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """What the ``helm`` fixture (tests/conftest.py, module scope) returns. Every test that renders the chart takes
    that fixture, so it is skipped, not failed, without helm."""
    if not HELM.exists():
        pytest.skip(f"{HELM} missing: run scripts/k8s-tools")
    return Helm(tmp_path_factory.mktemp("helm-home"))


# --- reading rendered objects ---------------------------------------------------------------------------------


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    names = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert len(found) == 1, f"expected one {kind} {name or ''} in the render, found {len(found)} among {names}"
    return found[0]


def component(doc: dict[str, Any]) -> str:
    value: str = doc["metadata"].get("labels", {}).get("app.kubernetes.io/component", "")
    return value


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, the Pod's spec, the owning object) for every Pod the render would run."""
    for doc in docs:
        if doc["kind"] == "Pod":
            yield f"Pod/{doc['metadata']['name']}", doc["spec"], doc
        elif doc["kind"] in WORKLOAD_KINDS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"], doc
        else:
            assert "template" not in doc.get("spec", {}), f"{doc['kind']} has a Pod template this test does not read"


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def the_container(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    only: dict[str, Any]
    (only,) = find(docs, kind, name)["spec"]["template"]["spec"]["containers"]
    return only


def pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    """The labels of the Pods ``doc`` runs (a Pod's own, a workload's Pod template's)."""
    labels: dict[str, str] = (
        doc["metadata"]["labels"] if doc["kind"] == "Pod" else doc["spec"]["template"]["metadata"]["labels"]
    )
    return labels


def pod_role(doc: dict[str, Any]) -> str:
    """What ``doc`` is part of: "worker" for every worker pool's objects (component "worker" or
    "worker-<pool>"), else its component."""
    return "worker" if doc["metadata"].get("labels", {}).get(WORKER_LABEL) == "true" else component(doc)


def workers(docs: list[dict[str, Any]], kind: str = "Deployment") -> dict[str, dict[str, Any]]:
    """Every worker pool's objects of one kind, by name."""
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind and pod_role(d) == "worker"}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions with In) applied to labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def kubernetes_validate(rendered: str, kube_version: str) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate --strict on rendered manifests, against that Kubernetes version's schemas."""
    assert KUBERNETES_VALIDATE.exists(), f"{KUBERNETES_VALIDATE} missing: install the dev extras (kubernetes-validate)"
    return subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--kubernetes-version", kube_version, "-"],
        input=rendered,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
