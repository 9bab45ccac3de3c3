"""Spare starts (AUTOSCALE_START_SPARES): on a cold start a few Pods more than demand, released at once when a
worker is up; replica counts an operator would see, pass by pass, including a worker that comes and goes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis

from producer import Producer
from producer.scaling.policy import Bounds, Decision, Observation, PolicyState, Reason, decide
from task_processor.errors import ConfigError
from task_processor.settings import Settings
from tests.conftest import local_fleet, wait_for


def bounds(spares: int = 2, maximum: int = 10, delay: float = 60.0) -> Bounds:
    return Bounds(0, maximum, 1, delay, target_wait=None, start_spares=spares)


def look(queued: int, current: int, ready: int | None, busy: int = 0) -> Observation:
    return Observation(queued=queued, in_flight=busy, busy_workers=busy, current=current, ready=ready)


def passes(b: Bounds, looks: Sequence[tuple[int, int | None, int]]) -> list[Decision]:
    """(queued, ready, busy) one second apart; each desired count becomes the next pass's current."""
    state, current, decisions = PolicyState(), 0, []
    for at, (queued, ready, busy) in enumerate(looks):
        decision, state = decide(look(queued, current, ready, busy), b, state, float(at))
        current = decision.desired
        decisions.append(decision)
    return decisions


def test_a_cold_start_starts_spares_and_releases_them_when_a_worker_is_up() -> None:
    # A job arrives at zero; no worker is up for two passes; then one is, and has taken the job.
    decisions = passes(bounds(), [(1, 0, 0), (1, 0, 0), (1, 0, 0), (0, 1, 1), (0, 1, 1)])
    assert [(d.desired, d.spares) for d in decisions] == [(3, 2), (3, 2), (3, 2), (1, 0), (1, 0)]
    assert decisions[0].reason is Reason.SCALE_UP
    assert decisions[3].reason is Reason.SPARES_RELEASED  # at once: the 60 s scale-down window is for demand


def test_spares_that_took_jobs_keep_them() -> None:
    # Two Pods came up together and each took one of the two queued jobs: neither is removed while busy (the
    # third, still starting, goes), and their jobs are demand now, held by the window like any other.
    decisions = passes(bounds(), [(2, 0, 0), (0, 2, 2), (0, 2, 2), (0, 1, 1)])
    assert [d.desired for d in decisions] == [4, 2, 2, 2]
    assert decisions[1].reason is Reason.SPARES_RELEASED


def test_spares_never_go_past_the_maximum() -> None:
    assert passes(bounds(maximum=2), [(1, 0, 0)])[0].desired == 2
    assert passes(bounds(maximum=1), [(1, 0, 0)])[0].desired == 1
    assert passes(bounds(maximum=10), [(30, 0, 0)])[0].desired == 10  # demand 30 is capped, no room for spares


def test_none_when_turned_off_when_nothing_waits_or_when_workers_are_unknown() -> None:
    assert [d.desired for d in passes(bounds(spares=0), [(1, 0, 0), (1, 0, 0)])] == [1, 1]
    assert passes(bounds(), [(0, 0, 0)])[0].desired == 0
    assert passes(bounds(), [(1, None, 0)])[0].desired == 1


def test_spares_come_with_a_scale_up_not_with_a_worker_that_comes_and_goes() -> None:
    """A crash-looping worker: registered on one pass, gone on the next, jobs queued throughout. The cold start
    adds spares once; after the release the flapping count of workers adds none and writes nothing."""
    looks: Sequence[tuple[int, int | None, int]] = [(5, 0, 0), (5, 1, 0)] + [(5, n % 2, 0) for n in range(40)]
    decisions = passes(bounds(), looks)
    desired = [d.desired for d in decisions]
    assert desired[:2] == [7, 5]
    assert set(desired[2:]) == {5}
    assert sum(1 for a, b in itertools.pairwise(desired) if a != b) == 1


def test_spares_stay_out_of_the_scale_down_window() -> None:
    """Released spares are not demand: after the release the window holds the demand (1), not 3."""
    b = bounds(delay=10.0)
    decisions = passes(b, [(1, 0, 0)] * 3 + [(0, 1, 1)] * 3 + [(0, 1, 0)] * 15)
    assert [d.desired for d in decisions][3:6] == [1, 1, 1]
    assert decisions[-1].desired == 0  # demand 0 once the window has passed


def test_spares_on_top_of_a_held_count_are_released_without_scaling_in_the_rest() -> None:
    """Workers at 4 held by the window, scaled up from zero ready (all four crashed): spares go, the four stay."""
    state = PolicyState(history=((0.0, 4),))
    first, state = decide(look(queued=6, current=4, ready=0), bounds(), state, 1.0)
    assert (first.desired, first.spares) == (8, 2)  # demand 6 (one worker per job), plus 2
    second, state = decide(look(queued=0, current=8, ready=4, busy=4), bounds(), state, 2.0)
    assert (second.desired, second.reason) == (6, Reason.SPARES_RELEASED)


@pytest.mark.parametrize(("raw", "expected"), [(None, 2), ("0", 0), ("5", 5)])
def test_the_setting_is_two_unless_set(raw: str | None, expected: int) -> None:
    env = {} if raw is None else {"AUTOSCALE_START_SPARES": raw}
    assert Settings.from_env(env).start_spares == expected


@pytest.mark.parametrize("raw", ["-1", "two", "1.5"])
def test_a_bad_setting_is_one_line_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="AUTOSCALE_START_SPARES"):
        Settings.from_env({"AUTOSCALE_START_SPARES": raw})
    with pytest.raises(ConfigError, match="AUTOSCALE_START_SPARES"):
        Bounds(0, 10, 1, 60.0, start_spares=-1)


# ------------------------------------------------------------------------------------ end to end: a real fleet


@pytest.mark.timeout(90)
def test_a_cold_start_runs_three_workers_and_keeps_one(
    env: dict[str, str], producer: Producer, conn: redis.Redis, tmp_path: Path
) -> None:
    """At zero workers one job starts three worker processes; the first up runs it, the other two are retired
    as soon as it is up, not after the scale-down delay, and the job runs once."""
    settings = Settings.from_env({**env, "AUTOSCALE_MAX": "5", "AUTOSCALE_SCALE_DOWN_DELAY": "300"})
    assert settings.start_spares == 2  # the default
    with local_fleet(conn, settings, tmp_path / "w.log") as (deployment, autoscaler):
        job = producer.enqueue("worker.examples.sleep", 0.5)
        wait_for(lambda: len(autoscaler.events) >= 2, timeout=30, what="the spares' release")
        assert len(deployment.running()) <= 3
        producer.wait([job], timeout=30)
        wait_for(lambda: len(deployment.running()) == 1, timeout=30, what="the spares to exit")
    scaled = [(e.previous, e.desired, e.reason) for e in autoscaler.events]
    assert scaled[:2] == [(0, 3, "scale-up"), (3, 1, "spares-released")], scaled
    assert job.get_status(refresh=True) == "finished"
    finished = conn.zrange(f"rq:finished:{settings.queues[0]}", 0, -1)
    assert finished == [job.id.encode()]
