"""What a finished job keeps in Redis: a job that returned None keeps no result stream (RQ reads it as None all
the same), which is most of a finished no-op job's memory; one with earlier results keeps its new one."""

from __future__ import annotations

from collections.abc import Callable

import redis
from rq.job import Job, JobStatus
from rq.results import Result

from producer import Producer
from task_processor.settings import SERIALIZERS
from tests.conftest import Proc


def run_all(spawn: Callable[..., Proc]) -> None:
    worker = spawn("task-worker", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()[-2000:]


def test_a_none_result_keeps_no_stream_and_reads_as_none(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    nothing, three = producer.enqueue("worker.examples.noop"), producer.enqueue("worker.examples.add", 1, 2)
    run_all(spawn)
    assert nothing.get_status() == three.get_status() == JobStatus.FINISHED
    assert not conn.exists(f"rq:results:{nothing.id}")
    assert (nothing.return_value(refresh=True), nothing.latest_result()) == (None, None)
    assert three.return_value(refresh=True) == 3
    assert conn.exists(f"rq:results:{three.id}")
    assert producer.wait([nothing, three], timeout=5) == [None, 3]


def test_a_none_result_after_earlier_results_is_recorded(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    """A job whose stream holds a failed attempt gets its success entry: else its latest result would be the
    failure, and rq-dashboard would show that traceback for a finished job."""
    job = producer.enqueue("worker.examples.noop")
    rq_job = Job.fetch(job.id, connection=conn, serializer=SERIALIZERS["json"])
    Result.create_failure(rq_job, ttl=500, exc_string="an earlier attempt failed")
    run_all(spawn)
    latest = Job.fetch(job.id, connection=conn, serializer=SERIALIZERS["json"]).latest_result()
    assert latest is not None
    assert latest.type == Result.Type.SUCCESSFUL
    assert latest.return_value is None
