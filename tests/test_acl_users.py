"""The chart's Redis users (charts/task-processor/templates/redis/_acl.tpl), as rendered, on a real redis-server:
every role has its user and the default user is off, a restart from the AOF keeps every job, an empty password stops
the init container, only admin may destroy or expose Redis, each role reaches only its keys, and the probes log in
as admin. Each role doing its whole job as its user: tests/test_acl_roles.py; the redis-server with the rendered
ACL and the checks both use: tests/acl.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import cast

import pytest
import redis

from producer import Producer, Task
from tests.acl import (
    ROLES,
    AclRedis,
    acl_fixture,  # noqa: F401  (the acl fixture)
    chart_fixture,  # noqa: F401  (the chart fixture)
    refused,
    servers_fixture,  # noqa: F401  (the servers fixture)
)
from tests.chart import Helm, the_container
from tests.conftest import TASK_MODULES, decoded

ADMIN_ONLY = [c.split() for c in ("FLUSHALL", "FLUSHDB", "CONFIG GET *", "MODULE LIST", "DEBUG SLEEP 0", "SHUTDOWN")]
ADMIN_ONLY += [c.split() for c in ("KEYS *", "ACL LIST", "MONITOR", "CLIENT LIST", "SCRIPT FLUSH", "FUNCTION FLUSH")]
ADMIN_ONLY += [["SCAN", "0"]]
"""What only admin may run: the brief's list, plus what would list every connection, drop every script, or walk
every key name (SCAN is KEYS in installments: key patterns do not filter it)."""


def test_every_role_has_its_user_and_the_default_user_is_off(acl: AclRedis) -> None:
    for role in ROLES:
        assert acl.client(role).ping(), role
        assert f"user {role} on #" in acl.acl, f"{role}: no password hash in the file"
        assert acl.passwords[role] not in acl.acl, f"{role}'s password is in the ACL file in clear"
    with pytest.raises(redis.AuthenticationError):  # NOAUTH: without a user nothing works
        redis.Redis(port=acl.port).get("rq:queues")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=acl.port, username="worker", password=acl.passwords["producer"]).ping()
    rules = cast(list[str], acl.admin.acl_list())  # redis-py decodes ACL LIST's replies on every client
    (default,) = [line for line in rules if line.startswith("user default ")]
    assert default.startswith("user default off "), default


def test_a_redis_restarted_from_its_aof_keeps_every_job(chart: Helm, tmp_path: Path) -> None:
    """Redis replays its AOF's MULTI/EXEC blocks (every Lua script's and RQ pipeline's writes) as the default user
    and checks them against that user's ACL: a default user refused everything made a restart drop those jobs."""
    server = AclRedis(chart.docs(), tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    try:
        producer = Producer(server.url("producer"), modules=TASK_MODULES)
        jobs = [producer.enqueue("worker.examples.add", 1, 2)]
        jobs += producer.enqueue_many([Task("worker.examples.add", (i, 1)) for i in range(3)])
        server.restart_after_kill()
        queued = decoded(server.admin.lrange("rq:queue:default", 0, -1))
        assert queued == [job.id for job in jobs], "the AOF replay lost queued jobs"
        assert all(server.admin.exists(f"rq:job:{job.id}") for job in jobs), "the AOF replay lost job hashes"
    finally:
        server.close()


def test_an_empty_password_stops_the_init_container(acl: AclRedis, tmp_path: Path) -> None:
    result = acl.build_acl(tmp_path, {**acl.passwords, "autoscaler": ""})
    assert result.returncode != 0
    assert "autoscaler-password" in result.stderr, result.stderr
    assert not (tmp_path / "users.acl").exists(), "an ACL file was written anyway"


@pytest.mark.parametrize("role", ROLES[1:])
@pytest.mark.parametrize("command", ADMIN_ONLY, ids=lambda c: "-".join(c[:2]))
def test_only_admin_runs_admin_commands(acl: AclRedis, role: str, command: list[str]) -> None:
    acl.admin.set("rq:queue:kept", "x")
    assert refused(acl.client(role), *command), f"{role} may run {' '.join(command)}"
    assert acl.admin.get("rq:queue:kept") == b"x", "the data went"


def test_admin_runs_them(acl: AclRedis) -> None:
    """The refusals above are the users', not broken commands (all but those that would end the test)."""
    assert not [c for c in ADMIN_ONLY[2:] if c[0] not in ("SHUTDOWN", "MONITOR") and refused(acl.admin, *c)]


CONFINED = """
worker     yes HSET rq:worker:w1 state idle
worker     no  HSET task-processor:autoscaler:x state active
worker     no  SET myapp:data 1
autoscaler yes HSET task-processor:autoscaler:x state active
autoscaler yes SREM rq:workers rq:worker:gone
autoscaler no  HSET rq:worker:w1 state idle
autoscaler no  SET rq:suspended 1
autoscaler no  PUBLISH rq:pubsub:w1 stop
producer   yes HSET rq:job:j1 status queued
producer   yes HGETALL rq:worker:w1
producer   no  HSET rq:worker:w1 state idle
producer   no  SADD rq:workers rq:worker:fake
producer   no  SET rq:scheduler-lock:default me
producer   no  HSET task-processor:autoscaler:x state active
producer   no  PUBLISH rq:pubsub:w1 stop
dashboard  yes HGETALL rq:job:j1
dashboard  no  HSET rq:job:j1 status queued
dashboard  no  DEL rq:queue:default
dashboard  no  ZADD rq:failed:default 1 j1
dashboard  no  SCRIPT LOAD return
dashboard  no  GET task-processor:autoscaler:x
"""
"""Each role's reach beyond its job: allowed (yes) or refused (no), with the read-only dashboard."""


@pytest.mark.parametrize("row", CONFINED.strip().splitlines())
def test_each_role_writes_only_its_keys(acl: AclRedis, row: str) -> None:
    role, allowed, *command = row.split()
    assert refused(acl.client(role), *command) is (allowed == "no"), row


def test_the_probes_log_in_as_admin(chart: Helm, acl: AclRedis) -> None:
    redis_pod = the_container(chart.docs(), "StatefulSet", "task-processor-redis")
    for probe in ("readinessProbe", "livenessProbe"):
        command = [part.replace("-p 6379", f"-p {acl.port}") for part in redis_pod[probe]["exec"]["command"]]
        for role, passes in (("admin", True), ("worker", False)):
            env = {"PATH": os.environ["PATH"], "REDISCLI_AUTH": acl.passwords[role]}
            result = subprocess.run(command, env=env, capture_output=True, timeout=10, check=False)
            assert (result.returncode == 0) is passes, f"{probe} as {role}: {result}"
