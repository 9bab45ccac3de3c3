"""A worker's calls sent again after their reply was lost with the connection, as when Redis restarts or fails over
at that moment and redis-py retries: a finish records its job once, a pop hands over the jobs its first send took
(not others, which would leave those started for nobody until the reaper saw them), and a finish posted while the
worker ran on is posted again while Redis is away. The loss is injected into the worker's own connection
(``tests.faults.losing_a_reply``), against a real redis-server.
"""

from __future__ import annotations

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from producer import Producer, Task
from task_processor.connection import connect
from task_processor.packing import read_reply
from tests.conftest import decoded, wait_for
from tests.faults import losing_a_finish_reply, losing_a_reply
from tests.test_batched_pops import FixedBatch, attempts, in_process_worker, runs
from worker import wake
from worker.batching import Call
from worker.runner import TaskWorker


def retrying_worker(redis_url: str) -> TaskWorker:
    """An in-process worker connected as task-worker connects (retries included), TASK_ABANDON_AFTER at its default."""
    return in_process_worker(redis_url, connect(redis_url), abandon_after=30)


def test_a_finish_sent_again_after_its_reply_was_lost_records_the_job_once(
    redis_url: str, producer: Producer, conn: redis.Redis
) -> None:
    """The connection breaks after Redis ran a job's finish and before its reply came back, as when Redis restarts
    or fails over at that moment: the worker sends the finish again, as redis-py retries any command. The job is
    recorded once all the same: one result (rq-dashboard lists each), counted once in the worker's totals."""
    job = producer.enqueue("worker.examples.add", 1, 2)
    worker = retrying_worker(redis_url)
    lost = losing_a_finish_reply(worker, conn)
    worker.work(burst=True)
    assert [call.args[0] for call in lost] == [job.id]  # the finish ran, and was sent again
    job = Job.fetch(job.id, connection=conn, serializer=JSONSerializer)
    assert job.get_status() == "finished"
    assert [result.return_value for result in job.results()] == [3]
    assert conn.hmget(worker.key, "successful_job_count", "failed_job_count") == [b"1", None]


def test_a_posted_finish_that_could_not_reach_redis_is_posted_again_and_recorded_once(
    redis_url: str, producer: Producer, conn: redis.Redis
) -> None:
    """With its next job in hand, a worker posts a job's finish and runs on; when that finish cannot reach Redis (a
    restart, a failover), the worker posts it again, a pause apart, until Redis records it (within half of
    TASK_ABANDON_AFTER), rather than leave a job that ran to run again. Here the first three sends of posted
    finishes fail: every job ends finished on its first run."""
    jobs = producer.enqueue_many([Task("worker.examples.record", ("done", str(i))) for i in range(8)])
    worker = in_process_worker(redis_url, conn, abandon_after=30)  # no retries of its own: each failure reaches it
    worker._pacer = FixedBatch(4)
    calls, finish = worker._fast.calls, worker._fast._finish
    conn.script_load(finish.script)
    exchange, failed = calls._exchange, list[int]()

    def away_for_the_first_posted_finishes(batch: list[Call]) -> None:
        if len(failed) < 3 and any(call.script is finish and call.posted for call in batch):
            failed.append(len(batch))
            raise redis.ConnectionError("Redis is away")
        exchange(batch)

    calls._exchange = away_for_the_first_posted_finishes  # type: ignore[method-assign]
    worker.work(burst=True)
    assert len(failed) == 3
    assert sorted(runs(conn)) == [str(i) for i in range(8)]  # each once
    assert [conn.hget(job.key, "status") for job in jobs] == [b"finished"] * 8
    assert attempts(conn, jobs) == [1] * 8


def test_a_finish_that_popped_sent_again_after_its_reply_was_lost_hands_over_the_jobs_it_popped(
    redis_url: str, producer: Producer, conn: redis.Redis
) -> None:
    """A finish that pops the worker's next jobs runs in Redis, and the connection breaks before its reply comes
    back; the worker sends it again (redis-py's retry). The second send hands over the jobs the first one started for
    this worker, instead of popping others and leaving those started for nobody until the reaper sees them: a burst
    worker runs every job once and leaves none started."""
    jobs = producer.enqueue_many([Task("worker.examples.record", ("done", str(i))) for i in range(12)])
    worker = retrying_worker(redis_url)
    worker._pacer = FixedBatch(2)
    lost = losing_a_finish_reply(worker, conn, popping=True)
    worker.work(burst=True)
    assert len(lost) == 1
    assert conn.llen("rq:queue:default") == 0
    assert sorted(runs(conn), key=int) == [str(i) for i in range(12)]  # each once
    assert [conn.hget(job.key, "status") for job in jobs] == [b"finished"] * 12
    assert conn.zcard("rq:wip:default") == 0


def test_a_pop_sent_again_after_its_reply_was_lost_hands_over_the_jobs_it_took(
    redis_url: str, producer: Producer, conn: redis.Redis
) -> None:
    """A pop of its own (a worker's first) takes and starts two jobs, and the connection breaks before its reply
    comes back; sent again, it hands over those two rather than take the next ones and leave them started for nobody
    until the reaper sees them."""
    jobs = producer.enqueue_many([Task("worker.examples.noop") for _ in range(3)])
    worker = retrying_worker(redis_url)
    pop = worker._fast._pop
    lost = losing_a_reply(worker, conn, lambda call: call.script is pop, lambda _: conn.zcard("rq:wip:default") == 2)
    taken = worker._dequeue.take(timeout=None, batch=2)
    assert len(lost) == 1
    assert taken is not None
    assert [taken.job.id, *(hit.job_id.decode() for hit in worker._dequeue.held)] == [jobs[0].id, jobs[1].id]
    started = sorted(entry.split(":")[0] for entry in decoded(conn.zrange("rq:wip:default", 0, -1)))
    assert started == sorted([jobs[0].id, jobs[1].id])  # each started once, and only those
    assert decoded(conn.lrange("rq:queue:default", 0, -1)) == [jobs[2].id]


def test_a_wake_whose_pop_reply_was_lost_hands_over_the_job_that_pop_took(
    redis_url: str, producer: Producer, conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle worker's pop runs the moment a job arrives, and the connection breaks before its reply comes back; the
    worker sends the pop again (without the wait), and that hands over the job the first send started for this
    worker, instead of popping another and leaving that one started for nobody until the reaper sees it."""
    worker = retrying_worker(redis_url)
    conn.script_load(worker._fast._pop.script)  # its first send runs it (not a NOSCRIPT reply that loads it)
    job = producer.enqueue("worker.examples.noop")
    read, replies, lost = read_reply, list[object](), list[str]()

    def losing_the_pops_first_reply(wire: redis.Connection) -> object:
        if len(replies) == 1 and not lost:  # the wait's reply came; the pop's is lost once Redis ran it
            wait_for(lambda: conn.hget(job.key, "status") == b"started", timeout=10, what="the pop to run")
            lost.append(job.id)
            raise redis.ConnectionError("connection reset after the pop ran")
        replies.append(reply := read(wire))
        return reply

    monkeypatch.setattr(wake, "read_reply", losing_the_pops_first_reply)
    worker._dequeue.found_empty = True  # as after a pop that found the queue empty: the next take waits first
    taken = worker._dequeue.take(timeout=1)
    assert lost == [job.id]
    assert taken is not None
    assert taken.execution is not None  # started by the pop
    assert taken.job.id == job.id
    assert decoded(conn.zrange("rq:wip:default", 0, -1)) == [f"{job.id}:{taken.execution.id}"]  # started once
    assert conn.hget(worker.key, "current_job") == job.id.encode()
