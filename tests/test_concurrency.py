"""``task-worker --concurrency N``: N slots in one process, each an RQ worker of its own."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import redis
from rq.job import JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry

from producer import Producer, Task
from task_processor.observe import list_workers
from tests.conftest import Proc, decoded, exc_string, run, wait_for


def running(conn: redis.Redis) -> int:
    return len(StartedJobRegistry("default", connection=conn).get_job_ids())


def test_slots_are_workers_of_their_own_and_run_jobs_side_by_side(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    jobs = producer.enqueue_many([Task("worker.examples.record", ("done", str(i), 2.0)) for i in range(3)])
    worker = spawn("task-worker", "--concurrency", "3")
    wait_for(lambda: running(conn) == 3, what="three jobs running at once")
    workers = list_workers(conn)
    assert len(workers) == 3
    assert len({w.name for w in workers}) == 3
    assert {w.pid for w in workers} == {worker.pid}
    assert [w.state for w in workers] == ["busy"] * 3
    assert sorted(w.current_job for w in workers if w.current_job is not None) == sorted(job.id for job in jobs)
    assert producer.wait(jobs, timeout=30) == ["0", "1", "2"]
    wait_for(lambda: {w.state for w in list_workers(conn)} == {"idle"}, what="the slots to go idle")


def test_sigterm_lets_every_slot_finish_its_job_and_take_no_new_one(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    slow = producer.enqueue_many([Task("worker.examples.record", ("done", f"slow{i}", 1.5)) for i in range(2)])
    waiting = producer.enqueue("worker.examples.record", "done", "next")
    worker = spawn("task-worker", "--concurrency", "2")
    wait_for(lambda: running(conn) == 2, what="both slow jobs to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0, worker.output()[-2000:]
    assert sorted(decoded(conn.lrange("done", 0, -1))) == ["slow0", "slow1"]
    assert all(job.get_status(refresh=True) == JobStatus.FINISHED for job in slow)
    assert conn.lrange("rq:queue:default", 0, -1) == [waiting.id.encode()]
    assert list_workers(conn) == []
    assert conn.scard("rq:workers") == 0


def test_a_second_signal_puts_every_running_job_back_at_the_front(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    slow = producer.enqueue_many([Task("worker.examples.record", ("done", f"slow{i}", 60)) for i in range(2)])
    waiting = producer.enqueue("worker.examples.noop")
    worker = spawn("task-worker", "--concurrency", "2")
    wait_for(lambda: running(conn) == 2, what="both slow jobs to start")
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "warm shutdown" in worker.output(), what="the warm shutdown line")
    worker.signal(signal.SIGINT)
    assert worker.wait(timeout=10) == 1
    queued = decoded(conn.lrange("rq:queue:default", 0, -1))
    assert sorted(queued[:2]) == sorted(job.id for job in slow)
    assert queued[2:] == [waiting.id]
    assert all(job.get_status(refresh=True) == JobStatus.QUEUED for job in slow)
    assert running(conn) == 0
    assert conn.lrange("done", 0, -1) == []
    assert [line["outcome"] for line in worker.json_lines() if line.get("event") == "job"] == [
        "interrupted-requeued"
    ] * 2
    assert conn.scard("rq:workers") == 0


def test_a_job_timeout_stops_the_task_in_its_slot(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    endless = producer.enqueue("worker.examples.compute", 10**12, timeout=1)
    after = producer.enqueue("worker.examples.add", 1, 2)
    spawn("task-worker", "--concurrency", "2")
    wait_for(
        lambda: endless.id in FailedJobRegistry("default", connection=conn).get_job_ids(),
        timeout=20,
        what="the endless job to time out",
    )
    assert "JobTimeoutException: Task exceeded maximum timeout value (1 seconds)" in exc_string(endless)
    assert producer.wait([after], timeout=10) == [3]
    assert len(list_workers(conn)) == 2  # both slots lived on


def test_max_jobs_counts_the_whole_process(producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]) -> None:
    jobs = producer.enqueue_many([Task("worker.examples.noop") for _ in range(10)])
    worker = spawn("task-worker", "--concurrency", "2", "--max-jobs", "4")
    assert worker.wait(timeout=30) == 0, worker.output()[-2000:]
    finished = FinishedJobRegistry("default", connection=conn).get_job_ids()
    queued = decoded(conn.lrange("rq:queue:default", 0, -1))
    assert 4 <= len(finished) <= 5, finished  # a slot finishes the job it holds
    # Every job either finished or is still queued: none lost on the way out, none run twice.
    assert sorted(finished + queued) == sorted(job.id for job in jobs)
    statuses = [job.get_status(refresh=True) for job in jobs]
    assert statuses.count(JobStatus.FINISHED) == len(finished)
    assert statuses.count(JobStatus.QUEUED) == len(queued)
    assert conn.llen("rq:queue:default:intermediate") == 0


def test_name_and_concurrency_together_are_refused(env: dict[str, str]) -> None:
    result = run(["task-worker", "--concurrency", "2", "--name", "x"], env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "--name names one worker" in result.stderr


def test_many_slots_each_get_their_connections(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    """An idle slot holds a blocking pop and RQ's pubsub, and a heartbeat now and then: 60 idle slots need more
    connections than redis-py's default pool of 100."""
    worker = spawn("task-worker", "--concurrency", "60")
    wait_for(lambda: len(list_workers(conn)) == 60, what="60 slots registered")
    time.sleep(2)  # every slot idle in its blocking pop
    jobs = producer.enqueue_many([Task("worker.examples.record", ("done", str(i), 0.5)) for i in range(60)])
    assert producer.wait(jobs, timeout=60) == [str(i) for i in range(60)]
    assert "Too many connections" not in worker.output()
