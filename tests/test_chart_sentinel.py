"""Redis with Sentinel in the chart: the in-chart Redis as three Pods with a Sentinel each (redis.sentinel), and a
Redis of one's own behind Sentinels (externalRedis.sentinel).

What helm renders, parsed: lint, the Kubernetes schemas, three Redis Pods spread over nodes under a disruption budget,
AOF, passwords only in the Secret, secure pods, every consumer's redis+sentinel:// REDIS_URL and TASK_REPLICA_ACKS,
and bad values refused. test_chart_sentinel_run.py runs the rendered configuration.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import yaml

from tests.chart import (
    CHART,
    EXTERNAL_SENTINEL,
    SENTINEL,
    Helm,
    containers,
    env_of,
    find,
    kubernetes_validate,
    pod_specs,
    selects,
)
from tests.chart_checks import KUBE_VERSIONS, security_problems

SENTINEL_USERS = ("admin", "worker", "autoscaler", "producer", "dashboard", "replica", "sentinel")
"""The Secret's users with Sentinel: each role's, plus the replicas' and the Sentinels' own logins."""

CONSUMERS = {
    "Deployment/task-processor container worker": "worker",
    "Deployment/task-processor-producer container autoscaler": "autoscaler",
    "Pod/task-processor-test container queue": "producer",
    "Deployment/task-processor-dashboard container dashboard": "dashboard",
}
"""Every container given a REDIS_URL (dashboard on), and the Redis user it logs in as."""

HOSTS = [f"task-processor-redis-{i}.task-processor-redis-headless.default.svc" for i in range(3)]
"""The Redis Pods' DNS names through the headless Service: what Sentinels announce and clients are given."""


@pytest.fixture(scope="module")
def rendered(helm: Helm) -> str:
    """The sentinel render every test below reads (dashboard on, so that all four consumers are there)."""
    return helm.template(*SENTINEL, "dashboard.enabled=true")


@pytest.fixture(scope="module")
def docs(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if d]


def redis_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    template: dict[str, Any] = find(docs, "StatefulSet", "task-processor-redis")["spec"]["template"]
    return template


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


# --- lint and Kubernetes schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["in-chart", "external"])
def test_helm_lint_strict(helm: Helm, variant: str) -> None:
    sets = SENTINEL if variant == "in-chart" else EXTERNAL_SENTINEL
    result = helm.run("lint", "--strict", str(CHART), *(f"--set={s}" for s in sets))
    assert result.returncode == 0, f"helm lint --strict ({variant}) failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_rendered_objects_match_the_kubernetes_schema(helm: Helm, kube_version: str) -> None:
    """Both sentinel renders in one document stream, validated against the lowest and highest supported version."""
    rendered = "\n---\n".join(
        helm.template(*sets, "dashboard.enabled=true", extra=("--kube-version", kube_version))
        for sets in (SENTINEL, EXTERNAL_SENTINEL)
    )
    count = len([d for d in yaml.safe_load_all(rendered) if d])
    result = kubernetes_validate(rendered, kube_version)
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"kubernetes-validate {kube_version} --strict refused a sentinel render:\n{report}"
    passed = [line for line in report.splitlines() if line.startswith("INFO") and " passed " in line]
    assert len(passed) == count, f"not every object was validated:\n{report}"


# --- the Redis Pods -----------------------------------------------------------------------------------------------


def test_three_redis_pods_each_with_its_sentinel(docs: list[dict[str, Any]]) -> None:
    statefulset = find(docs, "StatefulSet", "task-processor-redis")
    assert statefulset["spec"]["replicas"] == 3
    pod = redis_pod(docs)["spec"]
    images = {c["name"]: c["image"] for c in containers(pod)}
    assert images == {"config": "redis:7", "redis": "redis:7", "sentinel": "redis:7"}, "the official image"
    main = by_name(pod["containers"])
    assert main["redis"]["command"] + main["redis"]["args"] == ["redis-server", "/conf/redis.conf"]
    assert main["sentinel"]["command"] + main["sentinel"]["args"] == [
        "redis-server",
        "/conf/sentinel.conf",
        "--sentinel",
    ]
    assert main["sentinel"]["ports"] == [{"name": "sentinel", "containerPort": 26379, "protocol": "TCP"}]
    for name in ("redis", "sentinel"):
        probe = main[name]["readinessProbe"]["exec"]["command"][-1]
        assert "--user admin" in probe, f"{name}'s probe: {probe}"
        assert "ping" in probe, f"{name}'s probe: {probe}"
        assert env_of(main[name])["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]["key"] == "admin-password"

    # The Pods' names, announced by Redis and Sentinel, come from the headless Service, published before the Pods
    # are ready (a starting Redis must be reachable by name).
    headless = find(docs, "Service", "task-processor-redis-headless")
    assert statefulset["spec"]["serviceName"] == "task-processor-redis-headless"
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["spec"]["ports"]} == {6379, 26379}
    assert selects({"matchLabels": headless["spec"]["selector"]}, redis_pod(docs)["metadata"]["labels"])
    (config,) = pod["initContainers"]
    init_env = env_of(config)
    assert init_env["REDIS_HOSTS"]["value"].split() == HOSTS
    assert init_env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert (init_env["MASTER_SET"]["value"], init_env["SENTINEL_QUORUM"]["value"]) == ("task-processor", "2")
    sentinel_conf = find(docs, "ConfigMap", "task-processor-redis-sentinel")["data"]["sentinel.conf"].splitlines()
    assert {"sentinel announce-hostnames yes", "sentinel resolve-hostnames yes"} <= set(sentinel_conf)


def test_the_redis_pods_keep_apart_and_a_drain_takes_one_at_a_time(helm: Helm, docs: list[dict[str, Any]]) -> None:
    labels = redis_pod(docs)["metadata"]["labels"]
    (preferred,) = redis_pod(docs)["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert preferred["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(preferred["podAffinityTerm"]["labelSelector"], labels), "the term does not select its own Pods"

    required = find(helm.docs(*SENTINEL, "redis.sentinel.antiAffinity=required"), "StatefulSet")
    affinity = required["spec"]["template"]["spec"]["affinity"]
    (term,) = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["labelSelector"], labels)
    # redis.affinity's other keys stay; its own podAntiAffinity replaces the chart's.
    zone = "redis.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
    mixed = find(
        helm.docs(*SENTINEL, f"{zone}.matchExpressions[0].key=zone", f"{zone}.matchExpressions[0].operator=Exists"),
        "StatefulSet",
    )
    assert set(mixed["spec"]["template"]["spec"]["affinity"]) == {"nodeAffinity", "podAntiAffinity"}

    budget = find(docs, "PodDisruptionBudget", "task-processor-redis")
    assert budget["spec"]["maxUnavailable"] == 1
    assert selects(budget["spec"]["selector"], labels)
    others = [d for d in docs if d["kind"] == "PodDisruptionBudget" and d is not budget]
    assert not [b["metadata"]["name"] for b in others if selects(b["spec"]["selector"], labels)], "two budgets"


def test_the_network_policy_admits_the_sentinels(helm: Helm) -> None:
    policy = find(helm.docs(*SENTINEL, "networkPolicy.enabled=true"), "NetworkPolicy")
    (rule,) = policy["spec"]["ingress"]
    assert {p["port"] for p in rule["ports"]} == {6379, 26379}
    service = find(helm.docs(*SENTINEL), "Service", "task-processor-redis")
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("sentinel", 26379)], "not to any Redis"


def test_every_pod_keeps_an_aof_and_the_single_redis_settings(helm: Helm, docs: list[dict[str, Any]]) -> None:
    conf = find(docs, "ConfigMap", "task-processor-redis-sentinel")["data"]["redis.conf"].splitlines()
    assert {"appendonly yes", "appendfsync always", "stream-node-max-bytes 128"} <= set(conf)
    single = find(helm.docs(), "StatefulSet", "task-processor-redis")["spec"]["template"]["spec"]["containers"][0]
    args = single["args"]
    assert f"stream-node-max-bytes {args[args.index('--stream-node-max-bytes') + 1]}" in conf, "not the single one's"
    statefulset = find(docs, "StatefulSet", "task-processor-redis")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data", "each Pod's AOF on its own claim"
    (redis_container,) = [c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "redis"]
    assert {"name": "data", "mountPath": "/data"} in redis_container["volumeMounts"]
    changed = find(
        helm.docs(*SENTINEL, "redis.appendfsync=everysec", "redis.streamNodeMaxBytes=256"),
        "ConfigMap",
        "task-processor-redis-sentinel",
    )
    assert {"appendfsync everysec", "stream-node-max-bytes 256"} <= set(changed["data"]["redis.conf"].splitlines())
    extra = find(helm.docs(*SENTINEL, "redis.extraArgs={--maxmemory,400mb}"), "StatefulSet")["spec"]["template"]
    (redis_container,) = [c for c in extra["spec"]["containers"] if c["name"] == "redis"]
    assert redis_container["args"] == ["/conf/redis.conf", "--maxmemory", "400mb"], "redis.extraArgs after the file"


def test_every_pod_and_container_is_locked_down(docs: list[dict[str, Any]]) -> None:
    problems = security_problems(docs)
    assert not problems, "insecure pod settings:\n" + "\n".join(problems)
    (volume,) = [v for v in redis_pod(docs)["spec"]["volumes"] if v["name"] == "conf"]
    assert volume["emptyDir"]["medium"] == "Memory", "redis.conf and sentinel.conf hold passwords: never on a disk"


# --- passwords and REDIS_URL ----------------------------------------------------------------------------------------


def test_passwords_are_only_in_the_secret(rendered: str, docs: list[dict[str, Any]]) -> None:
    secret = find(docs, "Secret", "task-processor-redis")["data"]
    assert set(secret) == {f"{user}-password" for user in SENTINEL_USERS}
    values = {key: base64.b64decode(value).decode() for key, value in secret.items()}
    assert len(set(values.values())) == len(values), "two users share a password"
    for key, value in values.items():
        assert re.fullmatch(r"[A-Za-z0-9]{32}", value), key
        assert value not in rendered, f"{key} is in plain text in the rendered manifest"
        holders = [d["metadata"]["name"] for d in docs if secret[key] in yaml.safe_dump(d)]
        assert holders == ["task-processor-redis"], f"{key} is in more than its Secret: {holders}"
    redis_passwords = {"REDIS_PASSWORD", "REDISCLI_AUTH", *(f"{user.upper()}_PASSWORD" for user in SENTINEL_USERS)}
    for where, spec, _ in pod_specs(docs):
        for c in containers(spec):
            plain = [*c.get("command", []), *c.get("args", []), *(e.get("value", "") for e in c.get("env", []))]
            assert not [p for p in plain if p in values.values()], f"{where} container {c['name']}: a password"
            for e in c.get("env", []):
                if e["name"] in redis_passwords:
                    assert e["valueFrom"]["secretKeyRef"]["name"] == "task-processor-redis", (where, e)
    (config,) = redis_pod(docs)["spec"]["initContainers"]
    keys = {e["valueFrom"]["secretKeyRef"]["key"] for e in config["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert keys == set(secret), "the init container writes every user's password hash"


def redis_env(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {
        f"{where} container {c['name']}": c["env"]
        for where, spec, _ in pod_specs(docs)
        for c in containers(spec)
        if any(e["name"] == "REDIS_URL" for e in c.get("env", []))
    }


def test_every_consumer_finds_the_master_through_the_sentinels(helm: Helm, docs: list[dict[str, Any]]) -> None:
    found = redis_env(docs)
    assert set(found) == set(CONSUMERS), found.keys()
    sentinels = ",".join(f"{host}:26379" for host in HOSTS)
    for where, env in found.items():
        names, role = [e["name"] for e in env], CONSUMERS[where]
        url = env[names.index("REDIS_URL")]["value"]
        assert url == f"redis+sentinel://{role}:$(REDIS_PASSWORD)@{sentinels}/task-processor/0", where
        assert "REDIS_PASSWORD" in names[: names.index("REDIS_URL")], f"{where}: $(REDIS_PASSWORD) defined too late"
        password = env[names.index("REDIS_PASSWORD")]["valueFrom"]["secretKeyRef"]
        assert password == {"name": "task-processor-redis", "key": f"{role}-password"}, where
        assert env_of({"env": env})["TASK_REPLICA_ACKS"]["value"] == "1", where
    more = redis_env(helm.docs(*SENTINEL, "redis.sentinel.replicaAcks=2", "redis.sentinel.masterSet=queue"))
    for where, env in more.items():
        assert env_of({"env": env})["TASK_REPLICA_ACKS"]["value"] == "2", where
        assert env_of({"env": env})["REDIS_URL"]["value"].endswith("/queue/0"), where
    for where, env in redis_env(helm.docs("dashboard.enabled=true")).items():
        assert "TASK_REPLICA_ACKS" not in env_of({"env": env}), f"{where}: replica acks without replicas"


def test_external_sentinels_are_the_ones_given(helm: Helm) -> None:
    docs = helm.docs(*EXTERNAL_SENTINEL, "dashboard.enabled=true")
    assert not [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "redis"]
    found = redis_env(docs)
    assert set(found) == set(CONSUMERS)
    for where, env in found.items():
        values = env_of({"env": env})
        assert values["REDIS_URL"]["value"] == (
            "redis+sentinel://:$(REDIS_PASSWORD)@sentinel-0.cache:26379,sentinel-1.cache:26379,10.0.0.7:26379/cache/0"
        ), where
        assert values["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "my-redis", "key": "redis-password"}
        assert values["TASK_REPLICA_ACKS"]["value"] == "1", where
        assert "REDIS_SENTINEL_PASSWORD" not in values, where
    user = redis_env(
        helm.docs(
            *EXTERNAL_SENTINEL,
            "externalRedis.sentinel.username=queue",
            "externalRedis.sentinel.passwordKey=queue-password",
            "externalRedis.sentinel.db=3",
            "externalRedis.sentinel.sentinelPasswordKey=sentinel-password",
            "externalRedis.sentinel.replicaAcks=0",
        )
    )
    for where, env in user.items():
        names = [e["name"] for e in env]
        values = env_of({"env": env})
        url = values["REDIS_URL"]["value"]
        assert url.startswith("redis+sentinel://queue:$(REDIS_PASSWORD)@sentinel-0.cache:26379,"), where
        assert url.endswith("/cache/3?sentinel_password=$(REDIS_SENTINEL_PASSWORD)"), where
        assert {"REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD"} <= set(names[: names.index("REDIS_URL")]), where
        assert values["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "my-redis", "key": "queue-password"}
        assert values["REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "my-redis",
            "key": "sentinel-password",
        }
        assert values["TASK_REPLICA_ACKS"]["value"] == "0"


# --- bad values -------------------------------------------------------------------------------------------------------


BAD_VALUES = {
    "two-pods": ((*SENTINEL, "redis.sentinel.replicas=2"), "at '/redis/sentinel/replicas': minimum: got 2, want 3"),
    "quorum": (
        (*SENTINEL, "redis.sentinel.quorum=4"),
        "redis.sentinel.quorum (4) is above redis.sentinel.replicas (3)",
    ),
    "acks": ((*SENTINEL, "redis.sentinel.replicaAcks=3"), "redis.sentinel.replicaAcks (3) must be below"),
    "anti-affinity": ((*SENTINEL, "redis.sentinel.antiAffinity=sometimes"), "/redis/sentinel/antiAffinity"),
    "master-set": ((*SENTINEL, "redis.sentinel.masterSet=my master"), "/redis/sentinel/masterSet"),
    "no-redis": ((*SENTINEL, "redis.enabled=false", "externalRedis.existingSecret=x"), "but redis.enabled is false"),
    "no-hosts": (
        ("redis.enabled=false", "externalRedis.existingSecret=x", "externalRedis.sentinel.enabled=true"),
        "externalRedis.sentinel.enabled needs externalRedis.sentinel.hosts",
    ),
    "no-port": ((*EXTERNAL_SENTINEL, "externalRedis.sentinel.hosts={sentinel-0}"), "/externalRedis/sentinel/hosts/0"),
    "both": ((*EXTERNAL_SENTINEL, "redis.enabled=true"), "externalRedis.sentinel.enabled is for your own Redis"),
    "role-urls": ((*EXTERNAL_SENTINEL, "externalRedis.roleSecretKeys.worker=url"), "leave roleSecretKeys empty"),
    "no-secret": ((*EXTERNAL_SENTINEL, "externalRedis.existingSecret="), "externalRedis.existingSecret is empty"),
}
"""Values the chart refuses (the schema, or the chart's own checks), and what its message says."""


@pytest.mark.parametrize(("settings", "complaint"), BAD_VALUES.values(), ids=BAD_VALUES)
def test_bad_sentinel_values_are_refused(helm: Helm, settings: tuple[str, ...], complaint: str) -> None:
    result = helm.run("template", "x", str(CHART), *(f"--set={s}" for s in settings))
    assert result.returncode != 0, f"helm accepted {settings}"
    assert complaint in result.stderr, f"the error does not say {complaint!r}:\n{result.stderr}"
