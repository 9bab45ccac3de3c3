"""Redis behind Sentinel (``redis+sentinel://``) and TASK_REPLICA_ACKS, with real redis-servers and Sentinels
(tests/sentinel.py), real ``task-worker`` and producer processes, and real failovers.

The fault test SIGKILLs the master twice under load (producers enqueueing with TASK_REPLICA_ACKS=1, workers draining)
and counts every acknowledged task; the replica-acks test cuts the replicas off to show what an enqueue without them
would have risked.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job

from producer import DuplicateJobError, Producer, ReplicaAcksError, Task, TaskProcessorError
from producer.commands.redis_server import free_port
from task_processor import keys, scripts
from task_processor.connection import Client, connect, redact_url, scrub
from task_processor.errors import RedisUnavailableError
from task_processor.sentinel import SentinelURL, master_client
from task_processor.settings import Settings
from tests.bad_input import one_error_line, run_all
from tests.conftest import Proc, exc_string, local_fleet, wait_for
from tests.dashboard import answering, get_json
from tests.faults import END_LOST, REQUEUED, printed, said, settle
from tests.sentinel import SERVICE, SentinelCluster, kill
from worker.batching import BatchedCalls

pytestmark = pytest.mark.fault

PASSWORD = "s3cret/pw@x"  # an unencoded '/' and '@' in it: the URL form must still read (and hide) it whole
MOVED = "Redis master moved; following it"
ABANDON_AFTER = {"TASK_ABANDON_AFTER": "6"}
"""Heartbeats every 2 s: a failover (about 2 s here) never lets a running job's started entry lapse."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    with SentinelCluster(tmp_path / "redis", replicas=2, password=PASSWORD) as started:
        yield started


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[SentinelCluster]:
    """A master and one replica: what an enqueue acknowledged by one replica is on, whichever fails."""
    with SentinelCluster(tmp_path / "redis", replicas=1, password=PASSWORD) as started:
        yield started


def enqueued_after(producer: Producer, job_id: str, since: float, timeout: float = 30) -> float:
    """Enqueue ``job_id`` (unique: an earlier try that landed counts) until acknowledged; seconds since ``since``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            producer.enqueue("worker.examples.noop", job_id=job_id, unique=True)
        except DuplicateJobError:
            pass
        except TaskProcessorError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
            continue
        return time.monotonic() - since


def finished_after(conn: redis.Redis, job_id: str, since: float) -> float:
    def finished() -> bool:
        try:
            return conn.hget(keys.job(job_id), "status") == b"finished"
        except redis.ConnectionError:
            return False

    wait_for(finished, timeout=30, what=f"{job_id} to finish")
    return time.monotonic() - since


def moves(proc: Proc) -> list[dict[str, Any]]:
    """The process's own lines saying the master moved (RQ's scheduler, a child, writes to the same log)."""
    return [line for line in said(proc, MOVED) if line["pid"] == proc.pid]


def ran(workers: list[Proc]) -> dict[str, list[dict[str, Any]]]:
    """Each job's lines from the workers' logs: one per run (ended, or with its end lost)."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for worker in workers:
        for line in said(worker, "job"):
            runs.setdefault(line["job_id"], []).append(line)
    return runs


@pytest.mark.timeout(120)
def test_two_failovers_under_load_lose_no_acknowledged_task(
    cluster: SentinelCluster, spawn: Callable[..., Proc]
) -> None:
    """SIGKILL the master while producers enqueue with TASK_REPLICA_ACKS=1 and workers drain; bring it back as a
    replica; SIGKILL the new master so that the first comes back as master. Every enqueue that returned runs, a job
    running across the first failover ends on the new master, each process says once per failover where the master
    went, and none shows the password."""
    env = {"REDIS_URL": cluster.url, "TASK_REPLICA_ACKS": "1", **ABANDON_AFTER}
    conn = connect(cluster.url)
    probe = Producer(cluster.url, replica_acks=1)
    workers = [spawn("task-worker", extra_env=env), spawn("task-worker", "--concurrency", "4", extra_env=env)]
    producers = [spawn("python", "-m", "tests.producer_loop", f"p{n}", "0.02", "0.05", extra_env=env) for n in range(2)]
    wait_for(lambda: all(len(printed(p, "ok")) >= 10 for p in producers), timeout=30, what="enqueues to go through")
    long = probe.enqueue("worker.examples.sleep", 4.0, job_id="long")
    wait_for(  # started, and its start on both replicas: it runs across the failover
        lambda: all(n.client().hget(keys.job(long.id), "status") == b"started" for n in cluster.nodes),
        timeout=30,
        what="the long job to start",
    )

    first = cluster.master()
    died = kill(first)
    accepted_1 = enqueued_after(probe, "after-first-failover", died)
    second = cluster.wait_for_failover(first)
    done_1 = finished_after(conn, "after-first-failover", died)

    first.start()  # as a restarted Pod: it comes up as a master with its old data, the Sentinels make it a replica
    cluster.wait_for_replica(first)
    cluster.only_promotable(first)  # the second failover goes back to the restarted node
    died = kill(second)
    accepted_2 = enqueued_after(probe, "after-second-failover", died)
    assert cluster.wait_for_failover(second) is first
    done_2 = finished_after(conn, "after-second-failover", died)
    during = [len(printed(p, "ok")) for p in producers]
    wait_for(
        lambda: all(len(printed(p, "ok")) >= n + 10 for p, n in zip(producers, during, strict=True)),
        timeout=30,
        what="the producers to enqueue again",
    )
    for proc in producers:
        proc.signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, proc.output()[-2000:]

    accepted = [job_id for p in producers for job_id in printed(p, "ok")] + [long.id]
    statuses = settle(conn, accepted, timeout=60)
    runs = ran(workers)
    assert [j for j in accepted if j not in runs] == [], "acknowledged, never run"
    for job_id in (j for j in accepted if statuses[j] == "failed"):  # only a task whose own Redis call failed
        reason = exc_string(Job.fetch(job_id, connection=conn, serializer="json"))
        assert "ConnectionError" in reason, reason
    twice = {j for j in accepted if len(runs[j]) > 1}
    interrupted = {line["job_id"] for w in workers for e in (END_LOST, *REQUEUED) for line in said(w, e)}
    assert twice <= interrupted, f"ran twice although never interrupted: {sorted(twice - interrupted)}"
    assert statuses[long.id] == "finished"
    assert [line["outcome"] for line in runs[long.id]] == ["finished"], "the job across the failover ran again"
    for proc in [*workers, *producers]:
        assert [line["master"] for line in moves(proc)] == [f"127.0.0.1:{n.port}" for n in (second, first)], (
            proc.output()[-3000:]
        )
        assert PASSWORD not in proc.output()
    for worker in workers:
        assert worker.popen.poll() is None, worker.output()[-3000:]
    errors = [e for p in producers for e in printed(p, "error")]
    print(
        f"failover 1: enqueues acknowledged again {accepted_1:.2f}s after the SIGKILL, a task enqueued then finished "
        f"{done_1:.2f}s after it; failover 2 (back to the restarted node): {accepted_2:.2f}s, {done_2:.2f}s; "
        f"{len(accepted)} acknowledged, {sum(s == 'failed' for s in statuses.values())} failed on their own Redis "
        f"call, {len(twice)} ran twice (requeued after their end was lost); {len(errors)} enqueues refused"
    )


@pytest.mark.timeout(90)
def test_an_idle_worker_follows_a_planned_failover_without_an_error(
    pair: SentinelCluster, spawn: Callable[..., Proc]
) -> None:
    """SENTINEL FAILOVER demotes a live master (the Sentinels close its clients' connections as they reconfigure it):
    the idle worker, blocked waiting for work there, follows the new master as after a lost connection, with no
    error line, and runs the next job."""
    env = {"REDIS_URL": pair.url}
    worker = spawn("task-worker", extra_env=env)
    producer = Producer(pair.url)
    assert producer.wait([producer.enqueue("worker.examples.add", 1, 1)], timeout=30) == [2]  # up, and idle
    master = pair.master()
    pair.sentinels[0].client().sentinel_failover(SERVICE)
    promoted = pair.wait_for_failover(master)
    wait_for(lambda: len(moves(worker)) == 1, timeout=30, what="the worker to follow the new master")
    assert producer.wait([producer.enqueue("worker.examples.add", 2, 2)], timeout=30) == [4]
    assert [line["master"] for line in moves(worker)] == [f"127.0.0.1:{promoted.port}"]
    refused = [line for line in worker.json_lines() if line.get("level") == "error"]
    assert refused == [], refused
    assert worker.popen.poll() is None, worker.output()[-3000:]


@pytest.mark.timeout(60)
def test_a_workers_own_connection_goes_to_the_master_the_sentinels_name(pair: SentinelCluster) -> None:
    """The worker sends its scripts on a connection of its own (worker.batching), made outside the pool: it must ask
    the Sentinels for the master as pooled ones do, at first and after a failover. (An unconnected Sentinel connection
    written to directly goes to its default address, localhost:6379: where a Redis answers there, the worker's pops
    and finishes went to it.)"""
    conn = connect(pair.url)
    calls = BatchedCalls(conn)
    echo = scripts.register(conn, "queue_heads")  # any of the worker's scripts; its reply does not matter here
    wire = calls._wire_connection  # the connection under test (private to BatchedCalls)

    def peer() -> int:
        try:
            calls.call(echo, [], [keys.JOB_PREFIX])
        except redis.ConnectionError:  # during the failover
            return 0
        return int(wire.port)

    master = pair.master()
    assert peer() == master.port
    pair.sentinels[0].client().sentinel_failover(SERVICE)
    promoted = pair.wait_for_failover(master)
    wait_for(lambda: peer() == promoted.port, timeout=30, what="the worker's connection to follow the new master")


class OwnCommands(Client):
    """A client subclass with an ``execute_command`` of its own: the Producer's enqueues take redis-py's path."""

    def execute_command(self, *args: Any, **options: Any) -> Any:
        return super().execute_command(*args, **options)


@pytest.mark.timeout(60)
def test_an_enqueue_returns_only_once_a_replica_has_it(
    pair: SentinelCluster, env: dict[str, str], tmp_path: Path
) -> None:
    """With the replica cut off from the master, TASK_REPLICA_ACKS=1 refuses to call an enqueue done (on every path:
    enqueue, enqueue_many, redis-py's pipeline, the CLI) while TASK_REPLICA_ACKS=0 returns; a failover to the replica
    then loses what the latter acknowledged. Retrying the refused one with unique=True is safe."""
    master, replica = pair.master(), next(n for n in pair.nodes if n is not pair.master())
    with_acks = Producer(pair.url, replica_acks=1)
    impatient = Producer(pair.url, replica_acks=1, replica_acks_timeout=0.3)  # refused sooner
    without = Producer(pair.url)
    kept = with_acks.enqueue("worker.examples.noop", job_id="kept")
    impatient.enqueue("worker.examples.noop", job_id="also-kept")
    assert replica.client().hget(keys.job(kept.id), "status") == b"queued"  # there the moment enqueue returned

    pair.cut_replication(master)
    refused: list[ReplicaAcksError] = []
    calls: list[Callable[[], Any]] = [
        lambda: impatient.enqueue("worker.examples.noop", job_id="refused"),
        lambda: impatient.enqueue_many([Task("worker.examples.noop", job_id=f"batch-{i}") for i in range(3)]),
        lambda: Producer(  # redis-py's own path: a pipeline carries the EVALSHA and the WAIT
            pair.url, connection=master_client(pair.url, OwnCommands), replica_acks=1, replica_acks_timeout=0.3
        ).enqueue_many([Task("worker.examples.noop", job_id="piped")]),
    ]
    for call in calls:
        with pytest.raises(ReplicaAcksError) as caught:
            call()
        refused.append(caught.value)
    with pytest.raises(ReplicaAcksError):  # there, but on the master alone: not a duplicate to rely on yet
        impatient.enqueue("worker.examples.noop", job_id="refused", unique=True)
    assert [e.job_ids for e in refused] == [["refused"], ["batch-0", "batch-1", "batch-2"], ["piped"]]
    for error in refused:
        message = str(error)
        assert "\n" not in message
        assert PASSWORD not in message
        assert "TASK_REPLICA_ACKS" in message
        assert "may or may not" in message
        assert "unique=True" in message
    [cli] = run_all(
        [["task-producer", "enqueue", "worker.examples.noop", "--job-id", "by-cli"]],
        {**env, "REDIS_URL": pair.url, "TASK_REPLICA_ACKS": "1"},
        tmp_path,
    )
    assert cli.returncode == 1, cli.stderr
    assert "TASK_REPLICA_ACKS" in one_error_line(cli.stderr, "task-producer")
    assert PASSWORD not in cli.stdout + cli.stderr
    lost = without.enqueue("worker.examples.noop", job_id="lost")  # acknowledged, on the master alone

    admin = pair.sentinels[0].client()
    admin.sentinel_failover(SERVICE)  # the master is alive: it is demoted, and its own writes give way
    assert pair.wait_for_failover(master) is replica
    pair.wait_for_replica(master)
    promoted = replica.client()
    assert [promoted.exists(keys.job(j)) for j in ("kept", "also-kept")] == [1, 1], "an acknowledged enqueue was lost"
    assert promoted.exists(keys.job(lost.id)) == 0  # what TASK_REPLICA_ACKS=0 risks
    # The refused one may or may not be there: retried with unique=True as its error says, by the clients that were
    # on the demoted master (they follow), it is there once.
    pair.wait_for_replicas(1)
    enqueued_after(with_acks, "refused", time.monotonic())
    with pytest.raises(DuplicateJobError):
        without.enqueue("worker.examples.noop", job_id="refused", unique=True)
    assert promoted.lrange(keys.queue("default"), 0, -1) == [b"kept", b"also-kept", b"refused"]


def sentinel_url(hosts: str, service: str = SERVICE, password: str = PASSWORD) -> str:
    return f"redis+sentinel://:{password}@{hosts}/{service}/0"


@pytest.mark.timeout(60)
def test_commands_name_a_sentinel_that_does_not_answer_or_a_service_it_does_not_know(
    pair: SentinelCluster, env: dict[str, str], spawn: Callable[..., Proc], tmp_path: Path
) -> None:
    """One line naming what is wrong and the fix, exit 1, never the password; and with the right URL every command
    works through the Sentinels: enqueue, the dashboard, the autoscaler and its workers, status, requeue."""
    nowhere = f"127.0.0.1:{free_port()}"
    sentinels = ",".join(f"127.0.0.1:{s.port}" for s in pair.sentinels)
    cases = [
        (sentinel_url(nowhere), f"no Sentinel at {nowhere} answered for service 'mymaster'", "fix the Sentinels"),
        (
            sentinel_url(sentinels, "nosuch"),
            f"the Sentinels at {sentinels} monitor no service 'nosuch' (they monitor: 'mymaster')",
            "fix the service name in REDIS_URL",
        ),
    ]
    commands = [
        ["task-producer", "status"],
        ["task-worker", "--burst"],
        ["task-producer", "requeue", "--failed", "--all"],
    ]
    for url, shown, fix in cases:
        results = run_all(commands, {**env, "REDIS_URL": url}, tmp_path)
        for result in results:
            assert result.returncode == 1, (result.args, result.stderr)
            line = one_error_line(result.stderr, result.args[0])
            assert shown in line, line
            assert fix in line, line
            assert PASSWORD not in result.stdout + result.stderr
        with pytest.raises(RedisUnavailableError) as caught:
            Producer(url).enqueue("worker.examples.noop")
        assert str(caught.value) == line.removeprefix(f"{result.args[0]}: error: ")

    good = {**env, "REDIS_URL": pair.url, "TASK_REPLICA_ACKS": "1"}
    enqueued = run_all([["task-producer", "enqueue", "worker.examples.add", "1", "2"]], good, tmp_path)[0]
    assert enqueued.returncode == 0, enqueued.stderr
    port = free_port()
    spawn("task-producer", "dashboard", "--bind", "127.0.0.1", "--port", str(port), extra_env=good)
    queues = wait_for(lambda: answering(f"http://127.0.0.1:{port}/0/data/queues.json"), what="the dashboard")
    assert [(q["name"], q["count"]) for q in get_json(f"http://127.0.0.1:{port}/0/data/queues.json")["queues"]] == [
        ("default", 1)
    ], queues
    conn = connect(pair.url)
    settings = Settings.from_env({**good, "AUTOSCALE_INTERVAL": "0.05", "AUTOSCALE_START_SPARES": "0"})
    with local_fleet(conn, settings, tmp_path / "workers.log"):  # the autoscaler and its workers
        wait_for(lambda: conn.hget(keys.job(enqueued.stdout.strip()), "status") == b"finished", what="the job")
    status, requeue = run_all(
        [["task-producer", "status", "--json"], ["task-producer", "requeue", "--failed", "--all"]], good, tmp_path
    )
    assert (status.returncode, requeue.returncode) == (0, 0), status.stderr + requeue.stderr
    assert json.loads(status.stdout)["queues"]["default"]["finished"] == 1


def test_a_bad_replica_acks_value_is_one_line_naming_it(env: dict[str, str], tmp_path: Path) -> None:
    values = ["-1", "1.5", "one", "²", "-1"]
    commands = [["task-producer", "enqueue", "worker.examples.noop"]] * 4 + [["task-producer", "status"]]
    results = run_all(commands, env, tmp_path, envs=[{"TASK_REPLICA_ACKS": value} for value in values])
    for value, result in zip(values, results, strict=True):
        assert result.returncode == 2, result.stderr
        line = one_error_line(result.stderr, "task-producer")
        assert f"TASK_REPLICA_ACKS={value!r} is not a number of replicas: set it to 0" in line, line


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        (
            "redis+sentinel://:pw@a:1,b,[::1]:3/svc/2",
            SentinelURL((("a", 1), ("b", 26379), ("::1", 3)), "svc", 2, None, "pw"),
        ),
        (
            "redis+sentinel://us%40er:p%2Fw@a:1/my%20svc?sentinel_password=sp",
            SentinelURL((("a", 1),), "my svc", 0, "us@er", "p/w", "sp"),
        ),
        (f"redis+sentinel://:{PASSWORD}@a:1/svc", SentinelURL((("a", 1),), "svc", 0, None, PASSWORD)),
    ],
)
def test_a_sentinel_url_reads_every_part(url: str, parsed: SentinelURL) -> None:
    assert SentinelURL.parse(url) == parsed  # passwords included (they compare, they do not print)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"redis+sentinel://:{PASSWORD}@a:1,b:2", "it names no service"),
        (f"redis+sentinel://:{PASSWORD}@a:1,b:2/svc/x", "database 'x' is not a number"),
        (f"redis+sentinel://:{PASSWORD}@a:1,:2/svc", "Sentinel address ':2' has no host"),
        (f"redis+sentinel://:{PASSWORD}@a:99999/svc", "Sentinel address 'a:99999' has no valid port"),
        (f"redis+sentinel://:{PASSWORD}@a:1/svc?password=other-secret", "unknown option 'password'"),
    ],
)
def test_a_malformed_sentinel_url_is_one_line_without_its_password(url: str, problem: str) -> None:
    with pytest.raises(RedisUnavailableError) as caught:
        connect(url)
    message = str(caught.value)
    assert problem in message, message
    assert message.endswith("fix REDIS_URL"), message
    assert "\n" not in message
    assert "s3cret" not in message
    assert "other-secret" not in message


def test_a_sentinel_url_is_masked_with_every_host_and_both_passwords() -> None:
    url = f"redis+sentinel://user:{PASSWORD}@a:1,b:2,[::1]:3/svc/0?sentinel_password=other-secret"
    assert redact_url(url) == "redis+sentinel://user:***@a:1,b:2,[::1]:3/svc/0?sentinel_password=***"
    text = f"failed: {url} ({PASSWORD.split('/')[0]}; other-secret)"
    assert "s3cret" not in scrub(text, url)
    assert "other-secret" not in scrub(text, url)
