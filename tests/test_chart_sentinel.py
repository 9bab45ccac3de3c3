"""Redis with Sentinel in the chart: the in-chart Redis as three Pods with a Sentinel each (redis.sentinel), and a
Redis of one's own behind Sentinels (externalRedis.sentinel).

What helm renders, parsed: lint, the Kubernetes schemas, three Redis Pods spread over nodes under a disruption budget,
AOF, passwords only in the Secret, secure pods, every consumer's redis+sentinel:// REDIS_URL and TASK_REPLICA_ACKS,
and bad values refused. Then the rendered init script, redis.conf, sentinel.conf and ACL files run for real, three
"Pods" on three loopback addresses: the first is the master and the others, told so by its Sentinel, replicate it
with the replica user; the Sentinels watch them with the sentinel user and find each other; the helm test Pod's
rendered environment enqueues through them, waiting for a replica; a restarted master keeps its AOF's jobs; after a
failover, a restarted Pod rejoins as a replica of the new master.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.sentinel
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from producer import Producer
from producer.commands.redis_server import free_port
from task_processor.settings import Settings
from tests.chart import (
    CHART,
    EXTERNAL_SENTINEL,
    SENTINEL,
    Helm,
    containers,
    env_of,
    find,
    kubernetes_validate,
    new_helm,
    pod_specs,
    selects,
)
from tests.conftest import wait_for
from tests.test_chart import KUBE_VERSIONS, security_problems

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
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return new_helm(tmp_path_factory)


@pytest.fixture(scope="module")
def rendered(helm: Helm) -> str:
    """The sentinel render every test below reads (dashboard on, so that all four consumers are there)."""
    return helm.template(*SENTINEL, "dashboard.enabled=true")


@pytest.fixture(scope="module")
def docs(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if d]


def redis_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return find(docs, "StatefulSet", "task-processor-redis")["spec"]["template"]


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


# --- the rendered configuration, run ------------------------------------------------------------------------------


class LocalPod:
    """One Redis Pod of the StatefulSet on this machine: its init container's script with its rendered environment,
    then redis-server and its Sentinel with the files that script wrote and the containers' rendered arguments.

    Pod <i> is the loopback address 127.0.0.<i+1> (REDIS_HOSTS lists those instead of the DNS names); every Pod uses
    the same two ports, as in the cluster. Added to the rendered arguments: --bind to that address (three Pods share
    this host) and, so that a replica's full sync starts at once rather than after Redis' default 5 s wait for more
    replicas, --repl-diskless-sync-delay 0.
    """

    def __init__(self, spec: dict[str, Any], config: dict[str, dict[str, str]], ordinal: int, base: Path) -> None:
        self.spec, self.ordinal = spec, ordinal
        self.address = f"127.0.0.{ordinal + 1}"
        self.root = base / f"pod-{ordinal}"
        self.dirs = {name: self.root / name for name in ("etc-acl", "etc-sentinel", "conf", "data")}
        for path in self.dirs.values():
            path.mkdir(parents=True)
        for directory, files in (("etc-acl", config["acl"]), ("etc-sentinel", config["sentinel"])):
            for name, text in files.items():  # as the ConfigMap volume shows them
                (self.dirs[directory] / name).write_text(text)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def init(self, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        (container,) = self.spec["initContainers"]
        run_env = {"PATH": os.environ["PATH"], "POD_NAME": f"task-processor-redis-{self.ordinal}"}
        for entry in container["env"]:
            if "value" in entry:
                run_env[entry["name"]] = entry["value"]
            elif "secretKeyRef" in entry["valueFrom"]:
                run_env[entry["name"]] = env[entry["valueFrom"]["secretKeyRef"]["key"]]
        assert (run_env["ACL_DIR"], run_env["TEMPLATE_DIR"]) == ("/etc/redis-acl", "/etc/redis-sentinel")
        run_env |= {name: value for name, value in env.items() if not name.endswith("-password")}
        run_env |= {"ACL_DIR": str(self.dirs["etc-acl"]), "TEMPLATE_DIR": str(self.dirs["etc-sentinel"])}
        run_env |= {"CONF_DIR": str(self.dirs["conf"]), "DATA_DIR": str(self.dirs["data"])}
        command = [arg.replace("/etc/redis-sentinel", str(self.dirs["etc-sentinel"])) for arg in container["command"]]
        return subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=30, check=False)

    def start(self, name: str) -> None:
        (container,) = [c for c in self.spec["containers"] if c["name"] == name]
        args = [arg.replace("/conf/", f"{self.dirs['conf']}/") for arg in container["command"] + container["args"]]
        args += ["--bind", self.address, "--logfile", str(self.root / f"{name}.log")]
        if name == "redis":
            args += ["--repl-diskless-sync-delay", "0"]
        self.processes[name] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        self.processes.clear()


def client_env(
    docs: list[dict[str, Any]], pods: list[LocalPod], passwords: dict[str, str], sentinel_port: int
) -> dict[str, str]:
    """The helm test Pod's rendered environment, with what Kubernetes would fill in (REDIS_PASSWORD from the Secret,
    expanded into REDIS_URL) and each Redis Pod's DNS name and Sentinel port replaced by the local Pod's."""
    (container,) = find(docs, "Pod", "task-processor-test")["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    password = passwords[env_of(container)["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"]]
    url = env["REDIS_URL"].replace("$(REDIS_PASSWORD)", password)
    for host, pod in zip(HOSTS, pods, strict=True):
        url = url.replace(f"{host}:26379", f"{pod.address}:{sentinel_port}")
    assert "svc" not in url, url
    return {**env, "REDIS_URL": url, "POD_NAME": "helm-test"}


def answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_the_rendered_configuration_runs_fails_over_and_a_restarted_pod_rejoins(helm: Helm, tmp_path: Path) -> None:
    docs = helm.docs(*SENTINEL)
    spec = redis_pod(docs)["spec"]
    config = {
        "acl": find(docs, "ConfigMap", "task-processor-redis-acl")["data"],
        "sentinel": find(docs, "ConfigMap", "task-processor-redis-sentinel")["data"],
    }
    passwords = {f"{user}-password": secrets.token_hex(16) for user in SENTINEL_USERS}
    redis_port = free_port()
    sentinel_port = wait_for(lambda: (port := free_port()) != redis_port and port, what="a second port")
    pods = [LocalPod(spec, config, i, tmp_path) for i in range(3)]
    env = {
        **passwords,
        "REDIS_HOSTS": " ".join(pod.address for pod in pods),
        "REDIS_PORT": str(redis_port),
        "SENTINEL_PORT": str(sentinel_port),
    }

    def as_user(pod: LocalPod, user: str, port: int = redis_port) -> redis.Redis:
        password = passwords[f"{user}-password"]
        return redis.Redis(pod.address, port, username=user, password=password, socket_timeout=5, decode_responses=True)

    def sentinel_view(pod: LocalPod) -> dict[str, Any]:
        return as_user(pod, "admin", sentinel_port).sentinel_master("task-processor")

    def init(pod: LocalPod, master: str) -> str:
        result = pod.init(env)
        assert result.returncode == 0, f"pod {pod.ordinal}'s init failed:\n{result.stdout}\n{result.stderr}"
        role = "the master" if master == pod.address else f"a replica of {master}"
        assert f"{pod.address} starts as {role}" in result.stdout, result.stdout
        for name in ("redis.conf", "sentinel.conf", "users.acl", "sentinel-users.acl"):
            written = (pod.dirs["conf"] / name).read_text()
            assert passwords["admin-password"] not in written, f"{name}: the admin password in clear"
        return result.stdout

    def start(pod: LocalPod, name: str) -> None:
        pod.start(name)
        port = redis_port if name == "redis" else sentinel_port
        wait_for(lambda: answers(as_user(pod, "admin", port)), what=f"pod {pod.ordinal}'s {name}")

    try:
        # Pod 0 first (the StatefulSet's order): no Sentinel answers yet, so it is the master; then pods 1 and 2,
        # told so by pod 0's Sentinel. Their Sentinels start once both replicas are attached: a Sentinel sees the
        # master's replicas in its INFO, which it reads every 10 s.
        init(pods[0], "127.0.0.1")
        start(pods[0], "redis")
        start(pods[0], "sentinel")
        for pod in pods[1:]:
            init(pod, "127.0.0.1")
            start(pod, "redis")
        master = as_user(pods[0], "admin")
        # The replicas log in as "replica", the Sentinels reach Redis as "sentinel" and find each other.
        wait_for(lambda: master.info("replication")["connected_slaves"] == 2, what="two replicas")
        for pod in pods[1:]:
            start(pod, "sentinel")
        for pod in pods[1:]:
            view = wait_for(
                lambda pod=pod: (v := sentinel_view(pod))["num-other-sentinels"] == 2 and v["num-slaves"] == 2 and v,
                what=f"pod {pod.ordinal}'s Sentinel to see the other two and both replicas",
            )
            assert view["ip"] == "127.0.0.1", view
            assert "s_down" not in view["flags"], view
        assert master.config_get("appendonly") == {"appendonly": "yes"}

        # The helm test Pod's environment as rendered, its Pods' DNS names turned into this test's addresses: the
        # project's client finds the master through the Sentinels, and the enqueue waits for a replica (WAIT).
        settings = Settings.from_env(client_env(docs, pods, passwords, sentinel_port))
        assert settings.replica_acks == 1
        job = Producer.from_env(settings).enqueue("worker.examples.add", 2, 3)
        # A client that logs in to the Sentinels with its Redis user finds the master too.
        discovery = redis.sentinel.Sentinel(
            [(pod.address, sentinel_port) for pod in pods],
            sentinel_kwargs={"username": "worker", "password": passwords["worker-password"], "socket_timeout": 5},
        )
        assert discovery.discover_master("task-processor") == ("127.0.0.1", redis_port)
        with pytest.raises(redis.AuthenticationError):  # NOAUTH: Redis' default user is off
            redis.Redis(pods[0].address, redis_port, retry=Retry(NoBackoff(), 0)).get("rq:queues")
        anonymous = redis.Redis(pods[1].address, sentinel_port, socket_timeout=5)
        for command in (("SENTINEL", "FAILOVER", "task-processor"), ("SENTINEL", "REMOVE", "task-processor")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                anonymous.execute_command(*command)

        # Pod 0, the master, restarts before the Sentinels find it down: they still name it, so it is the master
        # again, with every job its AOF holds (replayed as the default user: nothing of it may be refused).
        pods[0].stop()
        assert "the Sentinel on 127.0.0.2 names 127.0.0.1 as the master" in init(pods[0], "127.0.0.1")
        start(pods[0], "redis")
        start(pods[0], "sentinel")
        assert as_user(pods[0], "admin").lrange("rq:queue:default", 0, -1) == [job.id], "the AOF lost the job"
        wait_for(lambda: as_user(pods[0], "admin").info("replication")["connected_slaves"] == 2, what="replicas back")

        # A failover (forced by the admin: no waiting for down-after-milliseconds) promotes a replica.
        as_user(pods[1], "admin", sentinel_port).execute_command("SENTINEL", "FAILOVER", "task-processor")
        new_master = wait_for(
            lambda: (a := sentinel_view(pods[1])["ip"]) != "127.0.0.1" and a, timeout=20, what="a new master"
        )

        # Pod 0, the old master, restarts: its init asks the Sentinels, and it comes back as the new master's replica.
        pods[0].stop()
        init(pods[0], new_master)
        start(pods[0], "redis")
        start(pods[0], "sentinel")
        wait_for(
            lambda: as_user(pods[0], "admin").info("replication").get("master_link_status") == "up",
            what="the restarted Pod to replicate the new master",
        )
        assert as_user(pods[0], "admin").lrange("rq:queue:default", 0, -1) == [job.id], "the enqueue was lost"
        # Nothing the replicas, the Sentinels or the clients sent was refused, but the anonymous attempts above.
        refusals = {
            (pod.address, port, entry["username"], entry["object"])
            for pod in pods
            for port in (redis_port, sentinel_port)
            for entry in as_user(pod, "admin", port).acl_log()
        }
        expected = {("127.0.0.2", sentinel_port, "default", f"sentinel|{c}") for c in ("failover", "remove")}
        assert refusals == expected, f"refused (address, port, user, command): {sorted(refusals - expected)}"
    finally:
        for pod in pods:
            pod.stop()
