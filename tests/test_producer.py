"""The Producer API against a real redis-server: what lands in RQ's keys, and what is refused."""

from __future__ import annotations

import datetime
import json
import zlib
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.job import Job, JobStatus

from producer import InvalidTaskError, Producer, RedisUnavailableError, Task, WaitTimeoutError
from producer.commands.redis_server import free_port
from tests.conftest import as_bytes, decoded
from worker import examples


def queued_ids(conn: redis.Redis, queue: str = "default") -> list[str]:
    return decoded(conn.lrange(f"rq:queue:{queue}", 0, -1))


def test_enqueue_writes_a_json_rq_job(producer: Producer, conn: redis.Redis) -> None:
    job = producer.enqueue("worker.examples.add", 2, 3, timeout=42, job_id="sum-1")
    assert isinstance(job, Job)
    assert queued_ids(conn) == ["sum-1"]
    stored = Job.fetch("sum-1", connection=conn, serializer="json")
    assert stored.func_name == "worker.examples.add"
    assert stored.args == [2, 3]
    assert stored.timeout == 42
    assert stored.get_status() == JobStatus.QUEUED
    # JSON (zlib-compressed when that makes it smaller), not pickle: any language or tool can read the payload.
    data = as_bytes(conn.hget("rq:job:sum-1", "data"))
    assert data.startswith(b"[")  # a call this short is stored as it is
    func, _instance, args, kwargs = json.loads(data)
    assert (func, args, kwargs) == ("worker.examples.add", [2, 3], {})


@pytest.mark.parametrize(("argument", "compressed"), [("a" * 60, False), ("a" * 90, True), ("0123456789" * 30, True)])
def test_a_call_is_stored_compressed_when_long_enough_and_smaller(
    producer: Producer, conn: redis.Redis, argument: str, compressed: bool
) -> None:
    """From 128 bytes (``producer.jobhash.COMPRESS_FROM``) a call is stored compressed when that is smaller; a
    shorter one is stored as it is, however well it would compress. RQ reads both."""
    job = producer.enqueue("worker.examples.add", argument, "")
    data = as_bytes(conn.hget(job.key, "data"))
    assert data.startswith(b"[") is not compressed
    assert (zlib.decompress(data) if compressed else data) == job.data
    assert Job.fetch(job.id, connection=conn, serializer="json").args == [argument, ""]


def test_task_kwargs_and_callables(producer: Producer) -> None:
    job = producer.enqueue(examples.record, "k", value="v", seconds=0.5)
    assert job.func_name == "worker.examples.record"
    assert job.kwargs == {"value": "v", "seconds": 0.5}
    # A task's own keyword named like an option goes through Task(kwargs=...).
    clash = producer.enqueue_many([Task("myapp.tasks.resize", kwargs={"timeout": 5, "queue": "x"})])[0]
    assert clash.kwargs == {"timeout": 5, "queue": "x"}


def test_default_timeout_and_retries_with_backoff(producer: Producer) -> None:
    job = producer.enqueue("worker.examples.noop", retries=4, retry_backoff=2)
    assert job.timeout == 180
    assert job.retries_left == 4
    assert job.retry_intervals == [2, 4, 8, 16]


def test_at_front_jumps_the_queue(producer: Producer, conn: redis.Redis) -> None:
    producer.enqueue("worker.examples.noop", job_id="first")
    producer.enqueue("worker.examples.noop", job_id="urgent", at_front=True)
    assert queued_ids(conn) == ["urgent", "first"]


def test_enqueue_many_is_one_atomic_batch_across_queues(producer: Producer, conn: redis.Redis) -> None:
    tasks = [Task("worker.examples.noop", job_id=f"j{i}", queue="high" if i % 2 else None) for i in range(6)]
    jobs = producer.enqueue_many(tasks)
    assert [j.id for j in jobs] == [f"j{i}" for i in range(6)]
    assert queued_ids(conn, "default") == ["j0", "j2", "j4"]
    assert queued_ids(conn, "high") == ["j1", "j3", "j5"]
    # One bad task refuses the whole batch: nothing half-enqueued.
    with pytest.raises(InvalidTaskError):
        producer.enqueue_many([Task("worker.examples.noop", job_id="ok"), Task("worker.examples.add", ({1},))])
    assert not conn.exists("rq:job:ok")


@pytest.mark.parametrize(
    ("args", "kwargs", "names"),
    [
        (({1, 2},), {}, ["argument 1", "set"]),
        ((1, b"raw"), {}, ["argument 2", "bytes"]),
        ((), {"when": datetime.date(2026, 1, 1)}, ["keyword argument 'when'", "date"]),
        ((), {"opts": {"deep": [1, object()]}}, ["keyword argument 'opts'['deep'][1]", "object"]),
        ((), {"table": {1: "a"}}, ["keyword argument 'table'", "key 1", "strings"]),
        ((float("nan"),), {}, ["argument 1", "nan"]),
    ],
)
def test_arguments_json_cannot_carry_are_refused_by_name(
    producer: Producer, conn: redis.Redis, args: tuple[Any, ...], kwargs: dict[str, Any], names: list[str]
) -> None:
    with pytest.raises(InvalidTaskError) as info:
        producer.enqueue("worker.examples.add", *args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert "TASK_SERIALIZER=pickle" in message
    for name in names:
        assert name in message
    assert conn.dbsize() == 0


def test_pickle_serializer_is_opt_in(redis_url: str, conn: redis.Redis) -> None:
    producer = Producer(redis_url, serializer="pickle")
    job = producer.enqueue("worker.examples.add", {1, 2}, datetime.date(2026, 1, 1))
    stored = Job.fetch(job.id, connection=conn, serializer="pickle")
    assert stored.args == ({1, 2}, datetime.date(2026, 1, 1))


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        ("noop", "dotted path"),
        ("os.path.", "dotted path"),
        ("my-app.tasks", "dotted path"),
        (lambda: None, "lambda"),
        (42, "dotted path"),
    ],
)
def test_malformed_function_is_refused(producer: Producer, conn: redis.Redis, func: object, expected: str) -> None:
    with pytest.raises(InvalidTaskError, match=expected):
        producer.enqueue(func)  # type: ignore[arg-type]
    assert conn.dbsize() == 0


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"queue": "bad queue"}, "not a valid queue name"),
        ({"queue": "rq:queue:x"}, "not a valid queue name"),
        ({"timeout": 0}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"job_id": "has space"}, "job_id .has space. is refused"),
    ],
)
def test_bad_options_are_refused(producer: Producer, conn: redis.Redis, options: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        producer.enqueue("worker.examples.noop", **options)
    assert conn.dbsize() == 0


def test_unreachable_redis_is_one_clear_error() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    producer = Producer(url)
    with pytest.raises(RedisUnavailableError) as info:
        producer.enqueue("worker.examples.noop")
    message = str(info.value)
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in message
    assert "s3cret" not in message
    assert "\n" not in message


def test_wait_times_out_with_a_clear_message(producer: Producer) -> None:
    job = producer.enqueue("worker.examples.noop")
    with pytest.raises(WaitTimeoutError, match=r"1 of 1 jobs not finished after 0.2s"):
        producer.wait([job], timeout=0.2)


def test_stats_count_every_registry(producer: Producer, conn: redis.Redis) -> None:
    producer.enqueue("worker.examples.noop")
    producer.enqueue("worker.examples.noop", queue="low")
    producer.enqueue("worker.examples.noop", queue="low")
    stats = producer.stats()
    assert set(stats) == {"default", "low"}
    assert (stats["default"].queued, stats["low"].queued) == (1, 2)
    assert stats["low"].started == stats["low"].failed == stats["low"].workers == 0
    assert Queue("low", connection=conn).count == 2


def test_from_env_reads_the_shared_settings(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("TASK_QUEUES", "high, default")
    monkeypatch.setenv("TASK_TIMEOUT", "30")
    producer = Producer.from_env()
    job = producer.enqueue("worker.examples.noop")
    assert (job.origin, job.timeout) == ("high", 30)


def test_task_args_must_be_a_sequence_of_arguments(producer: Producer) -> None:
    with pytest.raises(InvalidTaskError, match="args must be a list or tuple of arguments, not str"):
        producer.enqueue_many([Task("worker.examples.record", args="abc")])


class CountingConnection(redis.Connection):
    """A real connection that counts the requests it sends (a pipeline is one)."""

    sent = 0

    def send_packed_command(self, command: object, check_health: bool = True) -> None:
        type(self).sent += 1
        super().send_packed_command(command, check_health)


def test_enqueue_and_enqueue_many_cost_one_round_trip_each(redis_url: str, conn: redis.Redis) -> None:
    counted = redis.Redis.from_url(redis_url, connection_class=CountingConnection)
    producer = Producer(redis_url, connection=counted)
    # Warms the connection and loads both enqueue scripts (a handshake and a script load are not a task's cost).
    producer.enqueue("worker.examples.noop")
    producer.enqueue_many([Task("worker.examples.noop")] * 2)
    CountingConnection.sent = 0
    producer.enqueue("worker.examples.add", 1, 2)
    assert CountingConnection.sent == 1
    CountingConnection.sent = 0
    producer.enqueue_many([Task("worker.examples.noop", queue=f"q{i % 3}") for i in range(500)])
    assert CountingConnection.sent == 1
    assert conn.llen("rq:queue:q0") + conn.llen("rq:queue:q1") + conn.llen("rq:queue:q2") == 500


class LosesOneReply(redis.Connection):
    """A connection that drops once, right after Redis executed a command and before its reply arrived."""

    armed = False

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().read_response(*args, **kwargs)
        if LosesOneReply.armed:
            LosesOneReply.armed = False
            self.disconnect()
            raise redis.ConnectionError("connection lost before the reply")
        return response


@pytest.mark.parametrize("size", [1, 3], ids=["one task (enqueue_one.lua)", "a batch (enqueue.lua)"])
def test_a_batch_resent_after_a_lost_reply_is_written_once(redis_url: str, conn: redis.Redis, size: int) -> None:
    flaky = redis.Redis.from_url(redis_url, connection_class=LosesOneReply, retry=Retry(NoBackoff(), 3))
    producer = Producer(redis_url, connection=flaky)
    # Loads both scripts: the next call is one command.
    producer.enqueue_many([Task("worker.examples.noop", queue="warm")] * 2)
    producer.enqueue("worker.examples.noop", queue="warm")
    LosesOneReply.armed = True
    jobs = producer.enqueue_many([Task("worker.examples.add", (i, 1)) for i in range(size)])
    assert not LosesOneReply.armed, "the reply was not lost: this test tested nothing"
    # redis-py resent the batch; Redis had run it already, and the batch's receipt kept it from running twice.
    assert queued_ids(conn, "default") == [job.id for job in jobs]
