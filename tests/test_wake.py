"""An idle worker's wait for work (``worker.wake``): it returns once its queue holds a job, leaves the queue as it
was, reports what redis-py's pipeline reported (a missing script, an error reply naming its command, a lost
connection retried), and the job it takes is started at the time it was taken."""

from __future__ import annotations

import calendar
import threading
from collections.abc import Callable
from datetime import UTC, datetime

import hypothesis
import pytest
import redis
from hypothesis import strategies as st
from rq.utils import utcformat

from producer import Producer
from producer.commands.redis_server import LocalRedisServer
from task_processor import scripts
from task_processor.connection import connect
from tests.conftest import Proc, wait_for
from worker.batching import BatchedCalls
from worker.fastpath import FastPath, PopResult
from worker.wake import Waker

# Pops the list's first item: what the worker's pop does to its queue, without the bookkeeping.
POP = "return redis.call('LPOP', KEYS[1])"


def test_the_wait_returns_the_scripts_reply_once_the_list_holds_an_item(conn: redis.Redis) -> None:
    sha = conn.script_load(POP)
    waker = Waker(conn)
    pushed = threading.Timer(0.2, lambda: conn.rpush("queue", "job-1"))
    pushed.start()
    assert waker.wait_then_call("queue", 10, sha, ["queue"], []) == b"job-1"  # long before the 10 s wait ends
    pushed.join()
    conn.rpush("queue", "job-2", "job-3")
    assert waker.wait_then_call("queue", 10, sha, ["queue"], []) == b"job-2"
    assert conn.lrange("queue", 0, -1) == [b"job-3"]  # the wait itself moved nothing


def test_an_empty_list_runs_the_script_after_the_wait(conn: redis.Redis) -> None:
    sha = conn.script_load(POP)
    assert Waker(conn).wait_then_call("queue", 0.1, sha, ["queue"], []) is None


def test_a_script_redis_lost_is_returned_as_noscript_and_the_connection_goes_on(conn: redis.Redis) -> None:
    sha = conn.script_load(POP)
    waker = Waker(conn)
    conn.script_flush()
    conn.rpush("queue", "job")
    assert isinstance(waker.wait_then_call("queue", 1, sha, ["queue"], []), redis.exceptions.NoScriptError)
    conn.script_load(POP)
    assert waker.wait_then_call("queue", 1, sha, ["queue"], []) == b"job"


def test_an_error_reply_names_its_command_and_key_and_the_connection_goes_on(conn: redis.Redis) -> None:
    sha = conn.script_load(POP)
    waker = Waker(conn)
    conn.set("foreign", "x")
    with pytest.raises(redis.ResponseError, match=r"^Command \(BLMOVE foreign\) caused error: WRONGTYPE"):
        waker.wait_then_call("foreign", 1, sha, ["queue"], [])
    conn.rpush("queue", "job")
    assert waker.wait_then_call("queue", 1, sha, ["queue"], []) == b"job"


def test_a_restarted_redis_is_reconnected_to() -> None:
    with LocalRedisServer(appendonly=False) as server:
        client = connect(server.url)
        sha = client.script_load(POP)
        waker = Waker(client)
        client.rpush("queue", "before")
        assert waker.wait_then_call("queue", 1, sha, ["queue"], []) == b"before"
        server.kill()
        server.start()  # the same port
        client.script_load(POP)  # a restart loses the scripts (the worker's pop loads its own again)
        client.rpush("queue", "after")
        assert waker.wait_then_call("queue", 1, sha, ["queue"], []) == b"after"


@pytest.mark.timeout(60)
def test_an_idle_worker_waits_without_errors_and_runs_what_comes(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    worker = spawn("task-worker")

    def waits() -> int:
        stats = conn.info("commandstats").get("cmdstat_blmove", {})
        return int(stats.get("calls", 0)) - int(stats.get("failed_calls", 0))

    wait_for(lambda: waits() >= 3, timeout=30, what="the idle worker to wait three times")
    job = producer.enqueue("worker.examples.add", 2, 3)
    assert producer.wait([job], timeout=30) == [5]
    complaints = [line for line in worker.json_lines() if line.get("level") in ("warning", "error", "critical")]
    assert complaints == []


POP_KEYS = ["rq:suspended", "rq:queue:default", "rq:queue:default:intermediate", "rq:wip:default"]


def test_a_job_taken_after_a_wait_is_started_when_it_was_taken_not_when_the_wait_began(
    conn: redis.Redis, redis_url: str
) -> None:
    """The pop goes out with the blocking wait, up to a second before it runs: its start must carry the time it ran
    (never before the job was enqueued), in Redis and on the worker's side alike."""
    fast = FastPath(conn, BatchedCalls(conn), "rq:worker:w1", "w1", 30, starts_on_pop=True)
    producer = Producer(redis_url, modules="worker.examples")
    got: list[PopResult] = []
    waiting = threading.Thread(target=lambda: got.append(fast.wait_then_pop(POP_KEYS, 1, POP_KEYS[1], 10)))
    waiting.start()
    wait_for(lambda: conn.info("clients")["blocked_clients"] == 1, what="the wait to block")
    job = producer.enqueue("worker.examples.noop")  # after the wait began, by the same clock (one machine)
    waiting.join(timeout=15)
    (hits,) = got
    assert isinstance(hits, tuple)
    (hit,) = hits
    assert hit.execution is not None
    job.refresh()
    assert job.enqueued_at is not None
    assert job.started_at is not None
    assert job.started_at >= job.enqueued_at
    assert hit.execution.created_at == job.started_at  # the worker's execution says what Redis says
    entry = conn.hgetall(f"rq:execution:{job.id}:{hit.execution.id}")
    assert float(entry[b"created_at"]) == job.started_at.timestamp()
    assert conn.hget("rq:worker:w1", "last_heartbeat") == conn.hget(job.key, "started_at")
    wip_score = conn.zscore("rq:wip:default", f"{job.id}:{hit.execution.id}")
    assert wip_score == int(job.started_at.timestamp()) + 30  # RQ's whole seconds, plus the heartbeat ttl


@hypothesis.settings(
    max_examples=300, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture]
)
@hypothesis.given(
    moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999))
)
def test_the_scripts_clock_writes_dates_as_rq_does(conn: redis.Redis, moment: datetime) -> None:
    moment = moment.replace(tzinfo=UTC)
    seconds = calendar.timegm(moment.utctimetuple())
    script = scripts.source("lib/start") + "\nreturn rq_time(tonumber(ARGV[1]), tonumber(ARGV[2]))"
    assert conn.eval(script, 0, seconds, moment.microsecond).decode() == utcformat(moment)


def test_a_redis_that_refuses_time_gets_the_workers_clock_instead(conn: redis.Redis, redis_url: str) -> None:
    """A Redis of the user's own whose ACL does not allow TIME to the worker: the pop behind the wait still starts
    the job, with the times the worker chose as it sent it (before the wait), and no error."""
    conn.acl_setuser(
        "no-time", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all", "-time"]
    )
    worker_conn = redis.Redis.from_url(redis_url, username="no-time", password="pw")
    with pytest.raises(redis.exceptions.NoPermissionError):
        worker_conn.time()
    fast = FastPath(worker_conn, BatchedCalls(worker_conn), "rq:worker:w1", "w1", 30, starts_on_pop=True)
    job = Producer(redis_url, modules="worker.examples").enqueue("worker.examples.noop")
    hits = fast.wait_then_pop(POP_KEYS, 1, POP_KEYS[1], 10)
    assert isinstance(hits, tuple)
    (hit,) = hits
    assert hit.execution is not None
    job.refresh()
    assert job.get_status(refresh=False) == "started"
    assert hit.execution.created_at == job.started_at
