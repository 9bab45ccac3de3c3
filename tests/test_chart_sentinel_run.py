"""The chart's Sentinel configuration run for real: the rendered init script, redis.conf, sentinel.conf and ACL
files as three "Pods" on three loopback addresses. The first is the master and the others, told so by its Sentinel,
replicate it with the replica user; the Sentinels watch them with the sentinel user and find each other; the helm
test Pod's rendered environment enqueues through them, waiting for a replica; a restarted master keeps its AOF's
jobs; after a failover, a restarted Pod rejoins as a replica of the new master. (What helm renders is checked in
test_chart_sentinel.py.)
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from producer import Producer
from producer.commands.redis_server import free_port
from task_processor.settings import Settings
from tests.chart import (
    SENTINEL,
    Helm,
    env_of,
    find,
)
from tests.conftest import wait_for
from tests.test_chart_sentinel import HOSTS, SENTINEL_USERS, redis_pod

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
        view = as_user(pod, "admin", sentinel_port).sentinel_master("task-processor")
        assert isinstance(view, dict), view
        return view

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

            def sees_all(pod: LocalPod = pod) -> dict[str, Any] | bool:
                return (v := sentinel_view(pod))["num-other-sentinels"] == 2 and v["num-slaves"] == 2 and v

            view = wait_for(
                sees_all,
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
