"""``task-worker`` as a real process against a real redis-server: order, priority, retries, shutdown, logs."""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable
from datetime import datetime

import pytest
import redis
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry

from producer import Producer, Task, TaskFailedError
from producer.commands.redis_server import free_port
from task_processor.connection import connect
from task_processor.settings import Settings
from tests.conftest import TASK_MODULES, Proc, exc_string, job_lines, recorded, run, wait_for
from worker.runner import build_worker


def started(conn: redis.Redis, job_id: str, queue: str = "default") -> bool:
    return job_id in StartedJobRegistry(queue, connection=conn).get_job_ids()


def test_fifo_order_holds_for_1000_tasks(producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]) -> None:
    producer.enqueue_many(Task("worker.examples.record", ("order", str(i))) for i in range(1000))
    worker = spawn("task-worker", "--burst")
    assert worker.wait(timeout=120) == 0, worker.output()[-2000:]
    assert recorded(conn, "order") == [str(i) for i in range(1000)]
    lines = job_lines(worker)
    assert len(lines) == 1000
    assert {line["outcome"] for line in lines} == {"finished"}


def test_higher_priority_queues_drain_first(producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]) -> None:
    for i in range(5):
        producer.enqueue("worker.examples.record", "ran", f"low{i}", queue="low")
        producer.enqueue("worker.examples.record", "ran", f"high{i}", queue="high")
    worker = spawn("task-worker", "--queue", "high", "--queue", "low", "--burst")
    assert worker.wait(timeout=60) == 0, worker.output()[-2000:]
    assert recorded(conn, "ran") == [f"high{i}" for i in range(5)] + [f"low{i}" for i in range(5)]


def test_task_queues_env_sets_priority(producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]) -> None:
    producer.enqueue("worker.examples.record", "ran", "b", queue="b")
    producer.enqueue("worker.examples.record", "ran", "a", queue="a")
    worker = spawn("task-worker", "--burst", extra_env={"TASK_QUEUES": "a,b"})
    assert worker.wait(timeout=60) == 0, worker.output()[-2000:]
    assert recorded(conn, "ran") == ["a", "b"]


def test_retries_back_off_then_land_in_the_failed_registry(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    job = producer.enqueue("worker.examples.flaky", 99, retries=2, retry_backoff=1)
    worker = spawn("task-worker")
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.FAILED, timeout=30, what="the job to fail for good")
    assert job.id in FailedJobRegistry("default", connection=conn).get_job_ids()
    job.refresh()
    assert job.meta["attempt"] == 3
    # One log line per attempt, spaced by the backoff: 1 s, then 2 s, each plus up to one tick of RQ's scheduler
    # (it moves a due job to its queue once a second).
    lines = job_lines(worker)
    assert [line["outcome"] for line in lines] == ["retry-scheduled", "retry-scheduled", "failed"]
    assert [line["attempt"] for line in lines] == [1, 2, 3]
    times = [datetime.fromisoformat(line["timestamp"]) for line in lines]
    first_gap, second_gap = ((later - earlier).total_seconds() for earlier, later in itertools.pairwise(times))
    assert 0.9 <= first_gap < 2.6
    assert 1.9 <= second_gap < 3.6
    with pytest.raises(TaskFailedError, match=r"ended failed: RuntimeError: attempt 3 of a flaky task failed"):
        producer.wait([job], timeout=5)


def test_a_retried_task_can_succeed(producer: Producer, spawn: Callable[..., Proc]) -> None:
    job = producer.enqueue("worker.examples.flaky", 1, retries=3, retry_backoff=0)
    spawn("task-worker")
    assert producer.wait([job], timeout=30) == [2]


def test_wait_returns_results_in_order(producer: Producer, spawn: Callable[..., Proc]) -> None:
    jobs = producer.enqueue_many([Task("worker.examples.add", (i, i)) for i in range(20)])
    spawn("task-worker")
    progress: list[tuple[int, int]] = []
    assert producer.wait(jobs, timeout=30, on_progress=lambda d, t: progress.append((d, t))) == [
        2 * i for i in range(20)
    ]
    assert progress[-1] == (20, 20)


def test_each_job_is_the_current_job_while_it_runs_and_only_then(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    """``rq.get_current_job()`` names the running job inside it (the worker's job stack), and nothing once it has
    returned: its success callback, which RQ runs after the job, sees no job, for every job of a worker."""
    jobs = producer.enqueue_many(
        [Task("worker.examples.record_current", ("seen",), on_success="worker.examples.note_current")] * 5
    )
    assert spawn("task-worker", "--burst").wait(timeout=60) == 0
    assert [line.split()[0] for line in recorded(conn, "seen")] == [job.id for job in jobs]
    assert recorded(conn, "current") == [f"{job.id} none" for job in jobs]


def test_unknown_function_fails_the_job_with_a_clear_error(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    job = producer.enqueue("nosuchapp.tasks.resize", "a.png")
    after = producer.enqueue("worker.examples.add", 1, 2)
    # An allowed module that is not installed where the worker runs.
    worker = spawn("task-worker", "--burst", extra_env={"TASK_MODULES": "worker.examples,nosuchapp"})
    assert worker.wait(timeout=60) == 0, worker.output()[-2000:]
    assert job.id in FailedJobRegistry("default", connection=conn).get_job_ids()
    assert "cannot import task function 'nosuchapp.tasks.resize'" in exc_string(job)
    # The worker survived and went on with the next task.
    assert producer.wait([after], timeout=5) == [3]
    failed = [line for line in job_lines(worker) if line["outcome"] == "failed"]
    assert failed[0]["func"] == "nosuchapp.tasks.resize"
    assert "cannot import task function" in failed[0]["error"]


def test_one_structured_line_per_job(producer: Producer, spawn: Callable[..., Proc]) -> None:
    ok = producer.enqueue("worker.examples.add", 1, 2, queue="q1")
    bad = producer.enqueue("worker.examples.fail", "boom", queue="q1")
    worker = spawn("task-worker", "--queue", "q1", "--burst")
    assert worker.wait(timeout=60) == 0
    lines = {line["job_id"]: line for line in job_lines(worker)}
    assert set(lines) == {ok.id, bad.id}
    for line in lines.values():
        assert line["queue"] == "q1"
        assert line["attempt"] == 1
        assert line["duration_ms"] >= 0
        assert line["timestamp"].endswith("Z")
    assert lines[ok.id]["func"] == "worker.examples.add"
    assert (lines[ok.id]["outcome"], lines[ok.id]["level"]) == ("finished", "info")
    assert (lines[bad.id]["outcome"], lines[bad.id]["level"]) == ("failed", "error")
    assert lines[bad.id]["error"] == "RuntimeError: boom"
    # Every line the worker printed is structured, RQ's own included.
    assert all(line.startswith("{") for line in worker.output().splitlines() if line.strip())


def test_sigterm_finishes_the_running_task_and_takes_no_new_one(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    running = producer.enqueue("worker.examples.record", "done", "slow", seconds=1.5)
    waiting = producer.enqueue("worker.examples.record", "done", "next")
    worker = spawn("task-worker")
    wait_for(lambda: started(conn, running.id), what="the slow task to start")
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    assert recorded(conn, "done") == ["slow"]
    assert running.get_status(refresh=True) == JobStatus.FINISHED
    assert waiting.get_status(refresh=True) == JobStatus.QUEUED
    assert conn.lrange("rq:queue:default", 0, -1) == [waiting.id.encode()]
    assert conn.scard("rq:workers") == 0


def test_second_signal_stops_at_once_and_requeues_the_task_at_the_front(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    running = producer.enqueue("worker.examples.record", "done", "slow", seconds=60)
    waiting = producer.enqueue("worker.examples.noop")
    worker = spawn("task-worker")
    wait_for(lambda: started(conn, running.id), what="the slow task to start")
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "warm shutdown" in worker.output(), what="the warm shutdown log line")
    worker.signal(signal.SIGINT)
    assert worker.wait(timeout=10) != 0
    assert recorded(conn, "done") == []
    assert running.get_status(refresh=True) == JobStatus.QUEUED
    assert conn.lrange("rq:queue:default", 0, -1) == [running.id.encode(), waiting.id.encode()]
    assert not started(conn, running.id)
    assert [line["outcome"] for line in job_lines(worker)] == ["interrupted-requeued"]


@pytest.mark.parametrize("cold_stop", [True, False], ids=["interrupted-requeued", "failed"])
def test_a_heartbeat_after_a_jobs_end_does_not_put_it_back_in_started(
    producer: Producer, conn: redis.Redis, redis_url: str, cold_stop: bool
) -> None:
    """The heartbeat thread beats on its own clock; one that falls just after an interrupted or failed job's
    bookkeeping must not put the job back in its started registry (the reaper would run it once more)."""
    worker = build_worker(Settings(redis_url=redis_url, task_modules=(TASK_MODULES,)), connect(redis_url))
    job = producer.enqueue("worker.examples.noop")
    taken = worker._dequeue.take(timeout=None)
    assert taken is not None
    assert started(conn, job.id)  # the pop started it
    worker.execution = taken.execution
    worker._heartbeat.running(taken.job)
    worker._cold_stop = cold_stop
    worker.handle_job_failure(taken.job, taken.queue, exc_string="RuntimeError: boom")
    worker._heartbeat.beat()  # the thread's next beat, right after the bookkeeping
    assert not started(conn, job.id)
    expected = JobStatus.QUEUED if cold_stop else JobStatus.FAILED
    assert job.get_status(refresh=True) == expected


def test_check_passes_only_while_the_worker_lives(env: dict[str, str], spawn: Callable[..., Proc]) -> None:
    assert run(["task-worker", "check"], env).returncode == 1
    worker = spawn("task-worker")
    wait_for(lambda: run(["task-worker", "check"], env).returncode == 0, what="the probe to pass")
    name = next(line["worker"] for line in worker.json_lines() if line.get("event") == "worker starting")
    assert run(["task-worker", "check", "--name", name], env).returncode == 0
    assert run(["task-worker", "check", "--name", "someone-else"], env).returncode == 1
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=20) == 0
    failed = run(["task-worker", "check"], env)
    assert failed.returncode == 1
    assert "not registered and alive" in failed.stderr


@pytest.mark.parametrize(
    ("command", "passes"),
    [
        pytest.param(["task-worker"], False, id="worker"),
        # The liveness probe: restarting workers cannot bring Redis back, and would interrupt their jobs.
        pytest.param(["task-worker", "check"], True, id="probe"),
    ],
)
def test_unreachable_redis_is_one_line(env: dict[str, str], command: list[str], passes: bool) -> None:
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    result = run(command, {**env, "REDIS_URL": url})
    assert (result.returncode == 0) is passes
    assert result.stderr.count("\n") == 1, result.stderr
    assert "cannot reach Redis at redis://:***@127.0.0.1" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TASK_QUEUES", "a b", "TASK_QUEUES: 'a b' is not a valid queue name"),
        ("TASK_SERIALIZER", "yaml", "TASK_SERIALIZER='yaml' is not supported: use one of json, pickle"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL must start with redis://"),
        ("WORKER_MAX_MEMORY", "lots", "WORKER_MAX_MEMORY='lots' is not a number"),
    ],
)
def test_bad_settings_are_one_line_errors(env: dict[str, str], variable: str, value: str, expected: str) -> None:
    result = run(["task-worker", "--burst"], {**env, variable: value})
    assert result.returncode == 2
    assert result.stderr.strip() == f"task-worker: error: {expected}" or expected in result.stderr
    assert result.stderr.count("\n") == 1


def test_max_jobs_recycles_the_process(producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]) -> None:
    jobs = producer.enqueue_many([Task("worker.examples.noop") for _ in range(5)])
    worker = spawn("task-worker", "--max-jobs", "2")
    assert worker.wait(timeout=30) == 0
    # The second job's finish had already popped and started the third: it goes back to the front, as it was.
    assert conn.lrange("rq:queue:default", 0, -1) == [job.id.encode() for job in jobs[2:]]
    for job in jobs[2:]:
        stored = Job.fetch(job.id, connection=conn, serializer="json")
        assert (stored.get_status(), stored.meta) == (JobStatus.QUEUED, {})  # no attempt counted
    assert StartedJobRegistry("default", connection=conn).get_job_ids() == []
    assert conn.keys("rq:execution*") == []
    assert conn.llen("rq:queue:default:intermediate") == 0
    spawn("task-worker", "--burst").wait(timeout=30)
    assert [Job.fetch(j.id, connection=conn, serializer="json").meta for j in jobs] == [{"attempt": 1}] * 5


@pytest.mark.parametrize("how", ["option", "environment"])
def test_max_memory_recycles_the_process_after_the_job_that_crossed_it(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc], how: str
) -> None:
    small = producer.enqueue("worker.examples.hog", 1)
    big = producer.enqueue("worker.examples.hog", 200)
    after = producer.enqueue("worker.examples.noop")
    if how == "option":
        worker = spawn("task-worker", "--max-memory", "150")
    else:
        worker = spawn("task-worker", extra_env={"WORKER_MAX_MEMORY": "150"})
    assert worker.wait(timeout=30) == 0, worker.output()[-2000:]
    assert producer.wait([small, big], timeout=5) == [1, 201]  # the small one did not stop it; the big one did
    assert conn.lrange("rq:queue:default", 0, -1) == [after.id.encode()]
    recycled = [line for line in worker.json_lines() if line.get("event") == "recycling the worker process"]
    assert len(recycled) == 1
    assert "above --max-memory 150" in recycled[0]["reason"]
