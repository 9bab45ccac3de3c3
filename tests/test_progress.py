"""Long commands show a progress bar on a terminal and print only their results when piped."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from rq.job import Job

from producer import Producer, Task
from tests.conftest import BIN, Proc, decoded, run

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
BAR = re.compile(r"\[#+\.*\] (\d+)/(\d+)")


def run_on_tty(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run a command with stdin, stdout and stderr on a pseudo-terminal; return its exit code and what it drew."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(BIN / args[0]), *args[1:]], env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.5)[0]:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the command exited and the terminal closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=10), b"".join(chunks).decode(errors="replace")


def write_tasks(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"func": "worker.examples.add", "args": [i, i]}) + "\n" for i in range(count)))
    return path


def test_enqueue_from_file_draws_a_bar_on_a_terminal(env: dict[str, str], conn: redis.Redis, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1200)  # three batches
    code, screen = run_on_tty(["task-producer", "enqueue", "--from-file", str(tasks)], env)
    assert code == 0, screen
    assert [m.groups() for m in BAR.finditer(screen)][-1] == ("1200", "1200")
    ids = UUID.findall(screen)
    assert len(set(ids)) == 1200
    assert decoded(conn.lrange("rq:queue:default", 0, -1)) == ids  # the file's order


def test_enqueue_from_file_piped_prints_only_the_ids(env: dict[str, str], conn: redis.Redis, tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", 3)
    with tasks.open("a") as stream:
        stream.write("\n" + json.dumps({"func": "worker.examples.noop", "queue": "low", "job_id": "mine"}) + "\n")
    result = run(["task-producer", "enqueue", "--from-file", str(tasks)], env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert all(UUID.fullmatch(line) for line in lines[:3])
    assert lines[3] == "mine"
    assert conn.llen("rq:queue:default") == 3
    assert conn.lrange("rq:queue:low", 0, -1) == [b"mine"]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{oops", "line 3: not valid JSON"),
        ("[1, 2]", "line 3: expected a JSON object"),
        ('{"args": [1]}', 'line 3: "func" is missing'),
        ('{"func": "worker.examples.add", "argz": [1]}', "line 3: unknown key 'argz'"),
        ('{"func": "worker.examples.add", "retries": "2"}', "line 3: 'retries' must be a JSON int"),
        ('{"func": "add"}', "line 3: task function 'add' is not a dotted path"),
        ('{"func": "worker.examples.add", "queue": "a:b"}', "line 3: \"queue\": 'a:b' is not a valid queue name"),
    ],
)
def test_a_bad_line_is_named_and_nothing_is_enqueued(
    env: dict[str, str], conn: redis.Redis, tmp_path: Path, bad_line: str, message: str
) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    with tasks.open("a") as stream:
        stream.write(bad_line + "\n" + json.dumps({"func": "worker.examples.noop"}) + "\n")
    result = run(["task-producer", "enqueue", "--from-file", str(tasks)], env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"task-producer: error: {tasks}, {message}"), result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stdout == ""
    assert conn.dbsize() == 0


def test_enqueue_needs_a_function_or_a_file(env: dict[str, str], tmp_path: Path) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", 1)
    both = run(["task-producer", "enqueue", "worker.examples.noop", "--from-file", str(tasks)], env)
    neither = run(["task-producer", "enqueue"], env)
    assert (both.returncode, neither.returncode) == (2, 2)
    assert "FUNC or --from-file, not both" in both.stderr
    assert "enqueue needs FUNC" in neither.stderr


def test_wait_draws_a_bar_on_a_terminal_and_prints_results(
    env: dict[str, str], producer: Producer, spawn: Callable[..., Proc]
) -> None:
    jobs = producer.enqueue_many([Task("worker.examples.add", (i, 1)) for i in range(5)])
    spawn("task-worker")
    code, screen = run_on_tty(["task-producer", "wait", *(j.id for j in jobs), "--timeout", "30"], env)
    assert code == 0, screen
    assert [m.groups() for m in BAR.finditer(screen)][-1] == ("5", "5")
    assert re.findall(r"^(\d+)\r?$", screen, re.M) == ["1", "2", "3", "4", "5"]


def test_wait_piped_prints_only_results_and_fails_clearly(
    env: dict[str, str], producer: Producer, spawn: Callable[..., Proc]
) -> None:
    good = producer.enqueue_many([Task("worker.examples.add", (i, 1)) for i in range(3)])
    spawn("task-worker")
    result = run(["task-producer", "wait", *(j.id for j in good)], env)
    assert (result.returncode, result.stdout, result.stderr) == (0, "1\n2\n3\n", "")

    bad = producer.enqueue("worker.examples.fail", "disk full")
    failed = run(["task-producer", "wait", good[0].id, bad.id], env)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert f"job {bad.id} (worker.examples.fail) ended failed: RuntimeError: disk full" in failed.stderr

    slow = producer.enqueue("worker.examples.sleep", 60)
    late = run(["task-producer", "wait", slow.id, "--timeout", "0.5"], env)
    assert late.returncode == 1
    assert "1 of 1 jobs not finished after 0.5s" in late.stderr

    missing = run(["task-producer", "wait", "no-such-job"], env)
    assert missing.returncode == 2
    assert "no such job in Redis: no-such-job" in missing.stderr


def test_run_local_draws_its_bar_on_a_terminal(env: dict[str, str]) -> None:
    code, screen = run_on_tty(["task-producer", "run-local", "--jobs", "10", "--scale-down-delay", "0"], env)
    assert code == 0, screen
    assert [m.groups() for m in BAR.finditer(screen)][-1] == ("10", "10")
    assert "10 finished, 0 failed" in screen


def test_command_line_options_are_the_defaults_for_the_lines(
    env: dict[str, str], conn: redis.Redis, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        json.dumps({"func": "worker.examples.noop"})
        + "\n"
        + json.dumps({"func": "worker.examples.noop", "queue": "own", "timeout": 5})
        + "\n"
    )
    result = run(["task-producer", "enqueue", "--from-file", str(tasks), "-q", "bulk", "--timeout", "60"], env)
    assert result.returncode == 0, result.stderr
    first, second = (Job.fetch(job_id, connection=conn) for job_id in result.stdout.split())
    assert (first.origin, first.timeout) == ("bulk", 60)
    assert (second.origin, second.timeout) == ("own", 5)


@pytest.mark.parametrize(("flag", "key"), [("--job-id=x", "job_id"), ("--kwargs={}", "kwargs")])
def test_one_task_options_are_refused_with_a_file(
    env: dict[str, str], conn: redis.Redis, tmp_path: Path, flag: str, key: str
) -> None:
    tasks = write_tasks(tmp_path / "tasks.jsonl", 2)
    result = run(["task-producer", "enqueue", "--from-file", str(tasks), flag], env)
    assert result.returncode == 2
    assert f'put "{key}" on each line' in result.stderr
    assert conn.dbsize() == 0
