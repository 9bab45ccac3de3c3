"""RQ's job options through the Producer API: each writes exactly what RQ's own enqueue writes (every key, field
by field), real workers honour each, and bad values are refused with one line and nothing written."""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Callback, Queue
from rq.command import send_stop_job_command
from rq.job import Dependency, Job, JobStatus

from producer import DuplicateJobError, InvalidTaskError, Producer, Task, TaskProcessorError
from task_processor.settings import SERIALIZERS, Settings
from tests.conftest import Proc, local_fleet, wait_for

FUNC = "worker.examples.add"
NOTE = "worker.examples.note_outcome"
LATER = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
TIMESTAMPS = (b"created_at", b"enqueued_at")


def snapshot(conn: redis.Redis) -> dict[bytes, Any]:
    """Every key as RQ reads it: a hash without empty fields, its call decompressed and its timestamps reduced
    to their presence; a deferred registry's scores (the time of the enqueue) to 'now'; and whether it expires."""
    state: dict[bytes, Any] = {}
    for key in sorted(conn.scan_iter()):
        kind = conn.type(key)
        value: Any
        if kind == b"hash":
            value = {name: v for name, v in conn.hgetall(key).items() if v != b""}
            if b"data" in value:
                with contextlib.suppress(zlib.error):
                    value[b"data"] = zlib.decompress(value[b"data"])
            for name in TIMESTAMPS:
                if name in value:
                    value[name] = "<timestamp>"
        elif kind == b"list":
            value = conn.lrange(key, 0, -1)
        elif kind == b"set":
            value = conn.smembers(key)
        elif kind == b"zset":
            value = conn.zrange(key, 0, -1, withscores=True)
            if key.startswith(b"rq:deferred:"):
                value = [(member, "now" if abs(score - time.time()) < 60 else score) for member, score in value]
        else:
            value = kind
        state[key] = (value, "expires" if conn.ttl(key) > 0 else "")
    return state


def rq_queue(conn: redis.Redis, name: str = "default") -> Queue:
    return Queue(name, connection=conn, serializer=SERIALIZERS["json"], default_timeout=180)


def parent_unfinished(conn: redis.Redis, enqueue: Callable[[Task], Any]) -> None:
    enqueue(Task(FUNC, (1, 1), job_id="parent"))


def parent_finished(conn: redis.Redis, enqueue: Callable[[Task], Any]) -> None:
    enqueue(Task(FUNC, (1, 1), job_id="parent"))
    conn.hset(Job.key_for("parent"), "status", "finished")
    conn.lrem("rq:queue:default", 0, "parent")


CONTRACT: list[tuple[str, Task, Callable[[Queue], Job], Callable[..., None] | None]] = [
    (
        "meta",
        Task(FUNC, (1, 2), job_id="j", meta={"owner": "billing", "tags": [1, "é", None]}),
        lambda q: q.enqueue_call(FUNC, (1, 2), job_id="j", meta={"owner": "billing", "tags": [1, "é", None]}),
        None,
    ),
    (
        "result, failure ttl",
        Task(FUNC, (1, 2), job_id="j", result_ttl=60, failure_ttl=120),
        lambda q: q.enqueue_call(FUNC, (1, 2), job_id="j", result_ttl=60, failure_ttl=120),
        None,
    ),
    ("ttl", Task(FUNC, (1, 2), job_id="j", ttl=300), lambda q: q.enqueue_call(FUNC, (1, 2), job_id="j", ttl=300), None),
    (
        "description",
        Task(FUNC, (1, 2), job_id="j", description="nightly totals"),
        lambda q: q.enqueue_call(FUNC, (1, 2), job_id="j", description="nightly totals"),
        None,
    ),
    (
        "callbacks",
        Task(FUNC, (1, 2), job_id="j", on_success=NOTE, on_failure=NOTE, on_stopped=Callback(NOTE, timeout=5)),
        lambda q: q.enqueue_call(
            FUNC,
            (1, 2),
            job_id="j",
            on_success=Callback(NOTE),
            on_failure=Callback(NOTE),
            on_stopped=Callback(NOTE, timeout=5),
        ),
        None,
    ),
    ("at", Task(FUNC, (1, 2), job_id="j", at=LATER), lambda q: q.enqueue_at(LATER, FUNC, 1, 2, job_id="j"), None),
    (
        "at, at front, ttl",
        Task(FUNC, (1, 2), job_id="j", at=LATER, at_front=True, ttl=900),
        lambda q: q.enqueue_at(LATER, FUNC, 1, 2, job_id="j", at_front=True, ttl=900),
        None,
    ),
    (
        "depends on an unfinished job",
        Task(FUNC, (1, 2), job_id="j", depends_on="parent"),
        lambda q: q.enqueue_call(FUNC, (1, 2), job_id="j", depends_on="parent"),
        parent_unfinished,
    ),
    (
        "depends on a finished job",
        Task(FUNC, (1, 2), job_id="j", depends_on=["parent"]),
        lambda q: q.enqueue_call(FUNC, (1, 2), job_id="j", depends_on=["parent"]),
        parent_finished,
    ),
    (
        "a Dependency allowing failure, at front, with a ttl",
        Task(FUNC, (1, 2), job_id="j", ttl=600, depends_on=Dependency(["parent"], True, True)),
        lambda q: q.enqueue_call(FUNC, (1, 2), job_id="j", ttl=600, depends_on=Dependency(["parent"], True, True)),
        parent_unfinished,
    ),
    (
        "unique",
        Task(FUNC, (1, 2), job_id="j", unique=True),
        lambda q: q.enqueue_call(FUNC, (1, 2), job_id="j", unique=True),
        None,
    ),
]


@pytest.mark.parametrize(("task", "theirs", "setup"), [c[1:] for c in CONTRACT], ids=[c[0] for c in CONTRACT])
def test_each_option_writes_what_rq_writes(
    redis_url: str,
    conn: redis.Redis,
    task: Task,
    theirs: Callable[[Queue], Job],
    setup: Callable[..., None] | None,
) -> None:
    producer = Producer(redis_url)
    queue = rq_queue(conn)

    def rq_task(t: Task) -> Job:
        # RQ's func TypeVar refuses str | Callable, which it takes.
        return queue.enqueue_call(t.func, tuple(t.args), job_id=t.job_id)  # type: ignore[type-var]

    if setup is not None:
        setup(conn, rq_task)
    rq_job = theirs(queue)
    expected, read_back = snapshot(conn), Job.fetch("j", connection=conn, serializer=SERIALIZERS["json"]).to_dict()
    conn.flushall()
    if setup is not None:
        setup(conn, lambda t: producer.enqueue_many([t]))
    ours = producer.enqueue_many([task])[0]
    assert snapshot(conn) == expected
    fetched = Job.fetch("j", connection=conn, serializer=SERIALIZERS["json"]).to_dict()
    for state in (fetched, read_back):
        for name in ("created_at", "enqueued_at"):
            state.pop(name, None)
    assert fetched == read_back, "RQ reads our job differently from its own"
    assert ours.get_status(refresh=False) == rq_job.get_status(refresh=False)


# ------------------------------------------------------------------------------------------ with real workers


def test_a_delayed_job_waits_in_the_scheduled_registry_then_runs(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    job = producer.enqueue_in(timedelta(seconds=2), FUNC, 2, 3)
    at = producer.enqueue_at(datetime.now(UTC) + timedelta(seconds=1), FUNC, 5, b=5)
    assert {job.get_status(), at.get_status()} == {JobStatus.SCHEDULED}
    assert conn.zscore("rq:scheduled:default", job.id) is not None
    spawn("task-worker")
    assert producer.wait([job, at], timeout=30) == [5, 10]


def test_dependents_run_after_their_dependencies_and_carry_meta_and_callbacks(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    parent = producer.enqueue("worker.examples.record", "order", "parent", 1.0, meta={"step": 1})
    child = producer.enqueue(
        "worker.examples.record", "order", "child", depends_on=parent, meta={"step": 2}, on_success=NOTE
    )
    failing = producer.enqueue("worker.examples.fail", "no", on_failure=NOTE, result_ttl=0)
    assert child.get_status() == JobStatus.DEFERRED
    spawn("task-worker")
    producer.wait([parent, child], timeout=30)
    assert conn.lrange("order", 0, -1) == [b"parent", b"child"]
    fetched = producer.job(child.id)
    assert fetched is not None
    assert fetched.meta["step"] == 2
    wait_for(lambda: len(conn.lrange("callbacks", 0, -1)) == 2, what="both callbacks")
    assert set(conn.lrange("callbacks", 0, -1)) == {f"{child.id} success".encode(), f"{failing.id} failure".encode()}


def test_a_job_past_its_ttl_is_never_run(producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]) -> None:
    stale = producer.enqueue("worker.examples.record", "ran", "stale", ttl=1)
    wait_for(lambda: not conn.exists(Job.key_for(stale.id)), timeout=5, what="the job's hash to expire")
    fresh = producer.enqueue("worker.examples.record", "ran", "fresh")
    spawn("task-worker")
    producer.wait([fresh], timeout=30)
    assert conn.lrange("ran", 0, -1) == [b"fresh"]


def test_a_canceled_job_never_runs(producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]) -> None:
    canceled = producer.enqueue("worker.examples.record", "ran", "canceled")
    kept = producer.enqueue("worker.examples.record", "ran", "kept")
    assert producer.cancel(canceled.id).get_status() == JobStatus.CANCELED
    with pytest.raises(Exception, match="already canceled"):
        producer.cancel(canceled.id)
    with pytest.raises(Exception, match="no job nope"):
        producer.cancel("nope")
    assert producer.job("nope") is None
    spawn("task-worker")
    producer.wait([kept], timeout=30)
    assert conn.lrange("ran", 0, -1) == [b"kept"]
    assert canceled.id.encode() in conn.zrange("rq:canceled:default", 0, -1)


def test_unique_refuses_a_live_id_and_writes_nothing(producer: Producer, conn: redis.Redis) -> None:
    producer.enqueue(FUNC, 1, 1, job_id="nightly", unique=True)
    before = snapshot(conn)
    with pytest.raises(DuplicateJobError, match="nightly") as caught:
        producer.enqueue_many([Task(FUNC, (2, 2), job_id="other"), Task(FUNC, (3, 3), job_id="nightly", unique=True)])
    assert caught.value.job_id == "nightly"
    assert snapshot(conn) == before


# ----------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("task", "named"),
    [
        (Task(FUNC, delay=-1), "delay -1 must be a finite number of seconds >= 0"),
        (Task(FUNC, delay=timedelta(seconds=-5)), "must be a finite number of seconds >= 0"),
        (Task(FUNC, at=datetime(2031, 1, 1)), "has no time zone"),
        (Task(FUNC, delay=5, at=LATER), "not both"),
        (Task(FUNC, meta={"when": datetime.now(UTC)}), "meta['when'] is a datetime"),
        (Task(FUNC, meta=[1, 2]), "meta must be a dict"),  # type: ignore[arg-type]
        (Task(FUNC, result_ttl=-2), "result_ttl -2 must be -1 (for ever) or a whole number of seconds >= 0"),
        (Task(FUNC, failure_ttl=0), "failure_ttl 0"),
        (Task(FUNC, ttl=0), "ttl 0 must be a whole number of seconds >= 1"),
        (Task(FUNC, ttl="5"), "ttl '5'"),  # type: ignore[arg-type]
        (Task(FUNC, on_success="not a path"), "on_success: task function 'not a path' is not a dotted path"),
        (Task(FUNC, on_failure="os.system"), "on_failure: "),
        (Task(FUNC, unique=True), "unique=True needs a job_id"),
        (Task(FUNC, depends_on="a b"), "depends_on job id 'a b' is refused"),
        (Task(FUNC, depends_on="x", delay=5), "depends_on cannot be combined with a delay"),
    ],
)
def test_a_bad_option_is_refused_with_one_line_and_nothing_written(
    redis_url: str, conn: redis.Redis, task: Task, named: str
) -> None:
    producer = Producer(redis_url, modules="worker.examples")
    with pytest.raises(InvalidTaskError) as caught:
        producer.enqueue_many([Task(FUNC, (1, 1)), task])
    assert named in str(caught.value)
    assert "\n" not in str(caught.value)
    assert conn.dbsize() == 0


def test_an_unknown_dependency_is_refused_and_nothing_written(producer: Producer, conn: redis.Redis) -> None:
    with pytest.raises(InvalidTaskError, match="depends on ghost, which does not exist"):
        producer.enqueue_many([Task(FUNC, (1, 1)), Task(FUNC, (2, 2), depends_on="ghost")])
    assert conn.dbsize() == 0
    # A dependency earlier in the same batch is known.
    _, second = producer.enqueue_many([Task(FUNC, (1, 1), job_id="a"), Task(FUNC, (2, 2), depends_on="a")])
    assert second.get_status() == JobStatus.DEFERRED
    assert conn.smembers(Job.dependents_key_for("a")) == {second.id.encode()}


@pytest.mark.timeout(90)
def test_a_delayed_job_scales_workers_up_from_zero_when_due(
    env: dict[str, str], producer: Producer, conn: redis.Redis, tmp_path: Path
) -> None:
    """No worker runs RQ's scheduler at zero workers: the autoscaler moves the due job, then scales for it."""
    settings = Settings.from_env({**env, "AUTOSCALE_MAX": "2", "AUTOSCALE_START_SPARES": "0"})
    with local_fleet(conn, settings, tmp_path / "w.log") as (_, autoscaler):
        job = producer.enqueue_in(1.5, FUNC, 20, 22)
        assert [e.desired for e in autoscaler.events] == []  # nothing to do while it is not due
        assert producer.wait([job], timeout=60) == [42]
    assert autoscaler.events[0].previous == 0


def test_result_and_failure_ttls_and_description_hold_on_a_real_worker(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    kept = producer.enqueue(FUNC, 1, 1, result_ttl=60, description="kept a minute")
    dropped = producer.enqueue(FUNC, 2, 2, result_ttl=0)
    failed = producer.enqueue("worker.examples.fail", "no", failure_ttl=90)
    spawn("task-worker")
    wait_for(lambda: failed.get_status() == JobStatus.FAILED, timeout=30, what="the failing job to fail")
    wait_for(lambda: kept.get_status() == JobStatus.FINISHED, timeout=30, what="the kept job to finish")
    assert 50 < conn.ttl(Job.key_for(kept.id)) <= 60
    assert conn.hget(Job.key_for(kept.id), "description") == b"kept a minute"
    wait_for(lambda: not conn.exists(Job.key_for(dropped.id)), timeout=30, what="result_ttl=0 to drop the job")
    expires = conn.zscore("rq:failed:default", failed.id)
    assert expires is not None
    assert abs(expires - (time.time() + 90)) < 10


def test_a_stopped_job_runs_its_stopped_callback(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    job = producer.enqueue("worker.examples.sleep", 30, on_stopped=NOTE, on_failure=NOTE)
    spawn("task-worker")
    wait_for(lambda: job.get_status() == JobStatus.STARTED, timeout=30, what="the job to start")
    send_stop_job_command(conn, job.id, serializer=SERIALIZERS["json"])
    wait_for(lambda: job.get_status() == JobStatus.STOPPED, timeout=30, what="the job to stop")
    wait_for(lambda: conn.lrange("callbacks", 0, -1), timeout=30, what="the stopped callback")
    assert conn.lrange("callbacks", 0, -1) == [f"{job.id} stopped".encode()]


def test_a_job_in_a_concurrency_slot_is_stopped_too(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    """In a slot's thread the stop lands at the task's next Python instruction (a long loop here)."""
    job = producer.enqueue("worker.examples.compute", 10**10, on_stopped=NOTE)
    other = producer.enqueue(FUNC, 1, 2)
    spawn("task-worker", "--concurrency", "2")
    wait_for(lambda: job.get_status() == JobStatus.STARTED, timeout=30, what="the job to start")
    send_stop_job_command(conn, job.id, serializer=SERIALIZERS["json"])
    wait_for(lambda: job.get_status() == JobStatus.STOPPED, timeout=30, what="the job to stop")
    wait_for(lambda: conn.lrange("callbacks", 0, -1), timeout=30, what="the stopped callback")
    assert conn.lrange("callbacks", 0, -1) == [f"{job.id} stopped".encode()]
    assert producer.wait([other], timeout=30) == [3]


@pytest.mark.parametrize(
    ("registry", "task"),
    [
        ("rq:scheduled:default", Task(FUNC, (1, 1), delay=5)),
        ("rq:deferred:default", Task(FUNC, (1, 1), depends_on="parent")),
    ],
)
def test_a_registry_holding_foreign_data_refuses_the_batch(
    producer: Producer, conn: redis.Redis, registry: str, task: Task
) -> None:
    producer.enqueue(FUNC, 0, 0, job_id="parent")
    conn.set(registry, "not RQ's")
    before = snapshot(conn)
    with pytest.raises(TaskProcessorError, match=registry):
        producer.enqueue_many([Task(FUNC, (2, 2)), task])
    assert snapshot(conn) == before
    producer.enqueue(FUNC, 3, 3)  # a batch that does not touch the registry is not refused
