"""The worker reads a popped job's hash into exactly the ``Job`` that RQ's ``Job.restore`` makes of it.

``worker.jobhash.restore`` reads the common fields itself and leaves any other hash to ``Job.restore``. Each case
here writes a job (with our producer, with RQ's own enqueue, by our pop's start, or by hand), reads its hash back
as Redis returns it, and compares every attribute of the two jobs, exceptions included.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis
from rq import Callback, Queue, Retry
from rq.job import Job

from producer import Producer, Task
from task_processor.jobs import JobTemplate
from task_processor.settings import SERIALIZERS
from worker.batching import BatchedCalls
from worker.fastpath import FastPath
from worker.jobhash import PLAIN_FIELDS, restore

NOW_FIELDS = {"created_at"}
"""Read as ``now()`` when missing: compared to within a second."""

OUR_TASKS: list[Task] = [
    Task("worker.examples.noop"),
    Task("worker.examples.add", (1,), {"b": 2.5}),
    Task("worker.examples.record", ("x" * 300,)),  # stored compressed
    Task("worker.examples.noop", timeout=42, retries=3, retry_backoff=5),
    Task("worker.examples.noop", meta={"owner": "team-a"}, description="named", at_front=True),
    Task("worker.examples.noop", result_ttl=60, failure_ttl=600, ttl=900),
    Task("worker.examples.noop", on_success="worker.examples.note_outcome", on_failure="worker.examples.note_outcome"),
    Task("worker.examples.noop", delay=timedelta(hours=1)),
    Task("worker.examples.noop", job_id="restore-own-id", unique=True),
]


def both(fields: dict[bytes, bytes], template: JobTemplate[Job]) -> tuple[Any, Any]:
    """What RQ's restore and ours make of ``fields``: each job's attributes, or the exception raised."""
    outcomes: list[tuple[type[Exception], str] | dict[str, Any]] = []
    for read in (lambda job, f: job.restore(f), restore):
        job = template.new("restore-case")
        try:
            read(job, dict(fields))
        except Exception as exc:
            outcomes.append((type(exc), str(exc)))
            continue
        outcomes.append(vars(job))
    return outcomes[0], outcomes[1]


def assert_same(fields: dict[bytes, bytes], template: JobTemplate[Job]) -> None:
    theirs, ours = both(fields, template)
    if isinstance(theirs, tuple) or isinstance(ours, tuple):
        assert ours == theirs
        return
    for name in NOW_FIELDS - {key.decode() for key, value in fields.items() if value}:
        assert abs(theirs.pop(name) - ours.pop(name)) < timedelta(seconds=1)
    assert ours.keys() == theirs.keys()
    differing = {name: (ours[name], theirs[name]) for name in ours if ours[name] != theirs[name]}
    assert not differing, f"attributes read otherwise than Job.restore reads them (ours, RQ's): {differing}"


@pytest.fixture(params=["json", "pickle"])
def serializer(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def template(conn: redis.Redis, serializer: str) -> JobTemplate[Job]:
    return JobTemplate(Job, conn, SERIALIZERS[serializer])


def hashes_of(conn: redis.Redis, jobs: list[Job]) -> list[dict[bytes, bytes]]:
    return [conn.hgetall(job.key) for job in jobs]  # type: ignore[misc]


def test_jobs_our_producer_writes_read_as_rq_reads_them(
    conn: redis.Redis, redis_url: str, serializer: str, template: JobTemplate[Job]
) -> None:
    producer = Producer(redis_url, serializer=serializer, modules="worker.examples")
    jobs = producer.enqueue_many(OUR_TASKS)
    jobs.append(producer.enqueue_many([Task("worker.examples.noop", depends_on=jobs[0])])[0])
    fields = hashes_of(conn, jobs)
    assert any(f.keys() <= PLAIN_FIELDS for f in fields)
    assert not all(f.keys() <= PLAIN_FIELDS for f in fields)
    for one in fields:
        assert_same(one, template)


def test_jobs_rq_writes_read_as_rq_reads_them(conn: redis.Redis, serializer: str, template: JobTemplate[Job]) -> None:
    queue = Queue("default", connection=conn, serializer=SERIALIZERS[serializer])
    first = queue.enqueue("worker.examples.add", 1, 2)
    jobs = [
        first,
        queue.enqueue("worker.examples.noop", job_timeout="1h"),
        queue.enqueue("worker.examples.noop", retry=Retry(max=2, interval=[1, 5]), meta={"a": 1}),
        queue.enqueue("worker.examples.noop", on_success=Callback("worker.examples.note_outcome", timeout=5)),
        queue.enqueue("worker.examples.noop", depends_on=first, at_front=True),
        queue.enqueue("worker.examples.noop", result_ttl=5, failure_ttl=7, ttl=60, description="d"),
    ]
    for one in hashes_of(conn, jobs):
        assert_same(one, template)


def test_a_job_our_pop_started_reads_as_rq_reads_it(conn: redis.Redis, redis_url: str) -> None:
    """The hash the pop returns: started, with its worker, heartbeat and attempt count (the pop starts JSON jobs
    only)."""
    producer = Producer(redis_url, modules="worker.examples")
    producer.enqueue_many([Task("worker.examples.add", (1, 2), retries=1), Task("worker.examples.noop")])
    fast = FastPath(conn, BatchedCalls(conn), "rq:worker:w1", "w1", 30, starts_on_pop=True)
    hits = fast.pop(["rq:suspended", "rq:queue:default", "rq:queue:default:intermediate", "rq:wip:default"], 2)
    assert isinstance(hits, tuple)
    assert len(hits) == 2
    assert all(hit.execution for hit in hits)
    for hit in hits:
        assert hit.fields is not None
        fields = dict(zip(hit.fields[::2], hit.fields[1::2], strict=True))
        assert fields[b"status"] == b"started"
        assert fields.keys() <= PLAIN_FIELDS
        assert_same(fields, JobTemplate(Job, conn, SERIALIZERS["json"]))


CALL = b'["worker.examples.noop", null, [], {}]'

HAND_MADE: list[tuple[str, dict[bytes, bytes]]] = [
    ("empty fields as RQ writes them", {b"data": CALL, b"status": b"queued", b"created_at": b"", b"origin": b"",
     b"worker_name": b"", b"group_id": b"", b"started_at": b"", b"ended_at": b"", b"last_heartbeat": b"",
     b"success_callback_name": b"", b"timeout": b""}),
    ("no created_at, no status", {b"data": CALL}),
    ("compressed call", {b"data": zlib.compress(CALL), b"status": b"queued"}),
    ("a zlib header on data that is no zlib stream", {b"data": b"x\x9cnot deflate", b"status": b"queued"}),
    ("one byte of data", {b"data": b"x"}),
    ("empty data", {b"data": b""}),
    ("no data", {b"status": b"queued", b"origin": b"default"}),
    ("a timeout with a unit", {b"data": CALL, b"timeout": b"1h"}),
    ("a timeout that is no number", {b"data": CALL, b"timeout": b"soon"}),
    ("a status RQ does not know", {b"data": CALL, b"status": b"resting"}),
    ("undecodable meta", {b"data": CALL, b"meta": b"\x80\x81not meta"}),
    *((f"meta {meta!r}", {b"data": CALL, b"status": b"started", b"meta": meta}) for meta in (
        b'{"attempt": 1}', b'{"attempt": 123456789}', b'{"attempt": 1234567890123}', b'{"attempt": 0}',
        b'{"attempt": 01}', b'{"attempt":1}', b'{"attempt": 1, "x": 2}', b'{"attempt": "1"}',
        b'{"attempt": 1}\n')),
    ("every date", {b"data": CALL, **{name: b"2026-12-01T10:11:12.131415Z" for name in
     (b"created_at", b"enqueued_at", b"started_at", b"ended_at", b"last_heartbeat")}}),
    ("a date RQ wrote in another format", {b"data": CALL, b"created_at": b"2026-12-01T10:11:12Z"}),
    ("retries", {b"data": CALL, b"retries_left": b"2", b"retry_intervals": b"[1, 2]", b"number_of_retries": b"1"}),
    ("ttls", {b"data": CALL, b"ttl": b"5", b"result_ttl": b"-1", b"failure_ttl": b"0"}),
    ("a field restore passes over", {b"data": CALL, b"status": b"queued", b"something_else": b"1"}),
    ("a result", {b"data": CALL, b"status": b"finished", b"result": b"4"}),
    ("a result and an error", {b"data": CALL, b"result": b"4", b"exc_info": zlib.compress(b"Traceback")}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "fields"), HAND_MADE, ids=[case[0] for case in HAND_MADE])
def test_hand_made_hashes_read_as_rq_reads_them(
    name: str, fields: dict[bytes, bytes], template: JobTemplate[Job]
) -> None:
    assert_same(fields, template)


def test_the_common_hash_is_read_without_rq_restore(
    conn: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What this module is for: the hash of a plain job never reaches Job.restore (and its strptime)."""
    calls: list[Callable[..., Any]] = []
    monkeypatch.setattr(Job, "restore", lambda *args: calls.append(args[0]))
    job = Producer(redis_url, modules="worker.examples").enqueue("worker.examples.add", 1, 2)
    read = JobTemplate(Job, conn, SERIALIZERS["json"]).new(job.id)
    restore(read, conn.hgetall(job.key))  # type: ignore[arg-type]
    assert calls == []
    assert read.args == [1, 2]
    assert read.created_at == job.created_at
