"""``task-producer`` as a user runs it: enqueue, status, and the embedded default end to end."""

from __future__ import annotations

import json
import re
import signal
import sys
from collections.abc import Callable

import pytest
import redis
from rq.job import Job

from producer import Producer, RedisUnavailableError
from producer.commands.redis_server import free_port
from producer.commands.run_local import redis_for_run
from task_processor.settings import Settings
from tests.conftest import BIN, Proc, run, wait_for


def test_enqueue_prints_the_job_id_and_parses_arguments(env: dict[str, str], conn: redis.Redis) -> None:
    result = run(
        [
            "task-producer",
            "enqueue",
            "myapp.tasks.resize",
            "a.png",
            "640",
            "true",
            "--kwargs",
            '{"fmt": "webp"}',
            "--queue",
            "images",
            "--job-id",
            "resize-1",
            "--timeout",
            "60",
            "--retries",
            "2",
        ],
        {**env, "TASK_MODULES": "myapp.tasks"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "resize-1\n"
    job = Job.fetch("resize-1", connection=conn, serializer="json")
    assert (job.func_name, job.args, job.kwargs) == ("myapp.tasks.resize", ["a.png", 640, True], {"fmt": "webp"})
    assert (job.origin, job.timeout, job.retries_left) == ("images", 60, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["enqueue", "noop"], "is not a dotted path"),
        (["enqueue", "worker.examples.add", "--kwargs", "{oops"], "--kwargs is not valid JSON"),
        (["enqueue", "worker.examples.add", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["enqueue", "worker.examples.add", "--queue", "a:b"], "not a valid queue name"),
        (["enqueue", "worker.examples.add", "--retries", "-1"], "retries -1 must be a whole number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    env: dict[str, str], conn: redis.Redis, args: list[str], message: str
) -> None:
    result = run(["task-producer", *args], env)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.startswith("task-producer: error: ")
    assert result.stderr.count("\n") == 1
    assert conn.dbsize() == 0


def test_unreachable_redis_names_the_url_without_a_traceback(env: dict[str, str]) -> None:
    port = free_port()
    for command in (["status"], ["enqueue", "worker.examples.noop"]):
        result = run(["task-producer", *command], {**env, "REDIS_URL": f"redis://:pw@127.0.0.1:{port}/0"})
        assert result.returncode == 1
        assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in result.stderr
        assert result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr


def test_status_shows_counts_as_table_and_json(env: dict[str, str], producer: Producer) -> None:
    producer.enqueue("worker.examples.noop")
    producer.enqueue("worker.examples.noop", queue="low")
    producer.enqueue("worker.examples.noop", queue="low")
    facts = json.loads(run(["task-producer", "status", "--json"], env).stdout)
    assert facts["queues"]["default"]["queued"] == 1
    assert facts["queues"]["low"]["queued"] == 2
    assert facts["workers"] == {"total": 0, "busy": 0, "idle": 0, "list": []}
    assert facts["autoscaler"] is None
    table = run(["task-producer", "status"], env).stdout
    assert re.search(r"^low\s+2\s+0\s+0\s+0\s+0\s+0\s+0\s+0\s+-\s+\d+s$", table, re.M), table
    assert "workers: 0 (0 busy, 0 idle)" in table


def test_run_local_end_to_end(env: dict[str, str], conn: redis.Redis) -> None:
    result = run(
        ["task-producer", "run-local", "--jobs", "40", "--max", "3", "--scale-down-delay", "1", "--seed", "7"],
        env,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Enqueued 40 demo tasks" in out
    assert "40 finished, 0 failed, 2 retries" in out  # the flaky task failed twice, then succeeded
    assert re.search(r"scaled up 0 -> [1-3] workers", out)
    assert re.search(r"scaling\s+0 -> .* -> 0 ", out)
    assert "now 0" in out
    assert conn.zcard("rq:finished:default") == 40
    assert conn.llen("rq:queue:default") == 0
    assert conn.scard("rq:workers") == 0  # every worker drained and deregistered


def test_run_local_with_a_private_redis(env: dict[str, str]) -> None:
    result = run(["task-producer", "run-local", "--private-redis", "--jobs", "5", "--scale-down-delay", "0"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"private redis-server at (redis://\S+)", result.stdout)
    assert found is not None, result.stdout
    url = found.group(1)
    assert "5 finished, 0 failed" in result.stdout
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()  # stopped with the run


def test_fallback_to_a_private_redis_only_when_redis_url_is_unset(capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with redis_for_run(Settings(redis_url=dead, redis_url_set=False), False, sys.stdout) as url:
        assert url != dead
        assert redis.Redis.from_url(url).ping()
    explicit = redis_for_run(Settings(redis_url=dead, redis_url_set=True), False, sys.stdout)
    with pytest.raises(RedisUnavailableError, match="cannot reach Redis"), explicit:
        pass


IGNORING_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])"
)
"""Runs a command with SIGINT ignored, as a shell starts its background jobs (and a CI step may)."""


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["plain", "started-with-sigint-ignored"])
def test_run_local_keep_running_serves_new_work_until_interrupted(
    env: dict[str, str], spawn: Callable[..., Proc], conn: redis.Redis, sigint_ignored: bool
) -> None:
    command: tuple[str, ...] = ("task-producer", "run-local", "--jobs", "3", "--min", "1", "--keep-running")
    if sigint_ignored:
        command = ("python", "-c", IGNORING_SIGINT, str(BIN / command[0]), *command[1:])
    local = spawn(*command)
    wait_for(lambda: "Workers keep running" in local.output(), timeout=60, what="the demo to finish")
    job_id = run(["task-producer", "enqueue", "worker.examples.add", "20", "22"], env).stdout.strip()
    assert Producer(env["REDIS_URL"]).wait([Job.fetch(job_id, connection=conn, serializer="json")], timeout=30) == [42]
    local.signal(signal.SIGINT)
    assert local.wait(timeout=60) == 130
    assert conn.scard("rq:workers") == 0  # the local workers drained and deregistered
