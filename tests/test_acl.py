"""The chart's Redis users (charts/task-processor/templates/redis/_acl.tpl), as rendered, on a real redis-server.

The ACL file and the script that fills in each role's password hash come from `helm template`'s ConfigMap and run
as the Redis Pod's init container runs them, for a redis-server of our own (the session's has no users). Every role
then does its whole job as its own user, with real processes, and no role but admin may destroy or expose Redis.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from producer import Producer, Task
from producer.commands.redis_server import free_port
from producer.errors import TaskFailedError
from producer.scaling.autoscaler import Autoscaler
from producer.scaling.local.deployment import LocalDeployment
from producer.scaling.policy import Bounds
from task_processor.connection import connect
from task_processor.settings import Settings
from tests.chart import Helm, find, the_container
from tests.conftest import BIN, TASK_MODULES, Proc, decoded, running, wait_for
from tests.kubeapi.server import HELM

ROLES = ("admin", "worker", "autoscaler", "producer", "dashboard")
ADMIN_ONLY = [c.split() for c in ("FLUSHALL", "FLUSHDB", "CONFIG GET *", "MODULE LIST", "DEBUG SLEEP 0", "SHUTDOWN")]
ADMIN_ONLY += [c.split() for c in ("KEYS *", "ACL LIST", "MONITOR", "CLIENT LIST", "SCRIPT FLUSH", "FUNCTION FLUSH")]
ADMIN_ONLY += [["SCAN", "0"]]
"""What only admin may run: the brief's list, plus what would list every connection, drop every script, or walk
every key name (SCAN is KEYS in installments: key patterns do not filter it)."""

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


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    if not HELM.exists():
        pytest.skip(f"{HELM} missing: run scripts/k8s-tools")
    return Helm(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def servers(chart: Helm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., AclRedis]]:
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


@pytest.fixture
def acl(servers: Callable[..., AclRedis]) -> AclRedis:
    """The default render: dashboard.readOnly is true."""
    return servers()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
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


# --- the users ---------------------------------------------------------------------------------------------------


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


# --- each role's whole job -------------------------------------------------------------------------------------------


def test_producers_and_workers_do_their_whole_job(chart: Helm, acl: AclRedis, start: Callable[..., Proc]) -> None:
    producer = Producer(acl.url("producer"), modules=TASK_MODULES)
    start(acl.url("worker"), "task-worker", "--name", "single")
    start(acl.url("worker"), "task-worker", "--concurrency", "2")
    one = producer.enqueue("worker.examples.add", 2, 3)
    many = producer.enqueue_many([Task("worker.examples.add", (i, 10)) for i in range(4)])
    flaky = producer.enqueue("worker.examples.flaky", 1, retries=1, retry_backoff=1)  # due through the scheduler
    failing = producer.enqueue("worker.examples.fail", "disk full", retries=1, retry_backoff=1)
    assert producer.wait([one, *many, flaky], timeout=30) == [5, 10, 11, 12, 13, 2]
    with pytest.raises(TaskFailedError, match="disk full"):
        producer.wait([failing], timeout=30)
    assert failing.get_meta(refresh=True)["attempt"] == 2, "the failure was not retried once"
    # The job options: scheduled and deferred registries, dependents sets, the canceled registry.
    parent = producer.enqueue("worker.examples.add", 1, 1, meta={"k": 1}, job_id="parent", unique=True)
    child = producer.enqueue("worker.examples.add", 2, 2, depends_on=parent, ttl=600)
    later = producer.enqueue_in(1, "worker.examples.add", 3, 3)
    producer.cancel(producer.enqueue_in(60, "worker.examples.add", 4, 4).id)
    assert producer.wait([parent, child, later], timeout=30) == [2, 4, 6]

    job_id = cli(acl.url("producer"), "task-producer", "enqueue", "worker.examples.add", "1", "2").stdout.strip()
    assert cli(acl.url("producer"), "task-producer", "wait", job_id).stdout.strip() == "3"
    cli(acl.url("worker"), "task-producer", "status")  # what NOTES.txt says to run in a worker Pod
    cli(acl.url("worker"), "task-worker", "check", "--name", "single")  # the worker Pods' liveness probe
    status = json.loads(cli(acl.url("producer"), "task-producer", "status", "--json").stdout)
    counts = {k: status["queues"]["default"][k] for k in ("queued", "failed", "finished")}
    assert counts == {"queued": 0, "failed": 1, "finished": 10}, counts
    requeued = cli(acl.url("producer"), "task-producer", "requeue", "--failed", "--all").stdout.split()
    assert requeued == [failing.id]
    wait_for(lambda: failing.get_meta(refresh=True)["attempt"] == 3, timeout=20, what="the requeued job's run")
    wait_for(lambda: failing.get_status(refresh=True) == "failed", timeout=20, what="it to fail again")

    # The helm test hook Pod's own script, as the producer user it runs as.
    (pod,) = [d for d in chart.docs() if d["kind"] == "Pod"]
    hook = pod["spec"]["containers"][0]["args"][0]
    env = role_env(acl.url("producer"), TEST_TIMEOUT="20")
    result = subprocess.run([str(BIN / "python"), "-c", hook], env=env, capture_output=True, text=True, timeout=60)
    assert "result 5, 3 worker(s) registered" in result.stdout, result.stdout + result.stderr
    nothing_refused(acl)


def test_the_autoscaler_scales_schedules_and_reaps(acl: AclRedis, start: Callable[..., Proc], tmp_path: Path) -> None:
    """The whole fleet is lost with a job running and a job coming due: the autoscaler alone (no worker is left to
    reap or to schedule) puts both on the queue, scales up from zero, runs a retry's due time, and scales down."""
    producer = Producer(acl.url("producer"), modules=TASK_MODULES)
    own = connect(acl.url("autoscaler"))
    workers_env = Settings(task_modules=(TASK_MODULES,)).child_env(REDIS_URL=acl.url("worker"), LOG_FORMAT="json")
    deployment = LocalDeployment(own, workers_env, ("default",), log_file=tmp_path / "w.log").start()
    autoscaler = Autoscaler(own, ("default",), deployment, Bounds(0, 2, 10, 1.0), interval=0.1)
    try:
        autoscaler.step()  # takes RQ's scheduler lock first, as a long-running autoscaler holds it
        lock = acl.admin.get("rq:scheduler-lock:default")
        assert autoscaler.housekeeper is not None  # Autoscaler's housekeeping is on by default
        assert lock == autoscaler.housekeeper.due_jobs._scheduler.name.encode(), (
            "the autoscaler could not take the lock"
        )
        victim = start(acl.url("worker"), "task-worker", TASK_ABANDON_AFTER="3")
        lost = producer.enqueue("worker.examples.sleep", 2)
        wait_for(lambda: lost.get_status(refresh=True) == "started", timeout=20, what="the job to start")
        os.killpg(victim.pid, signal.SIGKILL)
        wait_for(lambda: not acl.admin.zcount("rq:wip:default", time.time(), "+inf"), what="the lease to lapse")
        later = producer.queue().enqueue_in(timedelta(seconds=1), "worker.examples.add", 1, 2)
        with running(autoscaler):
            assert producer.wait([lost, later], timeout=60) == [2, 3]
            assert acl.admin.hget(f"rq:job:{lost.id}", "abandoned") == b"1", "not requeued by the reaper"
            first = autoscaler.events[0]  # from zero, the dead worker's job counted as queued, not as running
            assert (first.previous, first.queued > 0, first.in_flight) == (0, True, 0), first
            wait_for(lambda: deployment.get_replicas() == 0, timeout=20, what="scale-down to zero")
            retried = producer.enqueue("worker.examples.flaky", 1, retries=1, retry_backoff=3)
            assert producer.wait([retried], timeout=30) == [2], "the retry did not come due"
            # What NOTES.txt tells ops to run in the autoscaler's Pod, with its credentials.
            noop = cli(acl.url("autoscaler"), "task-producer", "enqueue", "worker.examples.noop").stdout.strip()
            cli(acl.url("autoscaler"), "task-producer", "status")
            cli(acl.url("producer"), "task-producer", "wait", noop)
            facts = cli(acl.url("producer"), "task-producer", "status", "--json", WORKER_DEPLOYMENT="local").stdout
            assert json.loads(facts)["autoscaler"]["state"] == "active", facts
            wait_for(lambda: not deployment.running(), timeout=30, what="scale-down to zero again")
    finally:
        deployment.close(timeout=10)
    assert acl.admin.smembers("rq:workers") == set(), "the dead worker was not forgotten"
    nothing_refused(acl)


# --- the dashboard -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only", "read-write"])
def test_the_dashboard_shows_everything_as_its_user(
    chart: Helm, servers: Callable[..., AclRedis], start: Callable[..., Proc], read_only: bool
) -> None:
    mode = f"dashboard.readOnly={str(read_only).lower()}"
    acl = servers(mode)
    producer = Producer(acl.url("producer"), modules=TASK_MODULES)
    start(acl.url("worker"), "task-worker", "--name", "busy-one")
    done = producer.enqueue("worker.examples.add", 1, 2)
    failed = producer.enqueue("worker.examples.fail", "disk full")
    producer.wait([done], timeout=20)
    wait_for(lambda: failed.get_status(refresh=True) == "failed", timeout=20, what="the failed job")
    busy = producer.enqueue("worker.examples.sleep", 60)
    wait_for(lambda: busy.get_status(refresh=True) == "started", timeout=20, what="the busy job")
    producer.enqueue("worker.examples.noop")

    port = free_port()
    docs = chart.docs("dashboard.enabled=true", f"dashboard.port={port}", mode)
    container = the_container(docs, "Deployment", "task-processor-dashboard")
    assert ("--read-only" in container["command"]) is read_only
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e and e["name"] != "REDIS_URL"}
    login = {"RQ_DASHBOARD_USERNAME": "ops", "RQ_DASHBOARD_PASSWORD": "pw"}
    start(acl.url("dashboard"), *container["command"], **plain, **login)
    auth = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}

    def call(path: str, method: str = "GET") -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=auth, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def data(path: str) -> Any:
        status, body = call(path)
        assert status == 200, f"GET {path} answered {status}: {body[-500:]!r}"
        return json.loads(body)

    wait_for(lambda: call("/0/data/queues.json")[0], timeout=20, what="the dashboard to listen")
    (queue,) = data("/0/data/queues.json")["queues"]
    counts = {k: queue[f"{k}_job_registry_count"] for k in ("started", "failed", "finished")}
    assert (queue["count"], counts) == (1, {"started": 1, "failed": 1, "finished": 1}), queue
    (worker,) = data("/0/data/workers.json")["workers"]
    assert worker["current_job"]["job_id"] == busy.id
    for registry, job in (("failed", failed), ("finished", done), ("started", busy)):
        listed = data(f"/0/data/jobs/default/{registry}/8/asc/1.json")["jobs"]
        assert [j["id"] for j in listed] == [job.id], registry
    detail = data(f"/0/data/job/{failed.id}.json")
    assert detail["exc_info"].strip().splitlines()[-1] == "RuntimeError: disk full"
    assert [call(page)[0] for page in ("/", "/0/view/workers", f"/0/view/job/{failed.id}")] == [200] * 3

    nothing_refused(acl)
    status, _ = call(f"/job/{failed.id}/requeue", "POST")
    if read_only:
        assert status == 403
        assert failed.get_status(refresh=True) == "failed"
    else:  # the dashboard's user writes job data (RQ's Lua included), and no more
        assert status == 200
        assert failed.get_status(refresh=True) == "queued"
        assert call("/queue/default/queued/empty", "POST")[0] == 200
        assert acl.admin.llen("rq:queue:default") == 0, "the queue was not emptied"
        assert call("/queue/default/finished/empty", "POST")[0] == 200
        assert acl.admin.zcard("rq:finished:default") == 0
        nothing_refused(acl)
        assert refused(acl.client("dashboard"), "SREM", "rq:workers", "rq:worker:busy-one")
