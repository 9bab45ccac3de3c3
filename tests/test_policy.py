"""Behaviour of the scaling policy as an operator would see it: replica counts over a fake clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from producer.scaling.policy import Bounds, Decision, Observation, PolicyState, Reason, decide, demand


def bounds(minimum: int = 0, maximum: int = 10, jobs_per_worker: int = 1, delay: float = 10.0) -> Bounds:
    return Bounds(minimum=minimum, maximum=maximum, jobs_per_worker=jobs_per_worker, scale_down_delay=delay)


def obs(queued: int = 0, in_flight: int = 0, busy: int = 0, current: int = 0) -> Observation:
    return Observation(queued=queued, in_flight=in_flight, busy_workers=busy, current=current)


def run(b: Bounds, ticks: list[tuple[float, int]], start: int, busy: int = 0) -> list[tuple[float, Decision]]:
    """Feed (time, queued) ticks through decide, applying each desired count as the next current."""
    state, current, out = PolicyState(), start, []
    for now, queued in ticks:
        decision, state = decide(obs(queued=queued, busy=busy, current=current), b, state, now)
        current = decision.desired
        out.append((now, decision))
    return out


@pytest.mark.parametrize(
    ("queued", "in_flight", "per_worker", "minimum", "maximum", "expected"),
    [
        (0, 0, 1, 0, 10, 0),
        (1, 0, 1, 0, 10, 1),
        (10, 0, 5, 0, 10, 2),
        (11, 0, 5, 0, 10, 3),  # rounds up: a partial batch still needs a worker
        (3, 2, 5, 0, 10, 1),  # in-flight jobs occupy workers too
        (0, 0, 1, 2, 10, 2),  # minimum holds with no work
        (500, 0, 1, 0, 10, 10),  # maximum caps a flood
        (-5, -3, 1, 0, 10, 0),  # stale negative counts count as zero
        (-5, 4, 1, 0, 10, 4),
    ],
)
def test_demand_arithmetic_and_clamping(
    queued: int, in_flight: int, per_worker: int, minimum: int, maximum: int, expected: int
) -> None:
    b = bounds(minimum=minimum, maximum=maximum, jobs_per_worker=per_worker)
    assert demand(obs(queued=queued, in_flight=in_flight), b) == expected


def test_scale_from_zero_with_one_queued_job() -> None:
    decision, _ = decide(obs(queued=1, current=0), bounds(jobs_per_worker=50), PolicyState(), 0.0)
    assert decision == Decision(desired=1, reason=Reason.SCALE_UP, demand=1)


def test_scale_up_happens_in_one_call_even_mid_window() -> None:
    b = bounds(delay=300)
    _, state = decide(obs(current=2, queued=2), b, PolicyState(), 0.0)
    decision, _ = decide(obs(queued=9, current=2), b, state, 1.0)
    assert (decision.desired, decision.reason) == (9, Reason.SCALE_UP)


def test_steady_when_demand_matches() -> None:
    decision, _ = decide(obs(queued=4, current=4), bounds(), PolicyState(), 0.0)
    assert (decision.desired, decision.reason) == (4, Reason.STEADY)


def test_scale_down_waits_for_full_delay_then_happens() -> None:
    b = bounds(delay=10)
    ticks = [(0.0, 6)] + [(float(t), 0) for t in range(1, 20)]  # work gone from t=1 on
    result = dict(run(b, ticks, start=6))
    for t in range(1, 11):
        assert (result[t].desired, result[t].reason) == (6, Reason.SCALE_DOWN_DELAYED), t
    assert (result[11].desired, result[11].reason) == (0, Reason.SCALE_DOWN)


def test_partial_scale_down_to_window_max() -> None:
    b = bounds(delay=10)
    ticks = [(0.0, 8), (5.0, 4), (6.0, 1), (12.0, 1), (16.0, 1)]
    result = dict(run(b, ticks, start=8))
    assert result[6.0].desired == 8  # 8 still inside the window
    assert (result[12.0].desired, result[12.0].reason) == (4, Reason.SCALE_DOWN)  # 8 left, 4 remains
    assert result[16.0].desired == 1


def test_fresh_start_does_not_scale_down_before_delay() -> None:
    b = bounds(delay=10)
    result = run(b, [(100.0 + t, 0) for t in range(0, 12)], start=5)
    assert all(d.desired == 5 for now, d in result if now <= 110.0)
    assert result[-1][1].desired == 0


def test_delay_zero_scales_down_at_once() -> None:
    decision, _ = decide(obs(queued=1, current=5), bounds(delay=0), PolicyState(), 0.0)
    assert (decision.desired, decision.reason) == (1, Reason.SCALE_DOWN)


def test_busy_workers_set_the_floor() -> None:
    b = bounds(delay=10)
    _, state = decide(obs(current=5), b, PolicyState(), 0.0)
    decision, _ = decide(obs(busy=3, current=5), b, state, 20.0)
    assert decision == Decision(desired=3, reason=Reason.BUSY_WORKERS, demand=0)


def test_busy_workers_never_scale_up() -> None:
    decision, _ = decide(obs(busy=7, current=2), bounds(delay=0), PolicyState(), 0.0)
    assert decision.desired == 2


def test_busy_floor_beats_maximum() -> None:
    # Ops scaled to 8 by hand above maximum 5; seven are busy, so only one may go.
    decision, _ = decide(obs(busy=7, current=8), bounds(maximum=5, delay=0), PolicyState(), 0.0)
    assert (decision.desired, decision.reason) == (7, Reason.BUSY_WORKERS)


def test_above_maximum_without_busy_workers_returns_to_maximum() -> None:
    decision, _ = decide(obs(queued=100, current=8), bounds(maximum=5), PolicyState(), 0.0)
    assert decision.desired == 5


def test_flapping_queue_scales_up_once_and_down_once() -> None:
    b = bounds(minimum=1, maximum=20, jobs_per_worker=10, delay=10)
    flapping = [(float(t), 100 if t % 2 == 0 else 0) for t in range(60)]
    quiet = [(float(t), 0) for t in range(60, 90)]
    result = run(b, flapping + quiet, start=1)
    replicas = [1] + [d.desired for _, d in result]
    changes = [
        (now, before, after)
        for (now, _), before, after in zip(result, replicas, replicas[1:], strict=False)
        if before != after
    ]
    # last busy second was t=58, first quiet one t=59: scale down exactly one delay later.
    assert changes == [(0.0, 1, 10), (69.0, 10, 1)]


def test_a_falling_demand_is_followed_down_in_steps_a_quarter_delay_apart() -> None:
    # Demand falls by one worker a second, from 40 to 0: one write per worker would be 40 scale-ins.
    ticks = [(float(t), max(0, 40 - t)) for t in range(200)]
    result = run(bounds(maximum=50, delay=60), ticks, start=40)
    replicas = [40] + [d.desired for _, d in result]
    changes = [
        (now, before, after)
        for (now, _), before, after in zip(result, replicas, replicas[1:], strict=False)
        if before != after
    ]
    # Each step goes to the highest demand of the last 60 s, and the next waits 15 s.
    assert changes == [(61.0, 40, 39), (76.0, 39, 24), (91.0, 24, 9), (106.0, 9, 0)]


def test_a_count_above_maximum_comes_down_at_once_even_right_after_a_scale_in() -> None:
    b = bounds(maximum=5, delay=60)
    state = PolicyState(history=((0.0, 5),), scaled_in_at=59.0)
    decision, _ = decide(obs(current=30), b, state, 60.0)  # kubectl scale --replicas=30 just now
    assert decision.desired == 5


def test_time_going_backwards_does_not_scale_down() -> None:
    b = bounds(delay=10)
    _, state = decide(obs(queued=10, current=10), b, PolicyState(), 100.0)
    for now in (40.0, 41.0, 99.0, 110.0):  # clock jumped back, then crawls forward
        decision, state = decide(obs(queued=0, current=10), b, state, now)
        assert decision.desired == 10, now


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"minimum": -1}, ["minimum (-1)", "AUTOSCALE_MIN"]),
        ({"maximum": 0}, ["maximum (0)", "AUTOSCALE_MAX"]),
        (
            {"minimum": 3, "maximum": 2},
            ["maximum (2) is below minimum (3): raise AUTOSCALE_MAX or lower AUTOSCALE_MIN"],
        ),
        ({"jobs_per_worker": 0}, ["jobs_per_worker (0)", "AUTOSCALE_JOBS_PER_WORKER"]),
        ({"delay": -1.0}, ["scale_down_delay (-1.0)", "AUTOSCALE_SCALE_DOWN_DELAY"]),
        ({"delay": math.nan}, ["scale_down_delay (nan)", "AUTOSCALE_SCALE_DOWN_DELAY"]),
        ({"delay": math.inf}, ["scale_down_delay (inf)", "AUTOSCALE_SCALE_DOWN_DELAY"]),
        ({"minimum": True}, ["minimum (True)", "AUTOSCALE_MIN"]),
        ({"jobs_per_worker": True}, ["jobs_per_worker (True)", "AUTOSCALE_JOBS_PER_WORKER"]),
        ({"delay": False}, ["scale_down_delay (False)", "AUTOSCALE_SCALE_DOWN_DELAY"]),
        ({"maximum": 2.5}, ["maximum (2.5)", "AUTOSCALE_MAX"]),
    ],
)
def test_bounds_validation_names_the_setting(kwargs: dict[str, object], words: list[str]) -> None:
    with pytest.raises(ValueError, match=r"^[^\n]+$") as excinfo:
        bounds(**kwargs)  # type: ignore[arg-type]
    message = str(excinfo.value)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(("minimum", "maximum", "delay"), [(0, 1, 0), (0, 1, 0.0), (3, 3, 0), (0, 1, 1e9)], ids=str)
def test_bounds_at_their_edges_are_accepted_and_used(minimum: int, maximum: int, delay: float) -> None:
    b = bounds(minimum=minimum, maximum=maximum, jobs_per_worker=1, delay=delay)
    up, state = decide(obs(queued=100, current=minimum), b, PolicyState(), 0.0)
    assert up.desired == maximum
    down, _ = decide(obs(queued=0, current=maximum), b, state, 1.0)
    # No delay: straight to the minimum; a delay longer than the test: the maximum is kept.
    assert down.desired == (minimum if delay == 0 else maximum)


bounds_st = st.builds(
    lambda lo, span, per, delay: bounds(lo, max(1, lo + span), per, delay),
    st.integers(0, 8),
    st.integers(0, 12),
    st.integers(1, 6),
    st.sampled_from([0, 0.5, 3, 10]),
)
obs_st = st.builds(obs, st.integers(-3, 80), st.integers(-3, 20), st.integers(-3, 25), st.integers(-3, 25))


@settings(max_examples=100, deadline=None)
@given(b=bounds_st, steps=st.lists(st.tuples(obs_st, st.floats(-5, 15)), min_size=1, max_size=25))
@example(b=bounds(0, 10, 1, 0), steps=[(obs(queued=1, current=5), 0.0)])
@example(b=bounds(0, 10, 1, 10), steps=[(obs(queued=1, current=5), 0.0), (obs(current=5), 9.0), (obs(current=5), 2.0)])
@example(b=bounds(0, 10, 1, 3), steps=[(obs(queued=9, current=1), 0.0), (obs(current=9), 2.0), (obs(current=9), -4.0)])
def test_decision_invariants(b: Bounds, steps: list[tuple[Observation, float]]) -> None:
    state, now, clock_went_back = PolicyState(), 1000.0, False
    latest = -math.inf
    seen: list[tuple[float, int]] = []  # (time, demand) of every call, and (with a delay) the replicas at the first
    for o, step in steps:
        clock_went_back |= step < 0
        now += step
        decision, new_state = decide(o, b, state, now)
        assert (decision, new_state) == decide(o, b, state, now)  # deterministic
        current, floor = max(0, o.current), min(max(0, o.busy_workers), max(0, o.current))
        # Workers for the work in sight, a partial batch rounded up, within the bounds.
        wanted = min(max(math.ceil((max(0, o.queued) + max(0, o.in_flight)) / b.jobs_per_worker), b.minimum), b.maximum)
        assert decision.demand == wanted
        if not seen and b.scale_down_delay > 0:  # a fresh start waits a full delay before scaling down
            seen.append((now, current))
        seen.append((now, wanted))
        # Scaling down never goes below a demand seen within the delay (nor below what ran before the first look).
        latest = max(latest, now)
        if b.scale_down_delay > 0:
            # After the clock went back, the window still ends where the latest look pruned it.
            recent = max(value for t, value in seen if t >= latest - b.scale_down_delay)
            assert decision.desired >= min(recent, current, b.maximum)
        assert decision.desired >= floor
        assert decision.desired >= b.minimum
        assert decision.desired <= max(b.maximum, floor)
        if wanted >= current:
            assert decision.desired == wanted
        else:
            assert decision.desired <= current
        assert (decision.reason is Reason.SCALE_UP) == (decision.desired > current)
        if decision.reason in (Reason.STEADY, Reason.SCALE_DOWN_DELAYED):
            assert decision.desired == current
        if decision.reason is Reason.SCALE_DOWN:
            assert decision.desired < current
        state = new_state
