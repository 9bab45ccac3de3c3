"""``task-producer status``: the oldest job's age, the autoscaler's state, and ``--watch`` on and off a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from rq.utils import utcformat

from producer import Producer, Task
from producer.commands.status import CLEAR_SCREEN, age
from producer.scaling.autoscaler import Autoscaler, TargetState
from producer.scaling.policy import Bounds
from task_processor import keys
from task_processor.observe import WorkerInfo
from tests.conftest import BIN, run, wait_for


class FixedTarget:
    """A Deployment whose replicas and pause annotation the test sets."""

    name = "task-processor"

    def __init__(self, replicas: int, paused: bool = False) -> None:
        self.state = TargetState(replicas, paused)

    def read(self, fresh: bool = False) -> TargetState:
        return self.state

    def set_replicas(self, replicas: int, workers: Sequence[WorkerInfo] = ()) -> None:
        self.state = TargetState(replicas, self.state.paused)


def test_status_shows_how_long_the_oldest_job_has_waited(
    env: dict[str, str], producer: Producer, conn: redis.Redis
) -> None:
    old, _ = producer.enqueue_many([Task("worker.examples.noop"), Task("worker.examples.noop")])
    conn.hset(old.key, "enqueued_at", utcformat(datetime.now(UTC) - timedelta(seconds=95)))  # as if it came 95 s ago
    producer.enqueue("worker.examples.noop", queue="low")
    conn.rpush("rq:queue:broken", "no-such-job")  # a head that is not a job: no age, no crash
    conn.sadd("rq:queues", "rq:queue:broken", "rq:queue:empty")
    facts = json.loads(run(["task-producer", "status", "--json"], env).stdout)
    ages = {name: q["oldest_queued_seconds"] for name, q in facts["queues"].items()}
    assert 95 <= ages["default"] < 120
    assert 0 <= ages["low"] < 30
    assert (ages["broken"], ages["empty"]) == (None, None)
    table = run(["task-producer", "status"], env).stdout
    assert re.search(r"^default\s+2\s.*\s1m3\ds$", table, re.M), table
    assert re.search(r"^empty\s+0\s.*\s-$", table, re.M), table


@pytest.mark.parametrize(
    ("seconds", "shown"), [(None, "-"), (0.4, "0s"), (59.9, "59s"), (61, "1m01s"), (3599, "59m59s"), (7380, "2h03m")]
)
def test_ages_read_at_a_glance(seconds: float | None, shown: str) -> None:
    assert age(seconds) == shown


@pytest.mark.parametrize(("paused", "state"), [(False, "active"), (True, "paused")])
def test_status_shows_the_autoscalers_state_and_replicas(
    env: dict[str, str], producer: Producer, conn: redis.Redis, paused: bool, state: str
) -> None:
    producer.enqueue_many([Task("worker.examples.noop") for _ in range(25)])
    Autoscaler(conn, ("default",), FixedTarget(1, paused), Bounds(0, 5, 10, 0.0)).step()
    facts = json.loads(run(["task-producer", "status", "--json"], env).stdout)["autoscaler"]
    desired = 1 if paused else 3
    assert (facts["state"], facts["desired"], facts["current"]) == (state, desired, 1)
    table = run(["task-producer", "status"], env).stdout
    assert f"autoscaler: {state}, task-processor desired {desired}, current 1 (" in table


class FakeClock:
    """The autoscaler's monotonic clock, moved on by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def autoscaler_facts(env: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
    """What ``status --json`` says of the autoscaler, and the autoscaler line of the table."""
    as_json = run(["task-producer", "status", "--json"], env)
    table = run(["task-producer", "status"], env)
    assert (as_json.returncode, table.returncode) == (0, 0), as_json.stderr + table.stderr
    (line,) = [line for line in table.stdout.splitlines() if line.startswith("autoscaler: ")]
    return json.loads(as_json.stdout)["autoscaler"], line


def test_status_shows_holding_after_a_manual_scale_until_the_hold_ends(
    env: dict[str, str], producer: Producer, conn: redis.Redis
) -> None:
    producer.enqueue_many([Task("worker.examples.noop") for _ in range(25)])
    target, clock = FixedTarget(1), FakeClock()
    autoscaler = Autoscaler(conn, ("default",), target, Bounds(0, 5, 10, 0.0), manual_hold=300, clock=clock)
    autoscaler.step()
    assert target.state.replicas == 3
    target.state = TargetState(8, False)  # `kubectl scale --replicas=8`
    autoscaler.step()
    facts, line = autoscaler_facts(env)
    assert facts is not None
    assert (facts["state"], facts["desired"], facts["current"], facts["reason"]) == ("holding", 8, 8, "holding")
    assert line.startswith("autoscaler: holding, task-processor desired 8, current 8 (holding, "), line
    clock.now += 299  # still within AUTOSCALE_MANUAL_HOLD: the replicas stay as ops left them
    autoscaler.step()
    assert target.state.replicas == 8
    assert autoscaler_facts(env)[0]["state"] == "holding"  # type: ignore[index]
    clock.now += 2  # the hold is over: the demand decides again
    autoscaler.step()
    assert target.state.replicas == 3
    facts, line = autoscaler_facts(env)
    assert facts is not None
    assert (facts["state"], facts["desired"], facts["current"]) == ("active", 3, 8)
    assert line.startswith("autoscaler: active, task-processor desired 3, current 8 ("), line


def test_without_a_manual_hold_a_manual_scale_is_not_held(
    env: dict[str, str], producer: Producer, conn: redis.Redis
) -> None:
    producer.enqueue_many([Task("worker.examples.noop") for _ in range(25)])
    target = FixedTarget(1)
    autoscaler = Autoscaler(conn, ("default",), target, Bounds(0, 5, 10, 0.0), manual_hold=0)
    autoscaler.step()
    target.state = TargetState(8, False)
    autoscaler.step()
    assert target.state.replicas == 3
    facts, _ = autoscaler_facts(env)
    assert facts is not None
    assert (facts["state"], facts["desired"]) == ("active", 3)


def test_status_says_not_running_without_a_report_or_once_it_lapsed(
    env: dict[str, str], producer: Producer, conn: redis.Redis
) -> None:
    not_running = "autoscaler: not running (no decision published in Redis)"
    assert autoscaler_facts(env) == (None, not_running)
    Autoscaler(conn, ("default",), FixedTarget(1), Bounds(0, 5, 10, 0.0), interval=1.0).step()
    assert autoscaler_facts(env)[0] is not None
    # A stopped autoscaler's report lapses within a minute (README: no decision published in the last minute).
    key = keys.autoscaler_status("task-processor")
    assert 0 < conn.ttl(key) <= 60
    conn.pexpire(key, 1)  # that minute, gone by
    wait_for(lambda: not conn.exists(key), what="the report to lapse")
    assert autoscaler_facts(env) == (None, not_running)


def test_watch_off_a_terminal_prints_one_table_after_another_until_ctrl_c(
    env: dict[str, str], producer: Producer
) -> None:
    producer.enqueue("worker.examples.noop")
    for args, first in ((["--watch", "0.05"], "QUEUE"), (["--json", "--watch", "0.05"], "{")):
        watching = subprocess.Popen(
            [str(BIN / "task-producer"), "status", *args], env=env, stdout=subprocess.PIPE, text=True
        )
        assert watching.stdout is not None
        lines = [watching.stdout.readline() for _ in range(12)]
        watching.send_signal(signal.SIGINT)
        rest, _ = watching.communicate(timeout=10)
        assert watching.returncode == 0
        assert CLEAR_SCREEN not in "".join(lines) + rest
        assert lines[0].startswith(first)
        if first == "{":  # JSON lines: one document per refresh
            assert all(json.loads(line)["queues"]["default"]["queued"] == 1 for line in lines)
        else:
            assert sum(line.startswith("QUEUE") for line in lines) >= 2
            assert "\n" in lines  # a blank line between two tables


@pytest.mark.timeout(90)
def test_watch_on_a_terminal_redraws_in_place(env: dict[str, str], producer: Producer) -> None:
    producer.enqueue("worker.examples.noop")
    master, slave = pty.openpty()
    watching = subprocess.Popen(
        [str(BIN / "task-producer"), "status", "--watch", "0.05"],
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    screen = b""

    def read(until: Callable[[str], bool]) -> bool:
        nonlocal screen
        if select.select([master], [], [], 0.1)[0]:
            try:
                screen += os.read(master, 65536)
            except OSError:  # EIO: the command exited and the terminal closed
                return True
        return until(screen.decode(errors="replace"))

    def redrawn(text: str) -> bool:  # two whole redraws: a third has begun
        return text.count(CLEAR_SCREEN) >= 3

    try:
        wait_for(lambda: read(redrawn), timeout=60, what="two redraws")
        watching.send_signal(signal.SIGINT)  # Ctrl-C: the way out, exit code 0
        assert watching.wait(timeout=30) == 0
        wait_for(lambda: read(lambda _: not select.select([master], [], [], 0)[0]), timeout=10, what="the end")
    finally:
        watching.kill()
        watching.wait(timeout=10)
        os.close(master)
    text = screen.decode(errors="replace")
    assert redrawn(text), text
    drawn = text.split(CLEAR_SCREEN)[1:]
    for frame in drawn[:2]:
        assert frame.startswith("every 0.05s, at "), frame
        assert re.search(r"^default\s+1\s", frame, re.M), frame
        assert "autoscaler: not running" in frame, frame


def test_watch_needs_a_positive_interval(env: dict[str, str]) -> None:
    result = run(["task-producer", "status", "--watch", "0"], env)
    assert result.returncode == 2
    assert "--watch 0: give a number of seconds > 0" in result.stderr
