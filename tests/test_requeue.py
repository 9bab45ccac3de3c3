"""``task-producer requeue --failed``: dead-lettered jobs run again, with real workers and the real command."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from rq.job import Job

from producer import Producer
from producer.commands.redis_server import free_port
from tests.conftest import decoded, run


def burst(env: dict[str, str], *queues: str) -> None:
    """One real worker that runs whatever is queued, then exits."""
    args = ["task-worker", *(a for q in queues for a in ("--queue", q)), "--burst"]
    result = run(args, env)
    assert result.returncode == 0, result.stdout + result.stderr


def requeue(env: dict[str, str], *args: str) -> Any:
    return run(["task-producer", "requeue", *args], env)


def fetch(conn: redis.Redis, job_id: str, serializer: str = "json") -> Job:
    return Job.fetch(job_id, connection=conn, serializer=serializer)


def failed_ids(conn: redis.Redis, queue: str = "default") -> list[str]:
    return decoded(conn.zrange(f"rq:failed:{queue}", 0, -1))


def queued_ids(conn: redis.Redis, queue: str = "default") -> list[str]:
    return decoded(conn.lrange(f"rq:queue:{queue}", 0, -1))


@pytest.mark.parametrize("serializer", ["json", "pickle"])
def test_a_failed_job_requeued_by_id_runs_again_and_finishes(
    env: dict[str, str], conn: redis.Redis, serializer: str
) -> None:
    env = {**env, "TASK_SERIALIZER": serializer}
    producer = Producer(env["REDIS_URL"], serializer=serializer)
    producer.enqueue("worker.examples.flaky", 1, job_id="flaky-1", timeout=77)
    burst(env)
    job = fetch(conn, "flaky-1", serializer)
    assert (job.get_status(), job.meta["attempt"]) == ("failed", 1)
    assert failed_ids(conn) == ["flaky-1"]

    result = requeue(env, "--failed", "flaky-1", "flaky-1")  # named twice, requeued once
    assert result.returncode == 0, result.stderr
    assert result.stdout == "flaky-1\n"
    assert result.stderr == "requeued 1 jobs from the failed registry of 'default'\n"
    assert failed_ids(conn) == []
    assert queued_ids(conn) == ["flaky-1"]
    job = fetch(conn, "flaky-1", serializer)
    assert job.get_status() == "queued"
    assert (job.func_name, list(job.args), job.timeout, job.origin) == ("worker.examples.flaky", [1], 77, "default")
    assert job.meta["attempt"] == 1  # meta kept: the next run counts as attempt 2
    assert (job.started_at, job.ended_at) == (None, None)

    burst(env)
    job = fetch(conn, "flaky-1", serializer)
    assert job.get_status() == "finished"
    assert (job.return_value(), job.meta["attempt"]) == (2, 2)
    assert failed_ids(conn) == []


def test_all_requeues_every_failed_job_of_the_queue_oldest_failure_first_behind_queued_work(
    env: dict[str, str], producer: Producer, conn: redis.Redis
) -> None:
    # Ids whose alphabetical order differs from the order they fail in (the registry sorts same-second ties by id).
    order = ["c-first", "a-second", "b-third"]
    for job_id in order:
        producer.enqueue("worker.examples.flaky", 1, job_id=job_id)
    producer.enqueue("worker.examples.flaky", 1, job_id="other-1", queue="other")
    burst(env, "default", "other")
    assert sorted(failed_ids(conn)) == sorted(order)
    assert failed_ids(conn, "other") == ["other-1"]
    producer.enqueue("worker.examples.add", 1, 2, job_id="waiting")  # queued meanwhile

    result = requeue(env, "--failed", "--all")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == order
    assert result.stderr == "requeued 3 jobs from the failed registry of 'default'\n"
    assert queued_ids(conn) == ["waiting", *order]  # to the back of the queue, in the order they failed
    assert failed_ids(conn) == []
    assert failed_ids(conn, "other") == ["other-1"]  # another queue's failures are left alone
    assert fetch(conn, "other-1").get_status() == "failed"

    burst(env)
    for job_id in order:
        job = fetch(conn, job_id)
        assert (job.get_status(), job.meta["attempt"]) == ("finished", 2)
    assert fetch(conn, "waiting").return_value() == 3


def test_the_queue_is_the_first_of_task_queues_unless_given(
    env: dict[str, str], producer: Producer, conn: redis.Redis
) -> None:
    producer.enqueue("worker.examples.flaky", 1, job_id="d-1")
    producer.enqueue("worker.examples.flaky", 1, job_id="o-1", queue="other")
    burst(env, "default", "other")

    result = requeue({**env, "TASK_QUEUES": "other,default"}, "--failed", "--all")
    assert (result.returncode, result.stdout) == (0, "o-1\n"), result.stderr
    assert result.stderr == "requeued 1 jobs from the failed registry of 'other'\n"
    assert (queued_ids(conn, "other"), failed_ids(conn, "other")) == (["o-1"], [])
    assert failed_ids(conn) == ["d-1"]

    result = requeue(env, "--failed", "--queue", "default", "d-1")
    assert (result.returncode, result.stdout) == (0, "d-1\n"), result.stderr
    assert (queued_ids(conn), failed_ids(conn)) == (["d-1"], [])

    result = requeue(env, "--failed", "--all")  # nothing left to requeue is not an error
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == "requeued 0 jobs from the failed registry of 'default'\n"


def snapshot(conn: redis.Redis) -> dict[str, Any]:
    """Everything a requeue could change: the failed registries, the queues, and each job's status."""
    return {
        "failed": {q: conn.zrange(f"rq:failed:{q}", 0, -1, withscores=True) for q in ("default", "other")},
        "queued": {q: queued_ids(conn, q) for q in ("default", "other")},
        "status": {k.decode(): conn.hget(k, "status") for k in conn.scan_iter("rq:job:*")},
    }


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["dead-1"], 2, "requeue needs a source: pass --failed"),
        (["--all"], 2, "requeue needs a source: pass --failed"),
        (["--failed"], 2, "either --all or JOB_IDs, not both and not neither"),
        (["--failed", "--all", "dead-1"], 2, "either --all or JOB_IDs, not both and not neither"),
        (["--failed", "--queue", "a:b", "--all"], 2, "--queue: 'a:b' is not a valid queue name"),
        (["--failed", "dead-1", "nosuch"], 1, "not in the failed registry of 'default': nosuch (no such job);"),
        (["--failed", "dead-1", "alive-1"], 1, "alive-1 (queued)"),
        (["--failed", "dead-2", "gone:1"], 1, "gone:1 (not a job id)"),
        (["--failed", "elsewhere"], 1, "elsewhere (failed on queue 'other')"),
        (["--failed", "--queue", "other", "dead-1"], 1, "of 'other': dead-1 (failed on queue 'default')"),
    ],
)
def test_bad_input_is_one_line_and_requeues_nothing(
    env: dict[str, str], producer: Producer, conn: redis.Redis, args: list[str], code: int, message: str
) -> None:
    producer.enqueue("worker.examples.fail", job_id="dead-1")
    producer.enqueue("worker.examples.fail", job_id="dead-2")
    producer.enqueue("worker.examples.fail", job_id="elsewhere", queue="other")
    burst(env, "default", "other")
    producer.enqueue("worker.examples.noop", job_id="alive-1")
    assert sorted(failed_ids(conn)) == ["dead-1", "dead-2"]
    before = snapshot(conn)

    result = requeue(env, *args)
    assert result.returncode == code
    assert result.stderr.startswith("task-producer: error: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert snapshot(conn) == before


def test_unreachable_redis_names_the_url_without_a_traceback(env: dict[str, str]) -> None:
    url = f"redis://:pw@127.0.0.1:{free_port()}/0"
    result = requeue({**env, "REDIS_URL": url}, "--failed", "--all")
    assert result.returncode == 1
    assert result.stderr.startswith(f"task-producer: error: cannot reach Redis at {url.replace('pw', '***')}")
    assert result.stderr.count("\n") == 1
