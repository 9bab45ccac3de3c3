"""The lean success path leaves Redis exactly as RQ's own SimpleWorker does, so RQ's tools see the same thing."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.job import Job

from producer import Producer
from tests.conftest import Proc

TIMESTAMP_FIELDS = {"started_at", "ended_at", "last_heartbeat", "enqueued_at", "created_at", "birth"}
OURS_ONLY = {"meta"}
"""Job fields our worker adds on purpose: ``meta.attempt`` (README: Redis keys)."""


def snapshot(conn: redis.Redis, job: Job, worker_name: str) -> dict[str, Any]:
    """Every key with its type, TTL class and fields, ids replaced by placeholders; values where they must match."""
    result = job.latest_result()
    execution_id = result.execution_id if result else "none"
    names = {job.id: "<job>", worker_name: "<worker>", execution_id: "<execution>"}

    def norm(text: str) -> str:
        return re.sub("|".join(map(re.escape, names)), lambda m: names[m.group(0)], text)

    state: dict[str, Any] = {}
    for raw in conn.keys("*"):
        key = raw.decode()
        kind = conn.type(raw).decode()
        ttl = conn.ttl(raw)
        entry: dict[str, Any] = {"type": kind, "expires": ttl > 0}
        if kind == "hash":
            fields = {k.decode(): v for k, v in conn.hgetall(raw).items()}
            # RQ writes some fields empty at enqueue: what counts is which ones hold a value.
            filled = {k for k, v in fields.items() if v}
            entry["fields"] = sorted(filled - (OURS_ONLY if key == job.key else set()))
            entry["values"] = {
                k: norm(v.decode(errors="replace"))
                for k, v in fields.items()
                if k
                in {
                    "status",
                    "origin",
                    "state",
                    "successful_job_count",
                    "failed_job_count",
                    "queues",
                    "worker_name",
                    "id",
                }
            }
        elif kind == "zset":
            entry["members"] = sorted(norm(m.decode()) for m in conn.zrange(raw, 0, -1))
        elif kind == "stream":
            entry["entries"] = [sorted(f.decode() for f in fields) for _, fields in conn.xrange(raw)]
        elif kind in ("list", "set"):
            members = conn.lrange(raw, 0, -1) if kind == "list" else conn.smembers(raw)
            entry["members"] = sorted(norm(m.decode()) for m in members)
        state[norm(key)] = entry
    state["result"] = {
        "type": result.type.name if result else None,
        "return_value": result.return_value if result else None,
        "worker_name": norm(result.worker_name) if result else None,
    }
    return state


def test_a_finished_job_looks_in_redis_as_rq_simpleworker_leaves_it(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    job = producer.enqueue("worker.examples.add", 2, 3)
    rq_worker = SimpleWorker([Queue("default", connection=conn, serializer="json")], connection=conn, serializer="json")
    rq_worker.work(burst=True)
    theirs = snapshot(conn, job, rq_worker.name)
    assert theirs["result"]["return_value"] == 5  # the comparison below compares real work

    conn.flushall()
    job = producer.enqueue("worker.examples.add", 2, 3)
    worker = spawn("task-worker", "--burst", "--name", "lean")
    assert worker.wait(timeout=30) == 0, worker.output()[-2000:]
    ours = snapshot(conn, job, "lean")

    # RQ leaves the dead worker's hash with a death date; the started registry and intermediate list are gone.
    assert ours == theirs
