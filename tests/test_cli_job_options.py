"""``task-producer enqueue`` with RQ's job options, in flags and in --from-file lines, and ``task-producer cancel``,
run as a user runs them: bad values are one line, a non-zero exit, and nothing written."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from rq.job import Job

from tests.conftest import run

ADD = ["task-producer", "enqueue", "worker.examples.add", "1", "2"]


def job_id(result: object) -> str:
    assert getattr(result, "returncode", None) == 0, getattr(result, "stderr", "")
    return str(getattr(result, "stdout", "")).strip()


def test_in_at_meta_result_ttl_depends_on_and_unique(env: dict[str, str], conn: redis.Redis) -> None:
    later = job_id(run([*ADD, "--in", "60"], env))
    assert conn.hget(Job.key_for(later), "status") == b"scheduled"
    assert abs(conn.zscore("rq:scheduled:default", later) - (time.time() + 60)) < 5  # type: ignore[operator]

    at = job_id(run([*ADD, "--at", "2031-01-01T00:00:00Z"], env))
    assert conn.zscore("rq:scheduled:default", at) == 1924992000

    parent = job_id(run([*ADD, "--job-id", "parent", "--meta", '{"owner": "ops"}', "--result-ttl", "60"], env))
    fields = conn.hgetall(Job.key_for(parent))
    assert (json.loads(fields[b"meta"]), fields[b"result_ttl"]) == ({"owner": "ops"}, b"60")

    child = job_id(run([*ADD, "--depends-on", "parent", "--depends-on", later], env))
    assert conn.hget(Job.key_for(child), "status") == b"deferred"
    assert json.loads(conn.hget(Job.key_for(child), "dependency_ids")) == ["parent", later]  # type: ignore[arg-type]

    job_id(run([*ADD, "--job-id", "nightly", "--unique"], env))
    again = run([*ADD, "--job-id", "nightly", "--unique"], env)
    assert again.returncode == 2
    assert "job nightly is already live" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--in", "-5"], "delay -5.0 must be a finite number of seconds >= 0"),
        (["--at", "2031-01-01T00:00:00"], "has no time zone"),
        (["--at", "soon"], "--at 'soon' is not an ISO 8601 time"),
        (["--in", "5", "--at", "2031-01-01T00:00:00Z"], "give a delay or an enqueue time (at), not both"),
        (["--depends-on", "ghost"], "depends on ghost, which does not exist"),
        (["--meta", "{oops"], "--meta is not valid JSON"),
        (["--meta", "[1]"], "--meta must be a JSON object"),
        (["--result-ttl", "-3"], "result_ttl -3 must be -1 (for ever) or a whole number of seconds >= 0"),
        (["--unique"], "unique=True needs a job_id"),
    ],
)
def test_a_bad_option_is_one_line_exit_2_and_nothing_written(
    env: dict[str, str], conn: redis.Redis, flags: list[str], named: str
) -> None:
    result = run([*ADD, *flags], env)
    assert result.returncode == 2
    assert named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert conn.dbsize() == 0


def test_from_file_lines_take_the_options(env: dict[str, str], conn: redis.Redis, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    lines = [
        {"func": "worker.examples.add", "args": [1, 1], "job_id": "first", "meta": {"n": 1}},
        {"func": "worker.examples.add", "args": [2, 2], "depends_on": "first", "description": "second"},
        {"func": "worker.examples.add", "args": [3, 3], "at": "2031-01-01T00:00:00+00:00", "ttl": 600},
        {"func": "worker.examples.add", "args": [4, 4], "delay": 30, "on_failure": "worker.examples.note_outcome"},
    ]
    tasks.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = run(["task-producer", "enqueue", "--from-file", str(tasks), "--result-ttl", "90"], env)
    ids = result.stdout.split()
    assert result.returncode == 0, result.stderr
    statuses = [conn.hget(Job.key_for(i), "status") for i in ids]
    assert statuses == [b"queued", b"deferred", b"scheduled", b"scheduled"]
    assert [conn.hget(Job.key_for(i), "result_ttl") for i in ids] == [b"90"] * 4  # the flag: every line's default
    assert conn.hget(Job.key_for(ids[1]), "description") == b"second"
    assert conn.hget(Job.key_for(ids[3]), "failure_callback_name") == b"worker.examples.note_outcome"


def test_a_bad_option_in_a_file_names_its_line(env: dict[str, str], conn: redis.Redis, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        '{"func": "worker.examples.add", "args": [1, 1]}\n{"func": "worker.examples.add", "delay": "soon"}\n'
    )
    result = run(["task-producer", "enqueue", "--from-file", str(tasks)], env)
    assert result.returncode == 2
    assert "line 2: 'delay' must be a JSON number" in result.stderr
    assert conn.dbsize() == 0


def test_cancel_takes_jobs_off_their_queue_or_refuses_all(env: dict[str, str], conn: redis.Redis) -> None:
    first, second = job_id(run(ADD, env)), job_id(run([*ADD, "--in", "60"], env))
    unknown = run(["task-producer", "cancel", first, "nope"], env)
    assert unknown.returncode == 1
    assert "no such job in Redis: nope" in unknown.stderr
    assert conn.hget(Job.key_for(first), "status") == b"queued"  # nothing canceled
    result = run(["task-producer", "cancel", first, second], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [first, second]
    assert [conn.hget(Job.key_for(i), "status") for i in (first, second)] == [b"canceled", b"canceled"]
    assert conn.llen("rq:queue:default") == 0
    assert conn.zcard("rq:scheduled:default") == 0
    again = run(["task-producer", "cancel", first], env)
    assert (again.returncode, again.stderr.strip()) == (
        1,
        f"task-producer: error: already canceled: {first}: nothing was canceled",
    )
