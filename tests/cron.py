"""What the periodic-task tests share (tests/test_cron_file.py, tests/test_cron_runs.py, tests/test_cron_status.py,
and tests/test_chart_cron.py): UTC times written as ISO 8601, the injected cron clock, an hourly entry, the fixtures
that write a TASK_CRON file and give settings for the test Redis, and a Cron on that clock. A test module that uses
the fixtures imports ``settings_fixture`` and ``write_fixture``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from producer.scaling.cron import Cron, CronEntry
from task_processor.settings import Settings
from tests.conftest import TASK_MODULES


def at(text: str) -> int:
    """Unix seconds of a UTC time written as ISO 8601 ("2026-12-02T12:00:30")."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


class Clock:
    """The cron's wall clock, set by the test."""

    def __init__(self, when: str) -> None:
        self.now = float(at(when))

    def __call__(self) -> float:
        return self.now

    def set(self, when: str) -> None:
        self.now = float(at(when))


SUM = {"name": "sum", "cron": "0 * * * *", "func": "worker.examples.add", "args": [2, 3]}


@pytest.fixture(name="settings")
def settings_fixture(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, task_modules=(TASK_MODULES,), autoscale_interval=0.02)


@pytest.fixture(name="write")
def write_fixture(tmp_path: Path) -> Callable[..., Settings]:
    """A TASK_CRON file of these lines (dicts as JSON, strings as they are), and settings naming it."""

    def make(*lines: dict[str, Any] | str, base: Settings | None = None) -> Settings:
        path = tmp_path / "cron.jsonl"
        path.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
        return Settings(**{**vars(base or Settings(task_modules=(TASK_MODULES,))), "cron_file": str(path)})

    return make


def cron_of(conn: redis.Redis, settings: Settings, clock: Clock, entries: tuple[CronEntry, ...]) -> Cron:
    return Cron(conn, entries, settings, clock=clock)
