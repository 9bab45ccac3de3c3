"""Batched pops: a worker on a deep queue of short jobs takes several at once, and loses, repeats or hoards none.

Each job a pop takes is started in Redis as a single pop starts it (execution, started entry), so RQ's views,
the heartbeat reaper and at-least-once hold for every job a worker holds, not only for the one it runs.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable

import pytest
import redis
from rq.exceptions import DequeueTimeout
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from producer import Producer, Task
from task_processor.settings import Settings
from tests.conftest import TASK_MODULES, Proc, decoded, wait_for
from worker.dequeue import Taken
from worker.fastpath import PopResult
from worker.pacing import HORIZON, MAX_BATCH, Pacer
from worker.runner import TaskWorker, build_worker

FAST = {"TASK_ABANDON_AFTER": "3"}
OUTLIVES_ABANDON = 5.0
"""Seconds of a slow job that outlives TASK_ABANDON_AFTER above."""


def short_slow_short(producer: Producer, slow_seconds: float = 1.5) -> tuple[list[Job], Job, list[Job]]:
    """Short jobs (each records its index under "done"), a slow one, more short ones: by the time the slow job
    runs, the worker has measured short jobs and holds the ones after it, started."""
    first = producer.enqueue_many([Task("worker.examples.record", ("done", str(i))) for i in range(40)])
    slow = producer.enqueue("worker.examples.record", "done", "slow", seconds=slow_seconds)
    rest = producer.enqueue_many([Task("worker.examples.record", ("done", str(i))) for i in range(40, 60)])
    return first, slow, rest


def busy_on_the_slow_job(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> tuple[list[Job], Job, list[Job], Proc]:
    """``short_slow_short`` jobs, and a worker named "busy" that runs the slow one now."""
    first, slow, rest = short_slow_short(producer)
    worker = spawn("task-worker", "--name", "busy", extra_env=FAST)
    wait_for(lambda: runs_now(conn, "busy", slow), timeout=30, what="the slow job to run")
    return first, slow, rest, worker


def runs_now(conn: redis.Redis, worker: str, job: Job) -> bool:
    """Whether ``worker`` runs ``job`` (a held job is started in Redis before it runs: its status says so early)."""
    return conn.hget(f"rq:worker:{worker}", "current_job") == job.id.encode()


def runs(conn: redis.Redis) -> list[str]:
    return decoded(conn.lrange("done", 0, -1))


def attempts(conn: redis.Redis, jobs: list[Job]) -> list[int]:
    return [json.loads(conn.hget(job.key, "meta") or b"{}").get("attempt", 0) for job in jobs]


def test_the_batch_follows_the_measured_job_duration() -> None:
    pacer = Pacer()
    assert pacer.batch() == 1  # nothing measured yet: one job at a time
    for _ in range(20):
        pacer.ran(0.001)
    assert pacer.batch() == MAX_BATCH
    for _ in range(20):
        pacer.ran(HORIZON / 4)
    assert pacer.batch() <= 5  # the last job of a batch starts within the horizon
    for _ in range(20):
        pacer.ran(HORIZON * 10)
    assert pacer.batch() == 1


def in_process_worker(redis_url: str, conn: redis.Redis, abandon_after: int = 3) -> TaskWorker:
    """A worker on the default queue, in this process, with TASK_ABANDON_AFTER=3 unless told otherwise."""
    settings = Settings(redis_url=redis_url, abandon_after=abandon_after, task_modules=(TASK_MODULES,))
    return build_worker(settings, conn, ("default",))


def holding(redis_url: str, producer: Producer, conn: redis.Redis) -> tuple[list[Job], TaskWorker, Taken]:
    """Ten queued no-ops, and an in-process worker (TASK_ABANDON_AFTER=3) that took eight: it runs the first next
    and holds seven."""
    jobs = producer.enqueue_many([Task("worker.examples.noop") for _ in range(10)])
    worker = in_process_worker(redis_url, conn)
    taken = worker._dequeue.take(timeout=None, batch=8)
    assert taken is not None
    return jobs, worker, taken


def test_each_job_of_a_batch_is_started_in_redis_and_the_first_is_current(
    redis_url: str, producer: Producer, conn: redis.Redis
) -> None:
    jobs, worker, taken = holding(redis_url, producer, conn)
    assert taken.job.id == jobs[0].id
    assert [hit.job_id.decode() for hit in worker._dequeue.held] == [job.id for job in jobs[1:8]]
    assert conn.lrange("rq:queue:default", 0, -1) == [job.id.encode() for job in jobs[8:]]
    registry = StartedJobRegistry("default", connection=conn)
    assert sorted(registry.get_job_ids()) == sorted(job.id for job in jobs[:8])
    executions = {hit.execution.id for hit in worker._dequeue.held if hit.execution is not None}
    assert len(executions) == 7
    assert taken.execution is not None
    assert taken.execution.id not in executions
    for job in jobs[:8]:
        assert Job.fetch(job.id, connection=conn, serializer="json").get_status() == JobStatus.STARTED
    assert conn.hget(worker.key, "current_job") == jobs[0].id.encode()  # RQ's view: the job it runs
    assert conn.llen("rq:queue:default:intermediate") == 0


def test_the_heartbeat_keeps_held_jobs_alive(redis_url: str, producer: Producer, conn: redis.Redis) -> None:
    """A held job waits behind the running one, which may outlive TASK_ABANDON_AFTER: without beats of its own,
    its started entry and execution would lapse and the reaper would hand it to another worker."""
    _, worker, _ = holding(redis_url, producer, conn)
    held = list(worker._dequeue.held)
    entries = [f"{hit.job_id.decode()}:{hit.execution.id}" for hit in held if hit.execution is not None]
    assert len(entries) == 7
    for entry, hit in zip(entries, held, strict=True):  # as if the running job had taken a while
        conn.zadd("rq:wip:default", {entry: 1})
        assert hit.execution is not None
        conn.expire(hit.execution.key, 1)
    worker._heartbeat.beat()
    scores = [conn.zscore("rq:wip:default", entry) for entry in entries]
    assert all(score is not None and score > time.time() for score in scores)
    assert all(conn.ttl(hit.execution.key) > 1 for hit in held if hit.execution is not None)


def test_a_job_the_pop_cannot_start_ends_its_batch_and_the_jobs_behind_stay_queued_in_order(
    redis_url: str, producer: Producer, conn: redis.Redis
) -> None:
    """A pop takes its batch off the queue in one step. A job it cannot start (its meta holds more than the attempt
    count, so Python starts it) ends the batch: it goes to the intermediate list, and the jobs behind it go back
    to the queue's head as they were, in order, none of them started."""
    jobs = producer.enqueue_many([Task("worker.examples.noop") for _ in range(6)])
    conn.hset(jobs[2].key, "meta", json.dumps({"note": "kept", "attempt": 1}))
    worker = in_process_worker(redis_url, conn)
    taken = worker._dequeue.take(timeout=None, batch=6)
    assert taken is not None
    assert taken.job.id == jobs[0].id
    held = list(worker._dequeue.held)
    assert [hit.job_id.decode() for hit in held] == [jobs[1].id, jobs[2].id]
    assert [hit.execution is not None for hit in held] == [True, False]  # the pop started the first two only
    assert conn.lrange("rq:queue:default:intermediate", 0, -1) == [jobs[2].id.encode()]
    assert conn.lrange("rq:queue:default", 0, -1) == [job.id.encode() for job in jobs[3:]]
    assert {conn.hget(job.key, "status") for job in jobs[2:]} == {b"queued"}
    assert attempts(conn, jobs[3:]) == [0, 0, 0]


def test_a_popped_job_comes_as_its_hash_reads_after_the_start(
    redis_url: str, producer: Producer, conn: redis.Redis
) -> None:
    """The pop hands the worker each job it started as Redis now holds it: the fields the start wrote in place of
    those of an earlier attempt (a job the reaper queued again), each field once."""
    jobs = producer.enqueue_many([Task("worker.examples.noop") for _ in range(2)])
    conn.hset(
        jobs[1].key,
        mapping={
            "meta": '{"attempt": 1}',
            "worker_name": "gone",
            "started_at": "2026-01-01T00:00:00.000000Z",
            "last_heartbeat": "2026-01-01T00:00:01.000000Z",
            "abandoned": "1",
        },
    )  # as a first attempt left it before the reaper queued the job again
    worker = in_process_worker(redis_url, conn)
    popped = worker._dequeue.fast.pop(worker._dequeue.pop_keys, 2)
    assert isinstance(popped, tuple)
    assert len(popped) == 2
    for hit, job in zip(popped, jobs, strict=True):
        assert hit.execution is not None
        assert hit.fields is not None
        names = hit.fields[::2]
        assert len(names) == len(set(names)), names
        assert dict(zip(names, hit.fields[1::2], strict=True)) == conn.hgetall(job.key)
    assert conn.hget(jobs[1].key, "meta") == b'{"attempt": 2}'
    assert conn.hget(jobs[1].key, "worker_name") == worker.name.encode()


class FixedBatch(Pacer):
    """A pacer that always allows ``size`` jobs a pop, whatever the jobs measure."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def batch(self) -> int:
        return self.size


def test_jobs_popped_ahead_of_a_long_job_are_kept_alive_while_it_runs(
    redis_url: str, producer: Producer, conn: redis.Redis
) -> None:
    """With batches of four, the finish of the third job names the long fourth one as next and pops the four after
    it. Those are started in Redis the moment the finish runs, so this worker must keep them alive from then on:
    should the long job outlive TASK_ABANDON_AFTER, the reaper would otherwise hand them to another worker, and
    both would run them."""
    short = [Task("worker.examples.record", ("done", str(i))) for i in range(3)]
    long = Task("worker.examples.record", ("done", "long"), {"seconds": 3})
    after = [Task("worker.examples.record", ("done", str(i))) for i in range(3, 7)]
    jobs = producer.enqueue_many([*short, long, *after])
    worker = in_process_worker(redis_url, conn)
    worker._pacer = FixedBatch(4)
    lapsed: list[str] = []

    def lapse_all_then_beat() -> None:
        """While the long job runs: every started entry as if its beats had stopped, then one beat."""
        wait_for(lambda: runs_now(conn, worker.name, jobs[3]), timeout=30, what="the long job to run")
        wait_for(lambda: conn.zcard("rq:wip:default") == 5, timeout=10, what="the jobs after it to be started")
        entries = decoded(conn.zrange("rq:wip:default", 0, -1))
        conn.zadd("rq:wip:default", dict.fromkeys(entries, 1))
        worker._heartbeat.beat()
        lapsed.extend(e for e in entries if (conn.zscore("rq:wip:default", e) or 0) < time.time())

    checker = threading.Thread(target=lapse_all_then_beat)
    checker.start()
    worker.work(burst=True)
    checker.join()
    assert runs(conn) == [*(str(i) for i in range(3)), "long", *(str(i) for i in range(3, 7))]
    assert lapsed == []


def test_a_worker_whose_finish_found_the_queue_empty_waits_without_a_pop_of_its_own(
    redis_url: str, producer: Producer, conn: redis.Redis
) -> None:
    """The finish of a job pops the next one in the same call; when it finds the queues empty, the worker goes
    straight to its wait (whose pop follows in the same write), without a round trip that could only find them
    empty again. Likewise after a wait that timed out."""
    producer.enqueue("worker.examples.noop")
    worker = in_process_worker(redis_url, conn)
    pops: list[int] = []
    pop = worker._dequeue.fast.pop

    def counted(pop_keys: list[str], k: int) -> PopResult:
        pops.append(k)
        return pop(pop_keys, k)

    worker._dequeue.fast.pop = counted  # type: ignore[method-assign]
    taken = worker.dequeue_job_and_maintain_ttl(1)
    assert taken is not None
    worker.execute_job(*taken)
    assert conn.hget(taken[0].key, "status") == b"finished"
    for _ in range(2):
        with pytest.raises(DequeueTimeout):
            worker._dequeue.take(timeout=1)
    assert len(pops) == 1  # the first take's, before any finish or wait


def test_a_burst_worker_pops_again_for_a_job_the_reaper_queued_after_its_finish_found_none(
    redis_url: str, producer: Producer, conn: redis.Redis
) -> None:
    """In burst mode a worker stops once the queues are empty; a job whose worker died, requeued by this worker's
    reaper after the finish of its last job found the queue empty, is still run before it stops."""
    orphan = producer.enqueue("worker.examples.record", "done", "orphan")
    dead = in_process_worker(redis_url, conn)
    assert dead._dequeue.take(timeout=None) is not None  # started, then its worker "dies"
    (entry,) = decoded(conn.zrange("rq:wip:default", 0, -1))
    assert entry.startswith(orphan.id)
    conn.zadd("rq:wip:default", {entry: time.time() + 1.5})  # its heartbeat lapses while the next job runs
    producer.enqueue("worker.examples.record", "done", "slow", seconds=2.5)
    worker = in_process_worker(redis_url, conn)
    worker.work(burst=True)
    assert sorted(runs(conn)) == ["orphan", "slow"]  # (a slow start may requeue it before the slow job runs)


def test_jobs_held_by_a_stopping_worker_go_back_to_the_front_in_order_untouched(
    redis_url: str, producer: Producer, conn: redis.Redis
) -> None:
    jobs, worker, _ = holding(redis_url, producer, conn)
    worker.give_back_held()
    assert conn.lrange("rq:queue:default", 0, -1) == [job.id.encode() for job in jobs[1:]]
    assert StartedJobRegistry("default", connection=conn).get_job_ids() == [jobs[0].id]  # the one it runs
    assert {conn.hget(job.key, "status") for job in jobs[1:]} == {b"queued"}
    assert attempts(conn, jobs[1:]) == [0] * 9
    assert not worker._dequeue.held


@pytest.mark.timeout(120)
def test_jobs_held_behind_a_slow_one_run_once_with_a_reaper_alongside(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    """End to end: the slow job outlives TASK_ABANDON_AFTER while an idle worker's reaper passes every second or
    two; every job runs exactly once."""
    first, slow, rest = short_slow_short(producer, OUTLIVES_ABANDON)
    busy = spawn("task-worker", "--name", "busy", extra_env=FAST)
    wait_for(lambda: runs_now(conn, "busy", slow), timeout=30, what="the slow job to run")
    idle = spawn("task-worker", extra_env=FAST)
    assert producer.wait([*first, slow, *rest], timeout=60)
    assert sorted(runs(conn)) == sorted([*(str(i) for i in range(60)), "slow"])  # each once
    assert attempts(conn, [*first, slow, *rest]) == [1] * 61
    idle.stop()
    busy.stop()


@pytest.mark.timeout(120)
def test_a_warm_stop_amid_short_jobs_runs_each_once_in_order(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    _first, _slow, rest, worker = busy_on_the_slow_job(producer, conn, spawn)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert runs(conn) == [*(str(i) for i in range(40)), "slow"]
    # Every job after the slow one is queued again, in its order, as it was: not started, its attempt not counted.
    assert conn.lrange("rq:queue:default", 0, -1) == [job.id.encode() for job in rest]
    assert StartedJobRegistry("default", connection=conn).get_job_ids() == []
    assert conn.llen("rq:queue:default:intermediate") == 0
    assert {conn.hget(job.key, "status") for job in rest} == {b"queued"}
    assert attempts(conn, rest) == [0] * len(rest)
    spawn("task-worker", "--burst").wait(timeout=30)
    assert runs(conn)[41:] == [str(i) for i in range(40, 60)]


@pytest.mark.timeout(120)
def test_a_worker_killed_holding_a_batch_loses_none_of_it(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    first, slow, rest, doomed = busy_on_the_slow_job(producer, conn, spawn)
    doomed.signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    spawn("task-worker", extra_env=FAST)
    assert producer.wait([*first, slow, *rest], timeout=60)
    done = runs(conn)
    assert sorted(set(done)) == sorted([*(str(i) for i in range(60)), "slow"])
    assert len(done) == 61  # the slow job was killed before it recorded; nothing ran twice


def test_a_deep_queue_runs_in_order_and_the_current_job_never_runs_ahead(
    producer: Producer, conn: redis.Redis, spawn: Callable[..., Proc]
) -> None:
    """The finish of a job can pop the next batch before the held jobs run out; the jobs still run in queue order,
    and the job the worker's hash names as current (``rq info``, rq-dashboard) is the one running or, while the
    finish that names it lingers (a few milliseconds), the one before: never one popped behind it."""
    jobs = producer.enqueue_many([Task("worker.examples.record_current", ("seen",)) for _ in range(600)])
    assert spawn("task-worker", "--burst").wait(timeout=60) == 0
    seen = [line.split() for line in decoded(conn.lrange("seen", 0, -1))]
    assert [ran for ran, _ in seen] == [job.id for job in jobs]
    order = {job.id: i for i, job in enumerate(jobs)}
    ahead = [(ran, current) for ran, current in seen if current in order and order[current] > order[ran]]
    assert ahead == []
