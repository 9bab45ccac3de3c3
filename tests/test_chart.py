"""The Helm chart (charts/task-processor) against schemas: ``helm lint --strict``, the Kubernetes schemas of the
lowest and highest supported versions (kubernetes-validate --strict) for every variant, the ServiceMonitor those
schemas cannot check, and the chart's values schema refusing bad or inconsistent values.

Everything the chart tests check is what helm renders, parsed as YAML, not the template text. The other modules:
tests/test_chart_security.py (secure pods, RBAC), tests/test_chart_settings.py (workers, names and settings),
tests/test_chart_redis_secrets.py (Redis, secrets, the dashboard, the network policy), tests/test_chart_helm_test.py
(the ``helm test`` Pod), tests/test_chart_manifest.py (the committed plain manifest), tests/test_chart_pools.py
(worker pools); what they share: tests/chart.py and tests/chart_checks.py. tests/test_grafana_dashboard.py runs
this module's lint and schema tests on a variant of its own: keep them here.
"""

from __future__ import annotations

import pytest
import yaml

from tests.chart import (
    ALL_ON,
    CHART,
    VARIANTS,
    Helm,
    env_of,
    find,
    kubernetes_validate,
    selects,
)
from tests.chart_checks import KUBE_VERSIONS

CRD_KINDS = {"ServiceMonitor"}
"""Custom resources: kubernetes-validate has no schema for them;
test_service_monitor_scrapes_the_workers_and_the_autoscalers checks the one the chart renders instead."""


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_strict(helm: Helm, variant: str) -> None:
    result = helm.run("lint", "--strict", str(CHART), *(f"--set={s}" for s in VARIANTS[variant]))
    assert result.returncode == 0, f"helm lint --strict ({variant}) failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_objects_match_the_kubernetes_schema(helm: Helm, variant: str, kube_version: str) -> None:
    rendered = helm.template(*VARIANTS[variant], extra=("--kube-version", kube_version))
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    result = kubernetes_validate(rendered, kube_version)
    report = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"kubernetes-validate {kube_version} --strict refused the {variant} render:\n{report}"
    )
    passed = [line for line in report.splitlines() if line.startswith("INFO") and " passed " in line]
    warned = [line for line in report.splitlines() if line.startswith("WARN")]
    crds = [d for d in docs if d["kind"] in CRD_KINDS]
    assert len(passed) == len(docs) - len(crds), f"not every object was validated:\n{report}"
    assert all(any(kind in line for kind in CRD_KINDS) for line in warned), f"unexpected warnings:\n{report}"


def test_service_monitor_scrapes_the_workers_and_the_autoscalers(helm: Helm) -> None:
    """The CRD kubernetes-validate cannot check: its selector and port must meet both metrics Services, and
    those must reach a container port named metrics on Pods that are told to serve it (METRICS_PORT)."""
    docs = helm.docs(*ALL_ON)
    monitor = find(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"], "the monitor scrapes another port"
    services = [d for d in docs if d["kind"] == "Service"]
    scraped = {s["metadata"]["name"] for s in services if selects(monitor["spec"]["selector"], s["metadata"]["labels"])}
    assert scraped == {"task-processor-metrics", "task-processor-producer-metrics"}
    for name, deployment in (
        ("task-processor-metrics", "task-processor"),
        ("task-processor-producer-metrics", "task-processor-producer"),
    ):
        service = find(docs, "Service", name)
        assert [(p["name"], p["targetPort"]) for p in service["spec"]["ports"]] == [("metrics", "metrics")]
        pod = find(docs, "Deployment", deployment)["spec"]["template"]
        assert selects({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"]), name
        (container,) = pod["spec"]["containers"]
        assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in container["ports"]
        assert env_of(container)["METRICS_PORT"]["value"] == "9100"
        # The Pod's IP, where the Service sends the scrape (the default, 127.0.0.1, would refuse it).
        assert env_of(container)["METRICS_BIND"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert "ServiceMonitor" not in {
        d["kind"] for d in helm.docs("serviceMonitor.enabled=false", "metrics.enabled=true")
    }
    off = helm.docs()
    assert not [d for d in off if d["kind"] == "Service" and "metrics" in d["metadata"]["name"]]
    for deployment in ("task-processor", "task-processor-producer"):
        (container,) = find(off, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
        assert "ports" not in container
        assert not {"METRICS_PORT", "METRICS_BIND"} & env_of(container).keys()


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("autoscale.maxx=3", "maxx"),
        ("config.serializer=yaml", "/config/serializer"),
        ("unknownKey=1", "unknownKey"),
        ("autoscale.max=many", "/autoscale/max"),
        ("autoscale.max=0", "/autoscale/max"),
        ("autoscale.min=-1", "/autoscale/min"),
        ("autoscale.targetWait=0", "/autoscale/targetWait"),
        ("autoscale.targetWait=never", "/autoscale/targetWait"),
        ("config.logFormat=xml", "/config/logFormat"),
        ("config.taskTimeout=0", "/config/taskTimeout"),
        ("config.queues={bad:name}", "/config/queues"),
        ("config.taskModules=my-app.tasks", "/config/taskModules"),
        ("worker.replicas=two", "/worker/replicas"),
        ("redis.auth.existingSecretKey=pw", "existingSecretKey"),  # one key per Redis user now
        ("redis.acl.extraRules.admin=+@all", "admin"),
    ],
)
def test_the_schema_refuses_a_bad_value(helm: Helm, setting: str, complaint: str) -> None:
    result = helm.run("template", "x", str(CHART), f"--set={setting}")
    assert result.returncode != 0, f"helm accepted {setting}"
    assert complaint in result.stderr, f"the error does not name {complaint!r}:\n{result.stderr}"


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        (("redis.enabled=false",), "externalRedis.existingSecret"),
        (("autoscale.min=5", "autoscale.max=2"), "autoscale.min (5) is above autoscale.max (2)"),
        (("serviceMonitor.enabled=true",), "metrics.enabled"),
    ],
)
def test_the_chart_refuses_inconsistent_values(helm: Helm, settings: tuple[str, ...], complaint: str) -> None:
    result = helm.run("template", "x", str(CHART), *(f"--set={s}" for s in settings))
    assert result.returncode != 0, f"helm accepted {settings}"
    assert complaint in result.stderr, result.stderr
