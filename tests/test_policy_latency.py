"""The latency rule (AUTOSCALE_TARGET_WAIT) and the rate meter that feeds it: replica counts an operator would
see for given rates, and rates measured from RQ's counters, including noisy and flapping inputs."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.scaling.policy import (
    BACKLOG_SHARE,
    KEEP_UP,
    Bounds,
    Observation,
    PolicyState,
    decide,
    demand,
    latency_rule,
)
from producer.scaling.rates import RateMeter, WorkerTally
from task_processor.errors import ConfigError


def bounds(target: float | None = 10.0, maximum: int = 100, per_worker: int = 1000, delay: float = 60.0) -> Bounds:
    return Bounds(0, maximum, per_worker, delay, target_wait=target)


def obs(
    queued: int = 0,
    in_flight: int = 0,
    current: int = 0,
    oldest: float = 0.0,
    arrival: float | None = None,
    service: float | None = None,
) -> Observation:
    return Observation(queued, in_flight, 0, current, oldest, arrival, service)  # busy workers: the floor's test


# ----------------------------------------------------------------------------------------------- the formula


@pytest.mark.parametrize(
    ("observation", "expected"),
    [
        # 0.8·λ/μ: 5 jobs/s of 0.5 s jobs, 2.5 workers' worth, staffed 0.8: 2 workers.
        (obs(in_flight=2, arrival=5.0, service=2.0), 2),
        # Q/(μ·0.8·W): 32 queued 1 s jobs drained within 8 s (0.8 of 10) need 4 workers.
        (obs(queued=32, service=1.0), 4),
        # Both: 0.8 of 2.5 workers' worth of arrivals (2) and 8 queued 2 s jobs within 8 s (2 more).
        (obs(queued=8, arrival=1.25, service=0.5), 4),
        # The oldest job waited twice the target: the backlog term doubles.
        (obs(queued=32, oldest=20.0, service=1.0), 8),
        # The oldest job is within the target: no correction.
        (obs(queued=32, oldest=9.0, service=1.0), 4),
        # A partial worker is a worker: 0.8 · 2.6 = 2.08.
        (obs(in_flight=3, arrival=2.6, service=1.0), 3),
        # Float noise is not a worker: 0.8 · 0.375 / 0.1 is 3.0000000000000004.
        (obs(in_flight=3, arrival=0.375, service=0.1), 3),
        # No service rate yet (no job ended): the rule abstains, whatever the queue.
        (obs(queued=1000, arrival=50.0), 0),
        (obs(queued=1000, arrival=50.0, service=0.0), 0),
        (obs(queued=1000, arrival=50.0, service=math.nan), 0),
        # No arrival rate yet: the backlog alone.
        (obs(queued=16, service=1.0), 2),
        # Nothing queued, nothing arriving.
        (obs(service=1.0), 0),
        # Never more workers than jobs in sight: 10 jobs/s of 1 s jobs, but 4 jobs in sight.
        (obs(queued=1, in_flight=3, arrival=10.0, service=1.0), 4),
        # Nothing in sight, however high the smoothed arrival rate still is: the count rule takes over.
        (obs(arrival=10.0, service=1.0), 0),
    ],
)
def test_the_latency_rule(observation: Observation, expected: int) -> None:
    assert latency_rule(observation, bounds()) == expected


def test_off_without_a_target() -> None:
    assert latency_rule(obs(queued=1000, arrival=50.0, service=0.1), bounds(target=None)) == 0


def test_the_count_rule_stays_the_floor_and_the_bounds_hold() -> None:
    b = bounds(per_worker=10, maximum=8)
    assert demand(obs(queued=50, service=100.0, arrival=0.0), b) == 5  # the count rule wins: 50/10
    assert demand(obs(queued=10, service=0.01, arrival=1.0), b) == 8  # the latency rule, capped at maximum
    assert demand(obs(queued=100, service=1e-300, arrival=1e300), b) == 8  # overflow: as many as allowed


@pytest.mark.parametrize("target", [0, -1.0, math.inf, math.nan, True, "5"])
def test_a_bad_target_is_one_clear_line(target: object) -> None:
    with pytest.raises(ConfigError, match="AUTOSCALE_TARGET_WAIT"):
        Bounds(0, 10, 1, 60.0, target_wait=target)  # type: ignore[arg-type]


@given(
    queued=st.integers(0, 10_000),
    arrival=st.floats(0, 1000),
    service=st.floats(0.001, 1000),
    oldest=st.floats(0, 10_000),
    target=st.floats(0.1, 3600),
)
def test_the_latency_rule_is_the_smallest_fleet_that_meets_its_own_estimate(
    queued: int, arrival: float, service: float, oldest: float, target: float
) -> None:
    """n workers meet the estimate (0.8·λ/μ + Q·lateness/(μ·0.8·W) <= n) and n - 1 do not, up to float rounding."""
    in_flight = 10_000  # enough jobs in sight that the cap does not bind
    observation = obs(queued=queued, in_flight=in_flight, arrival=arrival, service=service, oldest=oldest)
    n = latency_rule(observation, bounds(target=target))
    need = KEEP_UP * arrival / service + queued / (service * BACKLOG_SHARE * target) * max(1.0, oldest / target)
    if need <= queued + in_flight:
        assert n >= need - 1e-6
        assert n - 1 < need + 1e-6 or n == 0
    else:
        assert n == queued + in_flight


# ------------------------------------------------------------------------------ decisions over time, flapping


def run(b: Bounds, rates: list[tuple[float, float]], interval: float = 1.0) -> list[int]:
    """Feed (arrival, service) pairs one interval apart through decide; each desired count becomes current."""
    state, current, desired = PolicyState(), 0, []
    for step, (arrival, service) in enumerate(rates):
        observation = obs(in_flight=50, current=current, arrival=arrival, service=service)
        decision, state = decide(observation, b, state, step * interval)
        current = decision.desired
        desired.append(current)
    return desired


def test_a_rise_in_arrivals_scales_up_at_once_and_a_fall_waits_for_the_delay() -> None:
    counts = run(bounds(delay=30.0), [(1.25, 1.0)] * 5 + [(10.0, 1.0)] * 5 + [(1.25, 1.0)] * 40)
    assert counts[4] == 1
    assert counts[5] == 8  # at once
    assert counts[10:39] == [8] * 29  # held through the scale-down delay
    assert counts[-1] == 1


def test_flapping_rates_do_not_flap_the_fleet() -> None:
    """Arrivals alternating between two levels every interval: one scale-up, no scale-down inside the window."""
    flapping = [(7.5, 1.0) if step % 2 else (1.25, 1.0) for step in range(60)]
    counts = run(bounds(delay=30.0), flapping)
    changes = sum(1 for before, after in itertools.pairwise(counts) if before != after)
    assert changes == 1, counts
    assert max(counts) == 6


def test_a_noisy_meter_fed_by_flapping_counters_keeps_the_fleet_steady() -> None:
    """Seeded random bursts around a steady 5 jobs/s of 1 s jobs: the meter's smoothing and the delay window
    keep the count within a narrow band, with few changes."""
    rng, meter, b = random.Random(3), RateMeter(half_life=30.0), bounds(delay=60.0)
    state, current, total, counts = PolicyState(), 0, 0, []
    tallies = {"w1": WorkerTally(0, 0.0)}
    for step in range(600):
        now = step * 0.25
        total += rng.choice([0, 0, 0, 5])  # 5 jobs/s on average, in clumps
        done = tallies["w1"].completed + rng.choice([0, 1, 2])
        tallies = {"w1": WorkerTally(done, float(done))}  # 1 s a job
        rates = meter.update(now, {"default": total}, tallies)
        observation = obs(in_flight=20, current=current, arrival=rates.total_arrival, service=rates.service)
        decision, state = decide(observation, b, state, now)
        current = decision.desired
        counts.append(current)
    settled = counts[200:]
    # 0.8 of 5 busy workers' worth (the queue, empty here, would staff the rest), give or take.
    assert set(settled) <= {3, 4, 5, 6}, sorted(set(settled))
    assert sum(1 for a, c in itertools.pairwise(settled) if a != c) <= 4


# ------------------------------------------------------------------------------------------------ the meter


def test_the_meter_measures_a_steady_arrival_and_service_rate() -> None:
    meter = RateMeter(half_life=5.0)
    for step in range(200):
        now = step * 0.25
        done = step  # 4 jobs ended per second on two workers, 0.5 s each
        workers = {
            "a": WorkerTally(done // 2, done // 2 * 0.5),
            "b": WorkerTally(done - done // 2, (done - done // 2) * 0.5),
        }
        rates = meter.update(now, {"high": step, "low": 3 * step}, workers)
    assert rates.arrival == pytest.approx({"high": 4.0, "low": 12.0}, rel=0.01)
    assert rates.total_arrival == pytest.approx(16.0, rel=0.01)
    assert rates.service == pytest.approx(2.0, rel=0.01)


def test_the_first_look_knows_no_rates() -> None:
    rates = RateMeter().update(0.0, {"default": 500}, {"a": WorkerTally(10, 10.0)})
    assert (rates.arrival, rates.service) == ({"default": 0.0}, None)


def test_shrinking_counters_are_not_negative_arrivals_and_a_restarted_worker_adds_nothing() -> None:
    meter = RateMeter(half_life=1.0)
    meter.update(0.0, {"default": 100}, {"a": WorkerTally(50, 100.0), "b": WorkerTally(10, 10.0)})
    # The finished registry was cleaned (total fell) and worker a restarted under its name (counters reset).
    rates = meter.update(1.0, {"default": 40}, {"a": WorkerTally(1, 0.5), "b": WorkerTally(12, 12.0)})
    assert rates.arrival == {"default": 0.0}
    assert rates.service == pytest.approx(1.0)  # from b alone: 2 jobs in 2 s


def test_an_interval_without_endings_keeps_the_service_rate_and_arrivals_decay() -> None:
    meter = RateMeter(half_life=10.0)
    meter.update(0.0, {"q": 0}, {"a": WorkerTally(0, 0.0)})
    meter.update(10.0, {"q": 100}, {"a": WorkerTally(20, 40.0)})
    idle = meter.update(20.0, {"q": 100}, {"a": WorkerTally(20, 40.0)})
    assert idle.service == pytest.approx(0.5)
    assert idle.arrival["q"] == pytest.approx(5.0)  # 10 jobs/s weighed half after one half-life with none


def test_a_clock_that_stands_still_or_goes_back_changes_nothing() -> None:
    meter = RateMeter()
    meter.update(10.0, {"q": 0}, {})
    before = meter.update(11.0, {"q": 10}, {})
    assert meter.update(11.0, {"q": 500}, {}) == before
    assert meter.update(5.0, {"q": 900}, {}) == before


def test_a_few_long_jobs_among_many_short_ones_are_weighed_by_their_time() -> None:
    """Every interval one 0.1 s job ends; every 40th interval a 100 s job ends too. One busy worker then ends
    41 jobs per 104 s worked: the rate is that ratio, not the short jobs' 10 jobs/s that most intervals see."""
    meter, completed, worked = RateMeter(half_life=600.0), 0, 0.0
    for step in range(4000):
        completed, worked = completed + 1, worked + 0.1
        if step % 40 == 39:
            completed, worked = completed + 1, worked + 100.0
        rates = meter.update(step * 1.0, {}, {"a": WorkerTally(completed, worked)})
    assert rates.service == pytest.approx(41 / 104, rel=0.15)


def test_jobs_faster_than_the_clock_give_a_finite_rate() -> None:
    meter = RateMeter()
    meter.update(0.0, {}, {"a": WorkerTally(0, 0.0)})
    rates = meter.update(1.0, {}, {"a": WorkerTally(100, 0.0)})
    assert rates.service is not None
    assert math.isfinite(rates.service)
