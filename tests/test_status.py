"""``task-producer status``: the oldest job's age, the autoscaler's state, and ``--watch`` on and off a terminal."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
import redis
from rq.utils import utcformat

from producer import Producer, Task
from producer.commands.status import CLEAR_SCREEN, age
from producer.scaling.autoscaler import Autoscaler, TargetState
from producer.scaling.policy import Bounds
from task_processor.observe import WorkerInfo
from tests.conftest import BIN, run
from tests.test_progress import run_on_tty


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


def test_watch_on_a_terminal_redraws_in_place(env: dict[str, str], producer: Producer) -> None:
    producer.enqueue("worker.examples.noop")
    command = [str(BIN / "task-producer"), "status", "--watch", "0.05"]
    # `timeout -s INT` is the Ctrl-C: the command must take it as the way out, exit code 0.
    code, screen = run_on_tty(["/usr/bin/timeout", "--preserve-status", "-s", "INT", "1", *command], env)
    assert code == 0, screen
    assert screen.count(CLEAR_SCREEN) >= 2
    assert "every 0.05s, at " in screen
    assert re.search(r"^default\s+1\s", screen.split(CLEAR_SCREEN)[-1], re.M)


def test_watch_needs_a_positive_interval(env: dict[str, str]) -> None:
    result = run(["task-producer", "status", "--watch", "0"], env)
    assert result.returncode == 2
    assert "--watch 0: give a number of seconds > 0" in result.stderr
