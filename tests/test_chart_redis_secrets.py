"""The Helm chart's Redis and secrets: every container's REDIS_URL built from its own ACL user's password in a
Secret (generated, the user's own, or an external Redis'), no password in plain text, in NOTES or on a command line;
the ACL following its values; the dashboard (rendered, and its container run for real against the test Redis); the
network policy admitting only the release's Pods to Redis.

The other chart modules are listed in tests/test_chart.py.
"""

from __future__ import annotations

import base64
import json
import re
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
    VARIANTS,
    Helm,
    component,
    containers,
    env_of,
    find,
    pod_labels,
    pod_specs,
    the_container,
)
from tests.chart_checks import REDIS_USERS
from tests.conftest import wait_for


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
"""The Redis ACL user (templates/redis/_acl.tpl) each container logs in as; tests/test_acl_roles.py runs their jobs."""


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
