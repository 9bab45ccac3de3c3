"""What the bad-input tests (tests/test_bad_*.py) share: running project commands side by side, reading their
one-line errors, the records jobs leave in Redis, and a long-running worker for hypothesis tests.

Bad input, tried systematically: each gives ONE clear error naming the problem, and none corrupts the queue,
kills a worker or drops other tasks. Tables (``parametrize``) hold the known cases, hypothesis strategies the
arbitrary ones. Workers are real ``task-worker`` processes against the session's real redis-server. One module per
kind of bad input:

- tests/test_bad_functions.py: unknown or malformed task functions
- tests/test_bad_arguments.py: arguments JSON cannot carry
- tests/test_bad_payload_size.py: oversized payloads
- tests/test_bad_queue_names.py: queue names
- tests/test_bad_redis_data.py: garbage or foreign data under our keys
- tests/test_bad_job_deleted_mid_flight.py: a job deleted while it runs
- tests/test_bad_redis_urls.py: wrong password, TLS, bad Redis URLs

A test module that runs hypothesis examples against ``live_worker`` imports ``live_worker_fixture`` from here.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings

from tests.conftest import BIN, Proc, as_bytes


def hypothesis_settings(count: int) -> settings:
    """Hypothesis settings for these tests: few examples, no deadline (real processes), no example database."""
    return settings(
        max_examples=count,
        deadline=None,
        database=None,  # no .hypothesis/ directory written into the repository
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@dataclass
class Finished:
    """A command run to completion (or killed at the deadline: ``returncode`` None)."""

    args: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float


_runs = itertools.count()


def run_all(
    commands: list[list[str]],
    env: dict[str, str],
    tmp_path: Path,
    timeout: float = 30,
    envs: list[dict[str, str]] | None = None,
) -> list[Finished]:
    """Run project commands side by side (they are independent), each killed if it outlives ``timeout``.

    ``envs`` gives each command its own extra variables on top of ``env``.
    """
    started = time.monotonic()
    procs = []
    for i, command in enumerate(commands):
        out, err = (tmp_path / f"run{next(_runs)}.{kind}" for kind in ("out", "err"))
        with out.open("wb") as stdout, err.open("wb") as stderr:
            popen = subprocess.Popen(
                [str(BIN / command[0]), *command[1:]],
                env={**env, **(envs[i] if envs else {})},
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        procs.append((command, popen, out, err))
    results = []
    for command, popen, out, err in procs:
        try:
            code: int | None = popen.wait(timeout=max(0.1, started + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)  # the group we started: the command and any child of it
            popen.wait()
            code = None
        elapsed = time.monotonic() - started
        results.append(
            Finished(command, code, out.read_text(errors="replace"), err.read_text(errors="replace"), elapsed)
        )
    return results


def one_error_line(text: str, prog: str) -> str:
    """``text`` is exactly one line ``<prog>: error: ...`` with no traceback; returns it."""
    assert "Traceback" not in text, text
    assert text.count("\n") == 1, text
    assert text.startswith(f"{prog}: error: "), text
    return text.strip()


def attempt(call: Callable[[], Any], error: type[Exception]) -> tuple[Any, Exception | None]:
    """``(call(), None)``, or ``(None, the error)`` when ``call`` raises ``error``: lets a test branch on either."""
    try:
        return call(), None
    except error as exc:
        return None, exc


def snapshot(conn: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key with its serialized value: equal snapshots mean nothing was written."""
    return {key: conn.dump(key) for key in sorted(as_bytes(key) for key in conn.keys("*"))}


@pytest.fixture(name="live_worker")
def live_worker_fixture(spawn: Callable[..., Proc]) -> Proc:
    """One long-running ``task-worker`` shared by every example of a hypothesis test (started before the first)."""
    return spawn("task-worker")
