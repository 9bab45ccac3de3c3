"""Periodic tasks (TASK_CRON, producer/scaling/cron.py) in ``task-producer status``: the schedule the leading
autoscaler publishes, each entry's last and next run, as JSON and as a table; and run-local taking TASK_CRON and
publishing it. The cron clock is injected. The runs themselves: tests/test_cron_runs.py; what these share:
tests/cron.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import redis

from producer.scaling.cron import load, run_id
from task_processor import keys
from task_processor.settings import Settings
from tests.conftest import Proc, as_bytes, run, wait_for
from tests.cron import (
    SUM,
    Clock,
    at,
    cron_of,
    settings_fixture,  # noqa: F401  (the settings fixture)
    write_fixture,  # noqa: F401  (the write fixture)
)

# --- status -----------------------------------------------------------------------------------------------------


def test_status_shows_the_periodic_tasks(
    env: dict[str, str], conn: redis.Redis, settings: Settings, write: Callable[..., Settings]
) -> None:
    assert json.loads(run(["task-producer", "status", "--json"], env).stdout)["cron"] == {}
    clock = Clock("2026-12-02T12:00:30")
    hourly = {"name": "sync", "cron": "@daily", "func": "worker.examples.noop", "queue": "low"}
    cron = cron_of(conn, settings, clock, load(write(SUM, hourly, base=settings)))
    cron.tick()
    clock.set("2026-12-02T13:00:00")
    cron.tick()
    facts = json.loads(run(["task-producer", "status", "--json"], env).stdout)["cron"]
    assert {name: {k: v for k, v in c.items() if k != "updated_seconds_ago"} for name, c in facts.items()} == {
        "sum": {
            "schedule": "0 * * * *",
            "func": "worker.examples.add",
            "queue": "default",
            "last_run": "2026-12-02T13:00:00Z",
            "last_job_id": run_id("sum", at("2026-12-02T13:00:00")),
            "next_run": "2026-12-02T14:00:00Z",
        },
        "sync": {
            "schedule": "@daily",
            "func": "worker.examples.noop",
            "queue": "low",
            "last_run": None,
            "last_job_id": None,
            "next_run": "2026-12-03T00:00:00Z",
        },
    }
    table = run(["task-producer", "status"], env).stdout.splitlines()
    start = next(i for i, line in enumerate(table) if line.startswith("CRON"))
    assert [line.split() for line in table[start : start + 3]] == [
        ["CRON", "SCHEDULE", "FUNC", "QUEUE", "LAST", "RUN", "NEXT", "RUN"],
        [
            "sum",
            "0",
            "*",
            "*",
            "*",
            "*",
            "worker.examples.add",
            "default",
            "2026-12-02",
            "13:00Z",
            "2026-12-02",
            "14:00Z",
        ],
        ["sync", "@daily", "worker.examples.noop", "low", "-", "2026-12-03", "00:00Z"],
    ]
    assert conn.ttl(keys.CRON_STATUS) > 0, "the published schedule would outlive its leader"


def test_run_local_takes_task_cron_and_publishes_its_schedule(
    env: dict[str, str], conn: redis.Redis, tmp_path: Path, spawn: Callable[..., Proc]
) -> None:
    path = tmp_path / "cron.jsonl"
    path.write_text(json.dumps(SUM) + "\n")
    spawn("task-producer", "run-local", "--jobs", "0", "--keep-running", extra_env={"TASK_CRON": str(path)})
    wait_for(lambda: conn.hget(keys.CRON_STATUS, "sum"), timeout=30, what="run-local to publish its periodic task")
    assert json.loads(as_bytes(conn.hget(keys.CRON_TICKS, "sum")))["schedule"] == "0 * * * *"
