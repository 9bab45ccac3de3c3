"""Periodic tasks (TASK_CRON, producer/scaling/cron.py): the file and its refusals, each naming the file, the line
and the fix, before any command touches Redis; and the ticks a schedule gives, in UTC. The runs the leading
autoscaler enqueues: tests/test_cron_runs.py; their status: tests/test_cron_status.py; what these share:
tests/cron.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from producer.scaling.cron import derived_name, latest_tick, load, next_tick
from task_processor.settings import Settings
from tests.conftest import run
from tests.cron import (
    SUM,
    at,
    write_fixture,  # noqa: F401  (the write fixture)
)

# --- the file ---------------------------------------------------------------------------------------------------


def test_entries_are_read_with_their_names_given_or_derived(write: Callable[..., Settings]) -> None:
    hourly = {"cron": "@hourly", "func": "worker.examples.noop", "queue": "low", "retries": 2}
    entries = load(write("# periodic tasks", "", SUM, hourly, "   "))
    assert [(e.name, e.schedule, e.func, e.queue, e.line) for e in entries] == [
        ("sum", "0 * * * *", "worker.examples.add", "default", 3),
        (entries[1].name, "@hourly", "worker.examples.noop", "low", 4),
    ]
    assert entries[1].name.startswith("noop-")
    assert entries[1].task.retries == 2
    # The derived name follows the content, not the line's place, key order or spacing.
    moved = '{ "retries": 2, "queue": "low",  "func": "worker.examples.noop", "cron": "@hourly" }'
    assert load(write(SUM, SUM | {"name": "other"}, moved))[2].name == entries[1].name
    assert derived_name({**hourly, "cron": "@daily"}) != entries[1].name
    assert entries[0].run(at("2026-12-02T13:00:00")).job_id == "cron-sum-1796216400"


def test_no_task_cron_means_no_entries() -> None:
    assert load(Settings()) == ()


BAD_LINES = [
    ('{"cron": "@daily", "func": ', "not valid JSON", "one JSON object per line"),
    ('["@daily", "worker.examples.noop"]', "expected a JSON object", '"cron": "0 3 * * *"'),
    ({"cron": "@daily", "func": "worker.examples.noop", "when": 1}, "unknown key 'when'", "use only cron, name, func"),
    ({"cron": "@daily", "func": "worker.examples.noop", "job_id": "x"}, "'job_id' cannot be set", 'with "name"'),
    ({"cron": "@daily", "func": "worker.examples.noop", "at": "2027-01-01T00:00:00Z"}, "'at' cannot be set", "delay"),
    ({"cron": "@daily", "func": "worker.examples.noop", "depends_on": "x"}, "'depends_on' cannot be set", "from it"),
    ({"func": "worker.examples.noop"}, '"cron" is missing', "e.g."),
    ({"cron": "61 * * * *", "func": "worker.examples.noop"}, "'61 * * * *' is refused", "use 5 fields"),
    ({"cron": "* * * * * *", "func": "worker.examples.noop"}, "has 6 fields, not 5", "use 5 fields"),
    ({"cron": "@reboot", "func": "worker.examples.noop"}, "not a named schedule", "@hourly, @daily"),
    ({"cron": "0 0 30 2 *", "func": "worker.examples.noop"}, "'0 0 30 2 *' is refused", "use 5 fields"),
    ({"cron": 5, "func": "worker.examples.noop"}, '"cron" must be a JSON string', "use 5 fields"),
    ({"cron": "@daily", "func": "worker.examples.noop", "name": "a b"}, '"name": "a b" is refused', "letters"),
    ({"cron": "@daily", "func": "noop"}, "is not a dotted path", "give the module path"),
    ({"cron": "@daily", "func": "os.system", "args": ["x"]}, "os.system", "TASK_MODULES"),
    ({"cron": "@daily", "func": "worker.examples.noop", "timeout": 0}, "timeout 0", ">= 1"),
    ({"cron": "@daily", "func": "worker.examples.noop", "args": "x"}, "'args' must be a JSON list", "list"),
    (SUM | {"name": "ok"}, "the name 'ok' is taken by line 2", 'a "name" of its own'),
]


@pytest.mark.parametrize(("line", "problem", "fix"), BAD_LINES, ids=[str(i) for i in range(len(BAD_LINES))])
def test_a_bad_line_is_refused_naming_the_file_the_line_and_the_fix(
    write: Callable[..., Settings], line: dict[str, Any] | str, problem: str, fix: str
) -> None:
    settings = write("# first", {"cron": "@daily", "func": "worker.examples.noop", "name": "ok"}, "", line)
    with pytest.raises(ValueError, match="TASK_CRON file") as refused:
        load(settings)
    message = str(refused.value)
    assert message.startswith(f"TASK_CRON file {settings.cron_file}, line 4: "), message
    assert problem in message, message
    assert fix in message, message
    assert "\n" not in message


def test_the_same_line_twice_without_a_name_is_refused(write: Callable[..., Settings]) -> None:
    unnamed = {k: v for k, v in SUM.items() if k != "name"}
    with pytest.raises(ValueError, match=r"line 3: the same entry as line 1: remove one, or give each a \"name\""):
        load(write(unnamed, SUM, unnamed))


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"TASK_CRON='.*missing.jsonl' cannot be read \(No such file"):
        load(Settings(cron_file=str(tmp_path / "missing.jsonl")))


@pytest.mark.parametrize("command", [["autoscale"], ["run-local", "--jobs", "0"]])
def test_a_bad_file_stops_the_command_with_exit_2_before_redis_is_touched(
    env: dict[str, str], conn: redis.Redis, tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "cron.jsonl"
    path.write_text(json.dumps(SUM) + "\n" + json.dumps({"cron": "@often", "func": "worker.examples.noop"}) + "\n")
    connections = conn.info("stats")["total_connections_received"]
    result = run(["task-producer", *command], {**env, "TASK_CRON": str(path)})
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"task-producer: error: TASK_CRON file {path}, line 2: ")
    assert "'@often' is not a named schedule" in line
    assert conn.info("stats")["total_connections_received"] == connections, "the command connected to Redis"
    assert conn.dbsize() == 0


# --- the ticks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "now", "latest", "following"),
    [
        ("0 * * * *", "2026-12-02T12:00:00", "2026-12-02T12:00:00", "2026-12-02T13:00:00"),
        ("0 * * * *", "2026-12-02T12:59:59", "2026-12-02T12:00:00", "2026-12-02T13:00:00"),
        ("*/15 * * * *", "2026-12-02T12:31:10", "2026-12-02T12:30:00", "2026-12-02T12:45:00"),
        ("@daily", "2026-12-02T00:00:01", "2026-12-02T00:00:00", "2026-12-03T00:00:00"),
        ("30 3 * * 1", "2026-12-02T12:00:00", "2026-11-30T03:30:00", "2026-12-07T03:30:00"),
        ("@yearly", "2026-12-31T23:59:59", "2026-01-01T00:00:00", "2027-01-01T00:00:00"),
    ],
)
def test_the_latest_and_the_next_tick_in_utc(schedule: str, now: str, latest: str, following: str) -> None:
    assert latest_tick(schedule, at(now) + 0.7) == at(latest)
    assert next_tick(schedule, at(now) + 0.7) == at(following)
