"""Bad input, queue names: a name that is not 1-64 of ``A-Z a-z 0-9 . _ -`` starting with a letter or digit is
refused with ONE line naming it wherever it is given (``Producer(queue=)``, ``enqueue(queue=)``, TASK_QUEUES,
``task-worker --queue``, ``task-producer enqueue --queue``) and nothing is written; a valid name is used exactly.

The other kinds of bad input, and what these modules share: tests/bad_input.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import example, given
from hypothesis import strategies as st

from producer import ConfigError, Producer
from task_processor.settings import Settings
from tests.bad_input import attempt, hypothesis_settings, one_error_line, run_all

DOCUMENTED_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Queue names: 1-64 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit (what the refusal says to use)."""


BAD_QUEUE_NAMES = [
    "",
    "a b",
    "a:b",
    "rq:queue:x",
    "-x",
    ".x",
    "x" * 65,
    "é",
    "a\nb",
    " default",
    "default,low",
    "a/b",
    "*",
    "\x00",
]


@pytest.mark.parametrize("name", [*BAD_QUEUE_NAMES, 0, b"default", ("default",)])
def test_producer_refuses_a_bad_default_queue(redis_url: str, conn: redis.Redis, name: Any) -> None:
    with pytest.raises(ConfigError) as info:
        Producer(redis_url, queue=name)
    assert "\n" not in str(info.value)
    assert repr(name) in str(info.value)
    assert conn.dbsize() == 0


@pytest.mark.parametrize(
    "name",
    [
        *BAD_QUEUE_NAMES[1:],
        pytest.param(
            "",
            id="empty",
        ),
        pytest.param(
            0,
            id="zero",
        ),
        b"default",
    ],
)
def test_enqueue_refuses_a_bad_queue(producer: Producer, conn: redis.Redis, name: Any) -> None:
    with pytest.raises(ConfigError) as info:
        producer.enqueue("worker.examples.noop", queue=name)
    assert "\n" not in str(info.value)
    assert repr(name) in str(info.value)
    assert conn.dbsize() == 0


queue_names = st.one_of(st.text(max_size=70), st.from_regex(r"[A-Za-z0-9._-]{1,70}", fullmatch=True))


@hypothesis_settings(50)
@given(name=queue_names)
@example(name="")
@example(name="a")
@example(name="x" * 64)
@example(name="9.-_")
def test_any_text_as_queue_is_refused_or_used_exactly(
    redis_url: str, producer: Producer, conn: redis.Redis, name: str
) -> None:
    conn.flushall()  # examples share the test's Redis
    before = conn.dbsize()
    _, refused = attempt(lambda: Producer(redis_url, queue=name), ConfigError)
    # Refused exactly when the name is not a documented queue name.
    assert (refused is None) == bool(DOCUMENTED_QUEUE_NAME.fullmatch(name)), (name, refused)
    if refused is not None:
        assert "\n" not in str(refused)
        assert repr(name) in str(refused)
    job, also_refused = attempt(lambda: producer.enqueue("worker.examples.noop", queue=name), ConfigError)
    assert (also_refused is None) == (refused is None), "enqueue(queue=) and Producer(queue=) disagree"
    if also_refused is not None:
        assert "\n" not in str(also_refused)
        assert conn.dbsize() == before
        return
    assert job.origin == name
    assert conn.lrange(f"rq:queue:{name}", 0, -1) == [job.id.encode()]


@hypothesis_settings(50)
@given(raw=st.text(max_size=80) | st.lists(queue_names, max_size=4).map(",".join))
@example(raw="")
@example(raw=" ")
@example(raw=",")
@example(raw="high, default ,low")
@example(raw="a,a")
def test_any_task_queues_value_is_refused_with_one_line_or_parsed(raw: str) -> None:
    parsed, refused = attempt(lambda: Settings.from_env({"TASK_QUEUES": raw}), ConfigError)
    names = [part.strip() for part in raw.split(",") if part.strip()]
    valid = all(DOCUMENTED_QUEUE_NAME.fullmatch(q) for q in names) and len(set(names)) == len(names)
    # Accepted exactly when every listed name is valid and listed once (blank: the default queue).
    assert (refused is None) == (valid and (bool(names) or not raw.strip())), (raw, refused)
    if refused is not None:
        assert "\n" not in str(refused)
        assert "TASK_QUEUES" in str(refused)
        return
    assert parsed.queues == (tuple(names) if names else ("default",))
    assert all(DOCUMENTED_QUEUE_NAME.fullmatch(q) for q in parsed.queues)
    assert len(set(parsed.queues)) == len(parsed.queues)


def test_task_worker_refuses_bad_queues_with_one_line_and_exit_2(
    env: dict[str, str], conn: redis.Redis, tmp_path: Path
) -> None:
    bad_env = [",", "a b", "a,a", "é", "x" * 65, "default,bad name"]
    commands = [["task-worker", "--burst"] for _ in bad_env] + [["task-worker", "--burst", "--queue", "a:b"]]
    envs = [{"TASK_QUEUES": value} for value in bad_env] + [{}]
    results = run_all(commands, env, tmp_path, envs=envs)
    for result in results:
        assert result.returncode == 2, (result.args, result.stderr)
        line = one_error_line(result.stderr, "task-worker")
        assert "TASK_QUEUES" in line or "--queue" in line
        assert result.stdout == ""
    assert conn.dbsize() == 0


def test_task_producer_refuses_an_empty_queue_option(env: dict[str, str], conn: redis.Redis, tmp_path: Path) -> None:
    (result,) = run_all([["task-producer", "enqueue", "worker.examples.noop", "--queue", ""]], env, tmp_path)
    assert conn.dbsize() == 0
    assert result.returncode == 2, result.stdout
    one_error_line(result.stderr, "task-producer")
