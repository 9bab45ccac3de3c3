"""The Helm chart (charts/task-processor) and the plain manifest rendered from it (deploy/task-processor.yaml).

Everything here checks what helm renders, parsed as YAML, not the template text: lint, the Kubernetes schemas of
the lowest and highest supported versions (kubernetes-validate --strict), secure pods, RBAC equal to the README's
table, secrets, names, the values schema, the committed manifest's freshness, and `kubectl apply` of that manifest
against the API emulator. Worker pools: tests/test_chart_pools.py; what both share: tests/chart.py (other test
modules import Helm, CHART, VARIANTS, HELM, find, env_of and the_container from here: keep them here).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from producer import Producer
from producer.commands.redis_server import free_port
from tests.chart import (
    ALL_ON,
    CHART,
    EXTERNAL_REDIS,
    REPO_ROOT,
    VARIANTS,
    Helm,
    component,
    containers,
    env_of,
    find,
    kubernetes_validate,
    pod_labels,
    pod_role,
    pod_specs,
    selects,
    the_container,
)
from tests.conftest import wait_for
from tests.kubeapi.fixtures import kube_api, requires_helm, requires_kubectl  # noqa: F401
from tests.kubeapi.server import HELM, KubeAPI  # noqa: F401  (HELM: tests/test_faults.py imports it from here)

MANIFEST = REPO_ROOT / "deploy" / "task-processor.yaml"
RENDER_SCRIPT = REPO_ROOT / "scripts" / "render-manifest"
README = REPO_ROOT / "README.md"

KUBE_VERSIONS = ("1.25.0", "1.37.0")
"""The lowest and highest Kubernetes versions the chart supports (kubernetes-validate bundles 1.25-1.37)."""

CRD_KINDS = {"ServiceMonitor"}
"""Custom resources: kubernetes-validate has no schema for them;
test_service_monitor_scrapes_the_workers_and_the_autoscalers checks the one the chart renders instead."""

SERVED_KINDS = {"Deployment", "Service", "ServiceAccount", "Secret", "ConfigMap", "Role", "RoleBinding"}
"""What the API emulator (tests/kubeapi) serves among the manifest's kinds."""

UNSERVED_KINDS = {"StatefulSet", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor"}
"""Kinds the emulator does not serve: left out of the apply test. A new kind must be put in one of the two sets."""

APP_UID = 10001


# --- reading rendered objects ---------------------------------------------------------------------------------


def security_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every departure from the secure pod defaults, as readable lines (empty: all good)."""
    problems: list[str] = []
    for where, spec, owner in pod_specs(docs):
        pod = spec.get("securityContext", {})
        for key, want in (
            ("runAsNonRoot", True),
            ("runAsUser", APP_UID),
            ("runAsGroup", APP_UID),
            ("fsGroup", APP_UID),
        ):
            if pod.get(key) != want:
                problems.append(f"{where}: pod securityContext.{key} is {pod.get(key)!r}, want {want!r}")
        if pod.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is {pod.get('seccompProfile')!r}, want RuntimeDefault")
        calls_api = component(owner) == "producer" and owner["kind"] == "Deployment"
        if not calls_api and spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: does not call the API but automountServiceAccountToken is not false")
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in containers(spec):
            sc = c.get("securityContext", {})
            name = f"{where} container {c['name']}"
            checks = {
                "allowPrivilegeEscalation": (sc.get("allowPrivilegeEscalation"), False),
                "readOnlyRootFilesystem": (sc.get("readOnlyRootFilesystem"), True),
                "runAsNonRoot": (sc.get("runAsNonRoot", pod.get("runAsNonRoot")), True),
                "runAsUser": (sc.get("runAsUser", pod.get("runAsUser")), APP_UID),
                "seccompProfile.type": (
                    sc.get("seccompProfile", pod.get("seccompProfile", {})).get("type"),
                    "RuntimeDefault",
                ),
            }
            for key, (got, want) in checks.items():
                if got != want:
                    problems.append(f"{name}: securityContext.{key} is {got!r}, want {want!r}")
            caps = sc.get("capabilities", {})
            if "ALL" not in caps.get("drop", []) or caps.get("add"):
                problems.append(f"{name}: capabilities are {caps!r}, want drop [ALL] and nothing added")
            if sc.get("privileged"):
                problems.append(f"{name}: privileged")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if mounts.get("/tmp") not in tmp_volumes:
                problems.append(f"{name}: no emptyDir at /tmp beside the read-only root filesystem")
    return problems


def readme_table(header: str) -> list[list[str]]:
    """The rows of the README table whose header line starts with ``header``, as lists of cells."""
    lines = README.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert starts, f"README.md has no table starting {header!r}: the chart tests read it as the contract"
    rows = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


def readme_rbac() -> dict[tuple[str, str], set[str]]:
    rules = {}
    for cells in readme_table("| API group | resource | verbs |"):
        group = ticked(cells[0])[0]
        rules[("" if group == '""' else group, ticked(cells[1])[0])] = set(ticked(cells[2]))
    return rules


def readme_variables() -> set[str]:
    return {ticked(cells[0])[0] for cells in readme_table("| variable | default | meaning |")}


# --- lint and Kubernetes schemas -------------------------------------------------------------------------------


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


# --- secure pods ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_and_container_is_locked_down(helm: Helm, variant: str) -> None:
    docs = helm.docs(*VARIANTS[variant])
    assert list(pod_specs(docs)), "no Pods rendered"
    problems = security_problems(docs)
    assert not problems, "insecure pod settings:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("worker.securityContext.readOnlyRootFilesystem=false", "Deployment/task-processor container worker"),
        ("producer.securityContext.allowPrivilegeEscalation=true", "Deployment/task-processor-producer"),
        ("redis.podSecurityContext.seccompProfile.type=Unconfined", "StatefulSet/task-processor-redis"),
        ("dashboard.securityContext.capabilities.drop=null", "Deployment/task-processor-dashboard"),
    ],
)
def test_the_security_check_sees_a_dropped_setting(helm: Helm, setting: str, expected: str) -> None:
    """The check reads the rendered values: weakening one through values makes it fail, naming the object."""
    problems = security_problems(helm.docs("dashboard.enabled=true", setting))
    assert any(expected in p for p in problems), f"{setting} went unnoticed: {problems}"


# --- RBAC -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("override", [None, "tp-workers"])
def test_the_role_grants_exactly_the_readme_verbs(helm: Helm, override: str | None) -> None:
    docs = helm.docs(*([f"fullnameOverride={override}"] if override else []))
    worker = override or "task-processor"
    role = find(docs, "Role")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        flat = [*rule["apiGroups"], *rule["resources"], *rule["verbs"], *rule.get("resourceNames", [])]
        assert "*" not in flat, f"wildcard in {rule}"
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, f"unexpected fields in {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    wanted = readme_rbac()
    differences = {
        key: {"granted": sorted(granted.get(key, ())), "README": sorted(wanted.get(key, ()))}
        for key in granted.keys() | wanted.keys()
        if granted.get(key) != wanted.get(key)
    }
    assert not differences, f"the Role differs from the README's RBAC table (Running on Kubernetes): {differences}"

    def names(group: str, resource: str, verb: str) -> list[list[str] | None]:
        return [
            rule.get("resourceNames")
            for rule in role["rules"]
            if group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        ]

    # Pools are whichever Deployments carry the pool label, some added with kubectl alone: no name to limit to.
    assert names("apps", "deployments", "list") == [None]
    assert names("apps", "deployments", "get") == [None]
    assert names("apps", "deployments/scale", "patch") == [None]
    assert names("coordination.k8s.io", "leases", "get") == [[f"{worker}-autoscaler"]]
    assert names("coordination.k8s.io", "leases", "update") == [[f"{worker}-autoscaler"]]
    assert names("coordination.k8s.io", "leases", "create") == [None], "create cannot be limited by resourceNames"

    binding = find(docs, "RoleBinding")
    producer = find(docs, "Deployment", f"{worker}-producer")["spec"]["template"]["spec"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": producer["serviceAccountName"], "namespace": "default"}
    ]
    assert find(docs, "ServiceAccount")["metadata"]["name"] == producer["serviceAccountName"]


def test_no_autoscaler_means_no_api_access(helm: Helm) -> None:
    kinds = {d["kind"] for d in helm.docs("autoscale.enabled=false")}
    assert not kinds & {"Role", "RoleBinding", "ServiceAccount"}, kinds


# --- workers, names and settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [None, 3600])
def test_the_grace_period_covers_a_whole_task(helm: Helm, timeout: int | None) -> None:
    docs = helm.docs(*([f"config.taskTimeout={timeout}"] if timeout else []))
    spec = find(docs, "Deployment", "task-processor")["spec"]["template"]["spec"]
    (worker,) = spec["containers"]
    task_timeout = int(env_of(worker)["TASK_TIMEOUT"]["value"])
    assert task_timeout == (timeout or 180)
    assert spec["terminationGracePeriodSeconds"] >= task_timeout, (
        f"terminationGracePeriodSeconds {spec['terminationGracePeriodSeconds']} < TASK_TIMEOUT {task_timeout}: "
        "SIGTERM would kill a job that is allowed to run longer"
    )
    assert worker["command"] == ["task-worker"]
    assert worker["livenessProbe"]["exec"]["command"] == ["task-worker", "check"]


def test_the_worker_deployment_is_task_processor_whatever_the_release(helm: Helm) -> None:
    docs = helm.docs(release="queue-prod", namespace="jobs")
    worker = find(docs, "Deployment", "task-processor")
    assert component(worker) == "worker"
    producer_env = env_of(the_container(docs, "Deployment", "task-processor-producer"))
    assert producer_env["WORKER_DEPLOYMENT"]["value"] == "task-processor"
    assert producer_env["WORKER_NAMESPACE"]["value"] == "jobs"
    assert find(docs, "RoleBinding")["subjects"][0]["namespace"] == "jobs"


def test_fullname_override_renames_the_workers_and_the_autoscaler_follows(helm: Helm) -> None:
    docs = helm.docs("fullnameOverride=tp-workers")
    assert find(docs, "Deployment", "tp-workers")
    producer_env = env_of(the_container(docs, "Deployment", "tp-workers-producer"))
    assert producer_env["WORKER_DEPLOYMENT"]["value"] == "tp-workers"
    assert not [d for d in docs if d["metadata"]["name"].startswith("task-processor")], "an object kept the old name"


def test_the_autoscaler_owns_the_worker_replicas(helm: Helm) -> None:
    """With the autoscaler on, spec.replicas is absent, so `helm upgrade` and `kubectl apply` never reset it."""
    spec = find(helm.docs(), "Deployment", "task-processor")["spec"]
    assert "replicas" not in spec, "spec.replicas would fight the autoscaler on every upgrade"
    assert find(helm.docs(), "Deployment", "task-processor-producer")["spec"]["replicas"] == 2
    fixed = find(helm.docs("autoscale.enabled=false", "worker.replicas=3"), "Deployment", "task-processor")
    assert fixed["spec"]["replicas"] == 3


def test_settings_reach_the_containers_under_the_readme_names(helm: Helm) -> None:
    docs = helm.docs(
        "config.queues={high,default}",
        "config.serializer=pickle",
        "config.taskModules={myapp.tasks,billing.jobs}",
        "config.logLevel=DEBUG",
        "autoscale.min=1",
        "autoscale.max=20",
        "autoscale.jobsPerWorker=5",
        "autoscale.scaleDownDelay=90",
        "autoscale.manualHold=600",
        "autoscale.targetWait=off",
    )
    worker = env_of(the_container(docs, "Deployment", "task-processor"))
    producer = env_of(the_container(docs, "Deployment", "task-processor-producer"))
    values = {name: e.get("value") for name, e in producer.items()}
    expected = {
        "TASK_QUEUES": "high,default",
        "TASK_SERIALIZER": "pickle",
        "TASK_MODULES": "myapp.tasks,billing.jobs",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "AUTOSCALE_MIN": "1",
        "AUTOSCALE_MAX": "20",
        "AUTOSCALE_JOBS_PER_WORKER": "5",
        "AUTOSCALE_INTERVAL": "0.25",
        "AUTOSCALE_SCALE_DOWN_DELAY": "90",
        "AUTOSCALE_MANUAL_HOLD": "600",
        "AUTOSCALE_TARGET_WAIT": "off",
    }
    wrong = {name: values.get(name) for name, want in expected.items() if values.get(name) != want}
    assert not wrong, f"the autoscaler's environment does not follow the values: {wrong}"
    for name in ("TASK_QUEUES", "TASK_SERIALIZER", "TASK_MODULES", "TASK_TIMEOUT", "LOG_FORMAT", "LOG_LEVEL"):
        assert worker[name] == producer[name], f"{name} differs between workers and autoscaler"
    helper = {"REDIS_PASSWORD"}  # only expanded into REDIS_URL
    unknown = (set(worker) | set(producer)) - readme_variables() - helper
    assert not unknown, f"the chart sets variables the README's configuration table does not list: {unknown}"


@pytest.mark.parametrize("modules", ["{myapp.tasks,billing.jobs}", r"myapp.tasks\, billing.jobs"])
def test_task_modules_reach_workers_autoscalers_and_the_test_pod(helm: Helm, modules: str) -> None:
    """config.taskModules, a list or a comma string, is the same TASK_MODULES wherever tasks run or are enqueued."""
    docs = helm.docs(f"config.taskModules={modules}")
    seen = {}
    for where, spec, owner in pod_specs(docs):
        if pod_role(owner) in ("worker", "producer", "test"):
            (container,) = spec["containers"]
            seen[where] = env_of(container)["TASK_MODULES"].get("value")
    assert len(seen) == 3, seen
    assert set(seen.values()) == {"myapp.tasks,billing.jobs"}, seen
    assert env_of(the_container(helm.docs(), "Deployment", "task-processor"))["TASK_MODULES"]["value"] == (
        "worker.examples"
    ), "the default is the demo module, which the helm test runs"


@pytest.mark.parametrize("variant", VARIANTS)
def test_pod_name_comes_from_the_downward_api(helm: Helm, variant: str) -> None:
    docs = helm.docs(*VARIANTS[variant])
    for where, spec, owner in pod_specs(docs):
        if pod_role(owner) in ("worker", "producer", "test"):
            for c in spec["containers"]:
                pod_name = env_of(c).get("POD_NAME", {})
                assert pod_name.get("valueFrom") == {"fieldRef": {"fieldPath": "metadata.name"}}, f"{where}: {pod_name}"


# --- Redis and secrets ------------------------------------------------------------------------------------------


def secret_value(docs: list[dict[str, Any]], name: str, key: str) -> str:
    return base64.b64decode(find(docs, "Secret", name)["data"][key]).decode()


def redis_url_sources(docs: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for where, spec, _ in pod_specs(docs):
        for c in containers(spec):
            if any(e["name"] == "REDIS_URL" for e in c.get("env", [])):
                yield f"{where} container {c['name']}", c["env"]


REDIS_ROLES = {
    "Deployment/task-processor container worker": "worker",
    "Deployment/task-processor-producer container autoscaler": "autoscaler",
    "Pod/task-processor-test container queue": "producer",
    "Deployment/task-processor-dashboard container dashboard": "dashboard",
}
"""The Redis ACL user (templates/redis/_acl.tpl) each container logs in as; tests/test_acl.py runs their jobs."""

REDIS_USERS = ("admin", "worker", "autoscaler", "producer", "dashboard")
"""Every Redis user; the Secret holds "<user>-password" for each."""


@pytest.mark.parametrize("variant", ["defaults", "all-on"])
def test_redis_url_comes_from_the_secret_and_no_password_is_in_plain_text(helm: Helm, variant: str) -> None:
    rendered = helm.template(*VARIANTS[variant])
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    secrets = {}
    for role in REDIS_USERS:
        secrets[f"Redis password of {role}"] = password = secret_value(docs, "task-processor-redis", f"{role}-password")
        assert re.fullmatch(r"[A-Za-z0-9]{32}", password), "the generated password must be URL-safe"
    assert len(set(secrets.values())) == 5, "two Redis users share a password"
    if variant == "all-on":
        secrets["dashboard password"] = secret_value(docs, "task-processor-dashboard", "password")
    for what, value in secrets.items():
        assert value not in rendered, f"the {what} appears in plain text in the rendered manifest"
        encoded = base64.b64encode(value.encode()).decode()
        holders = [d["metadata"]["name"] for d in docs if encoded in yaml.safe_dump(d)]
        assert len(holders) == 1, f"the {what} is in more than its Secret: {holders}"
    users = dict(redis_url_sources(docs))
    expected = {"worker", "autoscaler", "producer"} | ({"dashboard"} if variant == "all-on" else set())
    assert {REDIS_ROLES.get(where) for where in users} == expected, users
    for where, env in users.items():
        names, role = [e["name"] for e in env], REDIS_ROLES[where]
        url = env[names.index("REDIS_URL")]
        assert url["value"] == f"redis://{role}:$(REDIS_PASSWORD)@task-processor-redis:6379/0", where
        assert "REDIS_PASSWORD" in names[: names.index("REDIS_URL")], f"{where}: $(REDIS_PASSWORD) defined too late"
        ref = env[names.index("REDIS_PASSWORD")]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "task-processor-redis", "key": f"{role}-password"}, where
    redis = the_container(docs, "StatefulSet", "task-processor-redis")
    assert redis["args"][redis["args"].index("--aclfile") + 1] == "/acl/users.acl"
    assert not [a for a in redis["args"] if "PASSWORD" in a or a == "--requirepass"], "a password on the command line"
    assert env_of(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == "admin-password", "probes as admin"
    assert {"--appendonly", "yes", "--appendfsync", "always"} <= set(redis["args"])
    assert redis["args"][redis["args"].index("--stream-node-max-bytes") + 1] == "128", "small result streams"


def test_notes_never_show_a_password(helm: Helm) -> None:
    result = helm.run("install", "tp", str(CHART), "--dry-run=client", "--set=dashboard.enabled=true")
    assert result.returncode == 0, result.stderr
    manifest, _, notes = result.stdout.partition("\nNOTES:\n")
    docs = [d for d in yaml.safe_load_all(manifest.split("\nMANIFEST:\n", 1)[-1]) if d]
    for hint in ("task-producer enqueue", "kubectl -n default scale deployment task-processor", "port-forward"):
        assert hint in notes, f"NOTES do not mention {hint!r}:\n{notes}"
    assert "task-processor.io/autoscale=paused" in notes, "NOTES should say how to pause the autoscaler"
    redis_keys = [("task-processor-redis", f"{role}-password") for role in REDIS_USERS]
    for name, key in (*redis_keys, ("task-processor-dashboard", "password")):
        value = secret_value(docs, name, key)
        assert value not in notes, f"the password of {name} is in NOTES"
        assert base64.b64encode(value.encode()).decode() not in notes, f"the password of {name} is in NOTES"


@pytest.mark.parametrize("worker_key", [None, "worker-url"])
def test_external_redis_url_comes_from_the_users_secret(helm: Helm, worker_key: str | None) -> None:
    per_role = [f"externalRedis.roleSecretKeys.worker={worker_key}"] if worker_key else []
    docs = helm.docs(*EXTERNAL_REDIS, "dashboard.enabled=true", *per_role)
    assert not [d for d in docs if component(d) == "redis"], "external Redis still renders in-chart Redis objects"
    for where, env in redis_url_sources(docs):
        (url,) = [e for e in env if e["name"] == "REDIS_URL"]
        key = worker_key if worker_key and REDIS_ROLES[where] == "worker" else "redis-url"
        assert url["valueFrom"]["secretKeyRef"] == {"name": "my-redis", "key": key}, where
        assert "REDIS_PASSWORD" not in {e["name"] for e in env}, where


def test_an_existing_redis_secret_is_used_and_none_is_generated(helm: Helm) -> None:
    docs = helm.docs("redis.auth.existingSecret=mine")
    assert "Secret" not in {d["kind"] for d in docs}
    for where, env in redis_url_sources(docs):
        (password,) = [e for e in env if e["name"] == "REDIS_PASSWORD"]
        assert password["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": f"{REDIS_ROLES[where]}-password"}
    (init,) = find(docs, "StatefulSet")["spec"]["template"]["spec"]["initContainers"]
    refs = {e["valueFrom"]["secretKeyRef"]["key"] for e in init["env"] if "valueFrom" in e}
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in init["env"] if "valueFrom" in e} == {"mine"}
    assert refs == {f"{role}-password" for role in REDIS_USERS}


def test_the_acl_follows_its_values_and_a_change_restarts_redis(helm: Helm) -> None:
    """redis.acl.extraRules lands on its role's line only; the ACL is read at start, so a change rolls the Pod."""

    def acl(*sets: str) -> tuple[dict[str, str], str]:
        docs = helm.docs(*sets)
        lines = find(docs, "ConfigMap", "task-processor-redis-acl")["data"]["users.acl"].splitlines()
        pod = find(docs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
        return {line.split()[1]: line for line in lines}, pod["checksum/acl"]

    plain, checksum = acl()
    extra, extra_checksum = acl("redis.acl.extraRules.worker=~myapp:*")
    assert extra["worker"] == plain["worker"] + " ~myapp:*"
    assert {**extra, "worker": ""} == {**plain, "worker": ""}, "another role's line changed"
    writable, writable_checksum = acl("dashboard.readOnly=false")
    assert ("+@write" in writable["dashboard"], "+@write" in plain["dashboard"]) == (True, False)
    assert len({checksum, extra_checksum, writable_checksum}) == 3


def test_the_dashboard_runs_from_the_producer_image_with_the_task_serializer(helm: Helm) -> None:
    for serializer in ("json", "pickle"):
        docs = helm.docs("dashboard.enabled=true", f"config.serializer={serializer}")
        dashboard = the_container(docs, "Deployment", "task-processor-dashboard")
        producer = the_container(docs, "Deployment", "task-processor-producer")
        assert dashboard["image"] == producer["image"]
        assert dashboard["command"][:2] == ["task-producer", "dashboard"]
        env = env_of(dashboard)
        assert env["TASK_SERIALIZER"]["value"] == serializer
        for name, key in (("RQ_DASHBOARD_USERNAME", "username"), ("RQ_DASHBOARD_PASSWORD", "password")):
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "task-processor-dashboard", "key": key}
    assert find(docs, "Service", "task-processor-dashboard")["spec"]["ports"][0]["port"] == 9181


def test_the_dashboard_runs_as_rendered(helm: Helm, redis_url: str, spawn: Callable[..., Any]) -> None:
    """The dashboard container's rendered command and environment, run for real: it listens, asks for the login
    from the Secret, and reads our JSON queues and a busy worker's JSON job (plain rq-dashboard --json cannot)."""
    port = free_port()
    docs = helm.docs("dashboard.enabled=true", f"dashboard.port={port}")
    container = the_container(docs, "Deployment", "task-processor-dashboard")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["REDIS_URL"].startswith("redis://dashboard:$(REDIS_PASSWORD)@")  # expanded from the Secret
    producer = Producer(redis_url)
    producer.enqueue("worker.examples.noop", queue="chart-check")
    busy = producer.enqueue("worker.examples.sleep", 30, queue="chart-busy")
    spawn("task-worker", "--queue", "chart-busy", extra_env={"REDIS_URL": redis_url})
    wait_for(lambda: busy.get_status(refresh=True) == "started", what="the worker to start its job")
    plain = {k: v for k, v in env.items() if v is not None and k != "REDIS_URL"}
    spawn(
        *container["command"],
        extra_env={**plain, "REDIS_URL": redis_url, "RQ_DASHBOARD_USERNAME": "admin", "RQ_DASHBOARD_PASSWORD": "pw"},
    )
    url = f"http://127.0.0.1:{port}/0/data/queues.json"
    login = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}

    def answer(headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, b""
        except OSError:
            return 0, b""

    assert wait_for(lambda: answer({})[0], what="the dashboard to listen") == 401
    status, body = answer(login)
    assert status == 200
    queues = {q["name"]: q["count"] for q in json.loads(body)["queues"]}
    assert queues == {"chart-check": 1, "chart-busy": 0}
    url = f"http://127.0.0.1:{port}/0/data/workers.json"
    status, body = answer(login)
    assert status == 200
    (worker,) = json.loads(body)["workers"]
    assert worker["current_job"]["job_id"] == busy.id


def test_the_network_policy_admits_only_the_release_pods_to_redis(helm: Helm) -> None:
    docs = helm.docs(*ALL_ON)
    policy = find(docs, "NetworkPolicy")
    redis_pod = find(docs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= redis_pod.items()
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    (source,) = rule["from"]
    allowed = source["podSelector"]["matchLabels"]
    for where, _, owner in pod_specs(docs):
        assert allowed.items() <= pod_labels(owner).items(), f"{where} could not reach Redis"
    assert allowed["app.kubernetes.io/instance"] == "task-processor", "Pods of other releases would be admitted"


# --- the values schema --------------------------------------------------------------------------------------------


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


# --- helm test ------------------------------------------------------------------------------------------------------


def test_the_helm_test_pod_runs_a_task_through_a_worker(
    helm: Helm, redis_url: str, spawn: Callable[..., Any], env: dict[str, str]
) -> None:
    """Run the hook Pod's own script, with its rendered environment, against the test Redis and a real worker."""
    (pod,) = [d for d in helm.docs() if d["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"].startswith("task-processor-producer:"), "the producer image carries the Python API"
    assert container["command"] == ["python", "-c"]
    rendered_env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    run_env = {**env, **rendered_env, "REDIS_URL": redis_url, "POD_NAME": "helm-test", "TEST_TIMEOUT": "20"}
    spawn("task-worker", extra_env={k: v for k, v in rendered_env.items() if k.startswith(("TASK_", "LOG_"))})
    result = subprocess.run(
        [sys.executable, "-c", container["args"][0]],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"the helm test script failed:\n{result.stdout}\n{result.stderr}"
    assert "redis: PONG" in result.stdout, result.stdout
    assert "result 5, 1 worker(s) registered" in result.stdout, result.stdout


# --- the plain manifest -----------------------------------------------------------------------------------------------


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
