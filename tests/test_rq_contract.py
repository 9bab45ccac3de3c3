"""The producer writes jobs exactly as plain RQ does: the same hash fields and encodings, lists and queue set.

``producer.jobhash`` builds RQ's job hash directly instead of through ``Job.create``/``Job.save``; these tests
enqueue the same task with RQ and with the producer and compare what lands in Redis field by field (only the
id and the two timestamps may differ, and the timestamps must be there and parse), and what RQ reads back from
each; then let RQ's own worker and ours run the producer's jobs.

The producer leaves out the fields RQ writes empty and stores a short call uncompressed (``producer.jobhash``):
the comparison reads an empty field as a missing one and the call decompressed, as ``Job.restore`` does.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from rq import Queue, Retry
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.results import Result
from rq.utils import utcparse

from producer import Producer, Task
from producer.api import backoff_intervals
from task_processor.settings import SERIALIZERS
from tests.conftest import ReferenceWorker, bytes_fields, run
from worker.fastpath import success_fields

TIMESTAMPS = ("created_at", "enqueued_at")

CASES: list[tuple[str, Task]] = [
    ("no arguments", Task("worker.examples.noop")),
    ("args and kwargs", Task("worker.examples.add", (1,), {"b": 2.5})),
    ("nested data", Task("worker.examples.record", ("k", {"a": [1, None, "é"], "b": True}))),
    ("timeout", Task("worker.examples.noop", timeout=42)),
    ("retries with backoff", Task("worker.examples.fail", ("boom",), retries=3, retry_backoff=5)),
    ("at front", Task("worker.examples.noop", at_front=True)),
    ("own job id", Task("worker.examples.noop", job_id="my-job-1")),
    ("other queue", Task("worker.examples.add", (2, 3), queue="high")),
    ("long argument", Task("worker.examples.record", ("x" * 300,))),
]


def rq_retry(task: Task) -> Retry | None:
    if not task.retries:
        return None
    return Retry(max=task.retries, interval=backoff_intervals(task.retries, task.retry_backoff))


def rq_enqueue(conn: redis.Redis, serializer: str, task: Task, job_id: str | None) -> Job:
    """What an application using plain RQ writes for ``task`` (``Queue.enqueue_call``)."""
    queue = Queue(task.queue or "default", connection=conn, serializer=SERIALIZERS[serializer], default_timeout=180)
    return queue.enqueue_call(  # type: ignore[type-var]  # RQ's func TypeVar refuses str | Callable, which it takes
        task.func,
        args=tuple(task.args),
        kwargs=dict(task.kwargs),
        timeout=task.timeout,
        job_id=job_id,
        at_front=task.at_front,
        retry=rq_retry(task),
    )


def stored_call(data: bytes) -> bytes:
    """The serialized call in a job's ``data`` field, compressed or not (``Job.restore``'s reading)."""
    try:
        return zlib.decompress(data)
    except zlib.error:
        return data


def snapshot(conn: redis.Redis, ids: list[str]) -> dict[str, Any]:
    """Everything an enqueue wrote, with job ids replaced by their position in ``ids``; a job hash as RQ reads
    it (an empty field is a missing one, the call decompressed)."""
    alias: dict[bytes | str, bytes] = {job_id.encode(): f"<job {i}>".encode() for i, job_id in enumerate(ids)}
    hashes = {}
    for i, job_id in enumerate(ids):
        stored = bytes_fields(conn.hgetall(Job.key_for(job_id)))
        fields = {name: value for name, value in stored.items() if value != b""}
        fields[b"data"] = stored_call(fields[b"data"])
        for name in TIMESTAMPS:
            utcparse(fields.pop(name.encode()).decode())  # present and parses
        hashes[i] = fields
    lists = {key: [alias.get(v, v) for v in conn.lrange(key, 0, -1)] for key in conn.keys("rq:queue:*")}
    others = sorted(k for k in conn.scan_iter() if not k.startswith((b"rq:queue:", b"rq:job:")))
    return {"hashes": hashes, "lists": lists, "rq:queues": conn.smembers("rq:queues"), "other keys": others}


def comparable(job: Job) -> dict[str, Any]:
    """A returned Job's state as RQ would save it, without id and timestamps."""
    state = job.to_dict()
    for name in TIMESTAMPS:
        del state[name]
    return state


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_enqueue_writes_what_rq_enqueue_writes(redis_url: str, conn: redis.Redis, serializer: str) -> None:
    producer = Producer(redis_url, serializer=serializer)
    for name, task in CASES:
        conn.flushall()
        theirs = [rq_enqueue(conn, serializer, task, task.job_id)]
        expected = snapshot(conn, [job.id for job in theirs])
        read_back = comparable(Job.fetch(theirs[0].id, connection=conn, serializer=SERIALIZERS[serializer]))
        conn.flushall()
        ours = [producer.enqueue_many([task])[0]]
        assert snapshot(conn, [job.id for job in ours]) == expected, name
        assert comparable(ours[0]) == comparable(theirs[0]), f"{name}: the returned Job differs from RQ's"
        fetched = Job.fetch(ours[0].id, connection=conn, serializer=SERIALIZERS[serializer])
        assert comparable(fetched) == read_back, f"{name}: RQ reads our job differently from its own"


def test_enqueue_many_writes_what_rq_enqueue_many_writes(redis_url: str, conn: redis.Redis) -> None:
    """A mixed batch across queues, against RQ's batch API (one ``Queue.enqueue_many`` per queue)."""
    tasks = [task for _, task in CASES] + [Task("worker.examples.add", (i, i)) for i in range(3)]
    with conn.pipeline() as pipe:
        theirs = []
        for task in tasks:
            data = Queue.prepare_data(  # type: ignore[type-var]  # as in rq_enqueue
                task.func,
                args=tuple(task.args),
                kwargs=dict(task.kwargs),
                timeout=task.timeout or 180,
                job_id=task.job_id,
                at_front=task.at_front,
                retry=rq_retry(task),
            )
            queue = Queue(task.queue or "default", connection=conn, serializer=SERIALIZERS["json"])
            theirs += queue.enqueue_many([data], pipeline=pipe)
        pipe.execute()
    expected = snapshot(conn, [job.id for job in theirs])
    conn.flushall()
    ours = Producer(redis_url).enqueue_many(tasks)
    assert snapshot(conn, [job.id for job in ours]) == expected
    assert [comparable(job) for job in ours] == [comparable(job) for job in theirs]


def test_rq_and_our_worker_run_the_producers_jobs(
    redis_url: str, conn: redis.Redis, env: dict[str, str], producer: Producer
) -> None:
    """RQ's SimpleWorker and task-worker both run them; RQ's reads (count, status, return value) see them."""
    queue = Queue("default", connection=conn, serializer=SERIALIZERS["json"])
    first = producer.enqueue_many([Task("worker.examples.add", (i, 1)) for i in range(3)])
    assert queue.count == 3
    assert queue.job_ids == [job.id for job in first]
    assert {job.get_status() for job in first} == {JobStatus.QUEUED}
    ReferenceWorker([queue], connection=conn, serializer=SERIALIZERS["json"]).work(burst=True)
    assert [job.return_value() for job in first] == [1, 2, 3]
    assert queue.count == 0
    assert {job.get_status() for job in first} == {JobStatus.FINISHED}

    second = [producer.enqueue("worker.examples.add", 2, b=5), producer.enqueue("worker.examples.fail", "no")]
    done = run(["task-worker", "--burst"], env)
    assert done.returncode == 0, done.stderr
    assert second[0].return_value() == 7
    assert second[0].get_status() == JobStatus.FINISHED
    assert second[1].get_status() == JobStatus.FAILED


@pytest.mark.parametrize("serializer", sorted(SERIALIZERS))
@pytest.mark.parametrize("value", [None, 3, "é", {"a": [1, None]}, object()], ids=["none", "int", "str", "dict", "odd"])
def test_the_workers_result_entry_is_what_rq_result_writes(serializer: str, value: Any) -> None:
    """The finish writes a job's success into its result stream without building RQ's Result: same fields, same
    values, in the same order (an unserializable return value included), for each serializer."""
    job = Job.create("worker.examples.noop", connection=redis.Redis(), serializer=SERIALIZERS[serializer])
    job._result = value
    started = datetime(2026, 12, 2, 17, 0, 0, 123456, tzinfo=UTC)
    job.ended_at = started + timedelta(seconds=1.5)
    execution = Execution(id="e1", job_id=job.id, connection=job.connection, worker_name="w1")
    execution.created_at = started
    rq_result = Result(
        job_id=job.id,
        type=Result.Type.SUCCESSFUL,
        connection=job.connection,
        return_value=value,
        worker_name="w1",
        serializer=job.serializer,
        execution_id=execution.id,
        execution_started_at=started,
        execution_ended_at=job.ended_at,
    )
    assert success_fields(job, "w1", execution) == [item for pair in rq_result.serialize().items() for item in pair]
