"""The lean paths leave Redis exactly as RQ's own SimpleWorker does, so RQ's tools see the same thing.

Each test runs the same jobs twice on a flushed Redis, once under RQ's ``SimpleWorker`` and once under
``task-worker``, and compares every key field by field: one job; two back to back (the finish that pops and
starts the next); slots of ``--concurrency`` (their calls batched); a job that reaches the intermediate list
unstarted (its meta holds more than our attempt count, or a blocking pop took it); a failed job; a result_ttl.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from rq import Queue
from rq.job import Job
from rq.utils import utcformat, utcparse

from task_processor.jobs import parse_time, rq_time
from task_processor.observe import list_workers
from tests.conftest import Proc, ReferenceWorker, as_bytes, bytes_fields, decoded, wait_for

OURS_ONLY = {"meta"}
"""Job fields our worker adds on purpose: ``meta.attempt`` (README: Redis keys)."""

COMPARED_VALUES = {"status", "origin", "state", "successful_job_count", "failed_job_count", "queues", "worker_name"}
"""Hash fields whose values must match (others hold times, ids or tracebacks: only whether they are set)."""

WORKER_PREFIX = "rq:worker:"


def snapshot(conn: redis.Redis, jobs: Sequence[Job]) -> dict[str, Any]:
    """Every key with its type, TTL class and fields, ids replaced by placeholders; values where they must match.

    Jobs are ``<job0>``, ``<job1>``... in the order given, their executions likewise; every worker is
    ``<worker>``, and the worker hashes are listed apart (sorted), as which worker ran which job may differ."""
    results = [job.latest_result() for job in jobs]
    names: dict[str, str] = {}
    for i, (job, result) in enumerate(zip(jobs, results, strict=True)):
        names[job.id] = f"<job{i}>"
        if result is not None:
            assert result.execution_id is not None, f"{job.id}'s result has no execution"
            names[result.execution_id] = f"<execution{i}>"
    worker_names = {name[len(WORKER_PREFIX) :] for name in decoded(conn.keys(f"{WORKER_PREFIX}*"))}
    names.update(dict.fromkeys(worker_names, "<worker>"))
    pattern = re.compile("|".join(map(re.escape, sorted(names, key=len, reverse=True))))

    def norm(text: str) -> str:
        return pattern.sub(lambda m: names[m.group(0)], text)

    state: dict[str, Any] = {}
    workers: list[dict[str, Any]] = []
    for raw in conn.keys("*"):
        key = as_bytes(raw).decode()
        kind = as_bytes(conn.type(raw)).decode()
        entry: dict[str, Any] = {"type": kind, "expires": conn.ttl(raw) > 0}
        if kind == "hash":
            fields = {k.decode(): v for k, v in bytes_fields(conn.hgetall(raw)).items()}
            # RQ writes some fields empty at enqueue: what counts is which ones hold a value.
            filled = {k for k, v in fields.items() if v}
            entry["fields"] = sorted(filled - (OURS_ONLY if key.startswith("rq:job:") else set()))
            entry["values"] = {k: norm(v.decode(errors="replace")) for k, v in fields.items() if k in COMPARED_VALUES}
        elif kind == "zset":
            entry["members"] = sorted(norm(m) for m in decoded(conn.zrange(raw, 0, -1)))
        elif kind == "stream":
            stream = conn.xrange(raw)
            assert stream is not None
            entries: list[list[str]] = []
            for _, stream_fields in stream:
                assert stream_fields is not None
                entries.append(sorted(decoded(stream_fields)))
            entry["entries"] = entries
        elif kind in ("list", "set"):
            members = conn.lrange(raw, 0, -1) if kind == "list" else conn.smembers(raw)
            entry["members"] = sorted(norm(m) for m in decoded(members))
        if key.startswith(WORKER_PREFIX):
            workers.append(entry)
        else:
            state[norm(key)] = entry
    state["workers"] = sorted(workers, key=repr)
    for i, result in enumerate(results):
        state[f"result of <job{i}>"] = {
            "type": result.type.name if result else None,
            "return_value": result.return_value if result else None,
            "exc_string": (result.exc_string or "").strip().splitlines()[-1:] if result else None,
            "worker_name": norm(result.worker_name) if result else None,
        }
    return state


Enqueue = Callable[[Queue], list[Job]]


def rq_queue(conn: redis.Redis) -> Queue:
    return Queue("default", connection=conn, serializer="json")


def rq_leaves(conn: redis.Redis, enqueue: Enqueue) -> dict[str, Any]:
    """What RQ's SimpleWorker leaves after running the jobs."""
    conn.flushall()
    jobs = enqueue(rq_queue(conn))
    ReferenceWorker([rq_queue(conn)], connection=conn, serializer="json").work(burst=True)
    assert conn.llen("rq:queue:default") == 0
    return snapshot(conn, jobs)


def ours_leave(conn: redis.Redis, spawn: Callable[..., Proc], enqueue: Enqueue, *args: str) -> dict[str, Any]:
    """What ``task-worker --burst`` leaves after running the same jobs."""
    conn.flushall()
    jobs = enqueue(rq_queue(conn))
    worker = spawn("task-worker", "--burst", *args)
    assert worker.wait(timeout=60) == 0, worker.output()[-2000:]
    return snapshot(conn, jobs)


def add_jobs(count: int, **options: Any) -> Enqueue:
    return lambda queue: [queue.enqueue("worker.examples.add", i, 3, **options) for i in range(count)]


@pytest.mark.parametrize(
    ("enqueue", "returns"),
    [
        pytest.param(add_jobs(1), [3], id="one-job"),
        # The first job's finish pops and starts the second in the same call: the back-to-back write.
        pytest.param(add_jobs(2), [3, 4], id="two-back-to-back"),
        pytest.param(add_jobs(3), [3, 4, 5], id="three-back-to-back"),
        pytest.param(add_jobs(1, result_ttl=77), [3], id="result-ttl"),
        pytest.param(add_jobs(1, result_ttl=0), [None], id="result-ttl-0"),
        pytest.param(lambda queue: [queue.enqueue("worker.examples.fail", "it broke")], [None], id="failed-job"),
        pytest.param(
            lambda queue: [*add_jobs(1)(queue), queue.enqueue("worker.examples.fail", "it broke"), *add_jobs(1)(queue)],
            [3, None, 3],
            id="finished-failed-finished",
        ),
        # Meta beyond the attempt count: the pop leaves the job in the intermediate list, a start of its own runs it.
        pytest.param(add_jobs(2, meta={"owner": "me"}), [3, 4], id="meta-intermediate-list"),
    ],
)
def test_jobs_look_in_redis_as_rq_simpleworker_leaves_them(
    conn: redis.Redis, spawn: Callable[..., Proc], enqueue: Enqueue, returns: list[Any]
) -> None:
    theirs = rq_leaves(conn, enqueue)
    # The comparison below compares real work.
    assert [theirs[f"result of <job{i}>"]["return_value"] for i in range(len(returns))] == returns
    ours = ours_leave(conn, spawn, enqueue, "--name", "lean")
    # RQ leaves the dead worker's hash with a death date; the started registry and intermediate list are gone.
    assert ours == theirs


@pytest.mark.timeout(100)
def test_slots_of_one_process_leave_what_rq_workers_leave(conn: redis.Redis, spawn: Callable[..., Proc]) -> None:
    """``--concurrency``: the slots' starts and finishes go out batched, several calls in one pipeline, when
    they come at the same time. RQ's reference: one SimpleWorker for each slot, running as many jobs as it did."""
    enqueue = add_jobs(40)
    ours = ours_leave(conn, spawn, enqueue, "--concurrency", "4")
    counts = sorted((int(w["values"].get("successful_job_count", 0)) for w in ours["workers"]), reverse=True)
    assert len(counts) == 4
    assert sum(counts) == 40

    conn.flushall()
    jobs = enqueue(rq_queue(conn))
    for count in counts:  # a slot that ran nothing: a worker that found the queue empty
        ReferenceWorker([rq_queue(conn)], connection=conn, serializer="json").work(burst=True, max_jobs=count or None)
    theirs = snapshot(conn, jobs)
    assert [theirs[f"result of <job{i}>"]["return_value"] for i in range(40)] == [i + 3 for i in range(40)]
    # In --burst, the first slot to find the queues empty asks the others to stop.
    assert without_idle_stop_date(ours) == theirs


def without_idle_stop_date(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without the workers' ``shutdown_requested_date``: a warm stop of an idle worker dates the request
    here, where RQ dates it only for a busy worker (nothing reads it for a worker that is gone)."""
    for worker in state["workers"]:
        if "shutdown_requested_date" in worker["fields"]:
            worker["fields"].remove("shutdown_requested_date")
    return state


RQ_UNSUBSCRIBE_HANG = "unsubscribing from channel"
"""RQ's worker logs this last on a warm stop, after it deregistered; its pub/sub thread may then never join
(rq/rq#1613), leaving the process up with its state in Redis final."""


def leaves_after_a_blocking_pop(
    conn: redis.Redis, spawn: Callable[..., Proc], *command: str, rqs_own: bool = False
) -> dict[str, Any]:
    """Start a worker on an empty queue, enqueue one job once it waits, stop it with SIGTERM once the job is done.
    ``rqs_own``: the worker is RQ's, whose known hang after deregistering is killed rather than failed."""
    conn.flushall()
    worker = spawn(*command)
    wait_for(lambda: [w.state for w in list_workers(conn)] == ["idle"], timeout=30, what="the worker to idle")
    jobs = add_jobs(1)(rq_queue(conn))
    wait_for(lambda: conn.hget(jobs[0].key, "status") == b"finished", timeout=30, what="the job to finish")
    wait_for(lambda: [w.state for w in list_workers(conn)] == ["idle"], timeout=30, what="the worker to idle")
    worker.signal(signal.SIGTERM)
    if rqs_own:
        wait_for(lambda: worker.popen.poll() is not None or RQ_UNSUBSCRIBE_HANG in worker.output(), timeout=30,
                 what="RQ's worker to stop")  # fmt: skip
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.popen.wait(timeout=10)
        if worker.popen.poll() is None:
            worker.signal(signal.SIGKILL)
        return snapshot(conn, jobs)
    assert worker.wait(timeout=30) == 0, worker.output()[-3000:]
    return snapshot(conn, jobs)


@pytest.mark.timeout(100)
def test_a_job_a_blocking_pop_took_looks_as_rq_leaves_it(
    conn: redis.Redis, redis_url: str, spawn: Callable[..., Proc]
) -> None:
    """An idle worker waits in a blocking pop that moves the job into the intermediate list unstarted; the start
    and the finish then run from there. RQ's own worker, run and stopped the same way, is the reference."""
    rq_worker = ("rq", "worker", "--url", redis_url, "--worker-class", "rq.worker.SimpleWorker")
    theirs = leaves_after_a_blocking_pop(
        conn,
        spawn,
        *rq_worker,
        "--serializer",
        "rq.serializers.JSONSerializer",
        "--name",
        "rq-own-worker",
        "default",
        rqs_own=True,
    )
    assert theirs["result of <job0>"]["return_value"] == 3
    ours = leaves_after_a_blocking_pop(conn, spawn, "task-worker", "--name", "lean")
    assert without_idle_stop_date(ours) == theirs


@given(moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)))
def test_the_fast_path_reads_and_writes_rqs_timestamps_as_rq_does(moment: datetime) -> None:
    """The popped job's times are parsed without strptime (the same aware datetimes as RQ's utcparse gives), and the
    times the scripts write are formatted without strftime (the same text as RQ's utcformat)."""
    written = utcformat(moment)
    assert parse_time(written) == utcparse(written)
    assert parse_time(written).tzinfo is not None
    assert rq_time(moment) == written  # and written as RQ writes them, without strftime
