"""What the Redis ACL tests share (tests/test_acl_users.py, tests/test_acl_roles.py, and tests/test_chart_cron.py):
a redis-server running the ACL file the chart renders (charts/task-processor/templates/redis/_acl.tpl), filled in by
the chart's own init script as the Redis Pod's init container runs it, with a password per role; fixtures that start
one per module and render variant, and project commands as a role; and the checks that Redis refused a command, or
refused nothing. A test module that uses the fixtures imports ``chart_fixture``, ``servers_fixture``,
``acl_fixture`` and ``start_fixture``."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producer.commands.redis_server import free_port
from tests.chart import Helm, find
from tests.conftest import BIN, TASK_MODULES, Proc, wait_for
from tests.kubeapi.server import HELM

ROLES = ("admin", "worker", "autoscaler", "producer", "dashboard")

TOLERATED: set[tuple[str, str, str]] = set()
"""Refusals a role gets over: none (the worker learns its address with CLIENT INFO, not RQ's CLIENT LIST)."""


class AclRedis:
    """redis-server with the ACL file the chart renders, filled in by the chart's own init script."""

    def __init__(self, docs: list[dict[str, Any]], directory: Path, *extra: str) -> None:
        config = find(docs, "ConfigMap", "task-processor-redis-acl")["data"]
        self.template, self.script = config["users.acl"], config["build-acl.sh"]
        init = find(docs, "StatefulSet", "task-processor-redis")["spec"]["template"]["spec"]["initContainers"][0]
        self.init_env = {e["name"]: e for e in init["env"]}
        self.passwords = {role: secrets.token_hex(16) for role in ROLES}
        assert (built := self.build_acl(directory, self.passwords)).returncode == 0, built.stderr
        self.acl = (directory / "users.acl").read_text()
        self.port = free_port()
        args = ["--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(directory), "--save", ""]
        args += ["--aclfile", str(directory / "users.acl"), "--logfile", str(directory / "redis.log")]
        # DEBUG and MODULE open to local clients, so that what refuses them below is the ACL alone.
        args += ["--enable-debug-command", "local", "--enable-module-command", "local", *extra]
        self.args = args
        self.process = subprocess.Popen(["redis-server", *args])
        wait_for(self._answers, what="redis-server with the chart's ACL")
        self.admin = self.client("admin")

    def restart_after_kill(self) -> None:
        """SIGKILL, then the same server again on the same directory (its AOF, when it keeps one)."""
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = subprocess.Popen(["redis-server", *self.args])
        wait_for(self._answers, what="redis-server restarted with the chart's ACL")

    def build_acl(self, directory: Path, passwords: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """The init container's command and environment (its Secret's keys), with the paths in ``directory``."""
        (directory / "users.acl.in").write_text(self.template)
        (directory / "build-acl.sh").write_text(self.script)
        env = {"PATH": os.environ["PATH"], "ACL_TEMPLATE": str(directory / "users.acl.in")}
        env["ACL_FILE"] = str(directory / "users.acl")
        for name, entry in self.init_env.items():
            if "valueFrom" in entry:  # <ROLE>_PASSWORD from the Secret's key <role>-password
                role = entry["valueFrom"]["secretKeyRef"]["key"].removesuffix("-password")
                assert name == f"{role.upper()}_PASSWORD", name
                env[name] = passwords[role]
        return subprocess.run(["sh", str(directory / "build-acl.sh")], env=env, capture_output=True, text=True)

    def _answers(self) -> bool:
        try:
            return bool(self.client("admin").ping())
        except redis.ConnectionError:
            assert self.process.poll() is None, "redis-server refused the chart's ACL file"
            return False

    def url(self, role: str) -> str:
        return f"redis://{role}:{self.passwords[role]}@127.0.0.1:{self.port}/0"

    def client(self, role: str) -> redis.Redis:
        return redis.Redis.from_url(self.url(role))

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module", name="chart")
def chart_fixture(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    if not HELM.exists():
        pytest.skip(f"{HELM} missing: run scripts/k8s-tools")
    return Helm(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module", name="servers")
def servers_fixture(chart: Helm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., AclRedis]]:
    """One redis-server per rendered variant of the ACL (dashboard.readOnly true or false), for the module."""
    started: dict[tuple[str, ...], AclRedis] = {}

    def get(*sets: str) -> AclRedis:
        if sets not in started:
            started[sets] = AclRedis(chart.docs(*sets), tmp_path_factory.mktemp("acl-redis"))
        server = started[sets]
        server.admin.flushall()
        server.admin.acl_log_reset()
        return server

    yield get
    for server in started.values():
        server.close()


@pytest.fixture(name="acl")
def acl_fixture(servers: Callable[..., AclRedis]) -> AclRedis:
    """The default render: dashboard.readOnly is true."""
    return servers()


@pytest.fixture(name="start")
def start_fixture(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start a project command as a role (REDIS_URL carries that role's user); all are killed at the end."""
    procs: list[Proc] = []

    def spawn(url: str, *args: str, **extra: str) -> Proc:
        proc = Proc([str(BIN / args[0]), *args[1:]], role_env(url, **extra), tmp_path / f"p{len(procs)}")
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        proc.stop()


def role_env(url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "TASK_", "AUTOSCALE_", "LOG_"))}
    path = f"{BIN}{os.pathsep}{base['PATH']}"
    return {**base, "PATH": path, "REDIS_URL": url, "TASK_MODULES": TASK_MODULES, "LOG_FORMAT": "json", **extra}


def cli(url: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = role_env(url, **extra)
    result = subprocess.run([str(BIN / args[0]), *args[1:]], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(args)} failed as {url.split(':')[1][2:]}:\n{result.stderr}"
    return result


def refused(client: redis.Redis, *command: str) -> bool:
    """True when Redis answers NOPERM (the user may not run it, or not on that key or channel)."""
    try:
        client.execute_command(*command)
    except redis.ResponseError as exc:
        return isinstance(exc, redis.exceptions.NoPermissionError) or str(exc).startswith("NOPERM")
    return False


def nothing_refused(acl: AclRedis) -> None:
    """No command of the job was refused, not even one the code swallows (as redis-py does CLIENT SETINFO's)."""
    seen = {(e["username"], e["reason"], e["object"]) for e in acl.admin.acl_log()} - TOLERATED
    assert not seen, f"Redis refused (user, reason, object): {sorted(seen)}"
