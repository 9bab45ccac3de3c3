"""The scaling decision for the worker Deployment, kept pure so it can be tested without Redis or a cluster.

Scaling up follows demand at once, because queued work waits on every missing worker. Scaling down waits
for a stabilization window (like the Kubernetes HPA's) so that bursty queues do not make pods flap, and it
never goes below the workers that are busy, because removing a pod would kill its running job.

Demand is the count rule (a worker per AUTOSCALE_JOBS_PER_WORKER jobs in sight) and, with a target wait
(AUTOSCALE_TARGET_WAIT), the latency rule above it: enough workers for the measured arrival and service rates
that a job arriving now starts within the target (`latency_rule`). Scale-in goes through the same window, so
it happens only when the target would still hold.

While demanded workers are still starting and jobs wait for them, a few spare Pods (AUTOSCALE_START_SPARES)
start beside them: Pod start times vary (node, image cache, scheduling), the first to come up take the jobs,
and the spares still starting are released as soon as enough workers are up, without the window (they were
never demand).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from task_processor.errors import ConfigError

__all__ = [
    "Bounds",
    "Decision",
    "Observation",
    "PolicyState",
    "Reason",
    "count_rule",
    "decide",
    "demand",
    "follow",
    "latency_rule",
    "with_spares",
]


class Reason(StrEnum):
    """Why a decision came out as it did, so logs and metrics can explain a replica count.

    A StrEnum (a str subclass, as `(str, Enum)` would be) so `str(reason)` logs the bare value.
    """

    SCALE_UP = "scale-up"
    SCALE_DOWN = "scale-down"
    STEADY = "steady"
    SCALE_DOWN_DELAYED = "scale-down-delayed"
    BUSY_WORKERS = "busy-workers"
    SPARES_RELEASED = "spares-released"


def _check_int(name: str, env: str, value: object, least: int) -> None:
    # bool is an int subclass; "AUTOSCALE_MIN=true" silently meaning 1 would hide a configuration mistake.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} ({value!r}) must be a whole number: set {env} to an integer >= {least}")
    if value < least:
        raise ConfigError(f"{name} ({value}) must be >= {least}: set {env} to {least} or more")


@dataclass(frozen=True)
class Bounds:
    """Operator limits, checked up front so a bad setting fails at start-up naming the env var to fix."""

    minimum: int
    maximum: int
    jobs_per_worker: int
    scale_down_delay: float
    target_wait: float | None = None
    """AUTOSCALE_TARGET_WAIT: seconds a job arriving now may wait before it starts; None leaves the count rule alone."""
    start_spares: int = 0
    """AUTOSCALE_START_SPARES: Pods started beyond demand while demanded ones are still starting (0: none)."""

    def __post_init__(self) -> None:
        _check_int("minimum", "AUTOSCALE_MIN", self.minimum, 0)
        _check_int("maximum", "AUTOSCALE_MAX", self.maximum, 1)
        _check_int("jobs_per_worker", "AUTOSCALE_JOBS_PER_WORKER", self.jobs_per_worker, 1)
        _check_int("start_spares", "AUTOSCALE_START_SPARES", self.start_spares, 0)
        if self.maximum < self.minimum:
            raise ConfigError(
                f"maximum ({self.maximum}) is below minimum ({self.minimum}): "
                "raise AUTOSCALE_MAX or lower AUTOSCALE_MIN"
            )
        delay = self.scale_down_delay
        is_number = isinstance(delay, int | float) and not isinstance(delay, bool)
        if not is_number or not math.isfinite(delay) or delay < 0:
            raise ConfigError(
                f"scale_down_delay ({delay!r}) must be a finite number of seconds >= 0: "
                "set AUTOSCALE_SCALE_DOWN_DELAY to 0 or more"
            )
        wait = self.target_wait
        if wait is not None and (
            not isinstance(wait, int | float) or isinstance(wait, bool) or not math.isfinite(wait) or wait <= 0
        ):
            raise ConfigError(
                f"target_wait ({wait!r}) must be a finite number of seconds > 0: "
                "set AUTOSCALE_TARGET_WAIT to a positive number, or leave it unset"
            )


@dataclass(frozen=True)
class Observation:
    """One snapshot of the queue and the Deployment; counts may be stale, so negatives are read as zero."""

    queued: int
    in_flight: int
    busy_workers: int
    current: int
    oldest_wait: float = 0.0
    """Seconds the oldest queued job has waited (0 when nothing is queued)."""
    arrival_rate: float | None = None
    """Jobs per second entering the queues (None until measured)."""
    service_rate: float | None = None
    """Jobs per second one busy worker finishes (None until a job finished)."""
    ready: int | None = None
    """Workers up (registered), starting ones not; None when unknown, which starts no spares."""


@dataclass(frozen=True)
class Decision:
    """The replica count to ask for; `demand` rides along so logs show what the delay and floor changed, and
    `spares` how many of `desired` are spare starts."""

    desired: int
    reason: Reason
    demand: int
    spares: int = 0


@dataclass(frozen=True)
class PolicyState:
    """Recent (time, demand) pairs, the last scale-in and the spares asked for; the caller threads it between
    calls so the policy stays pure."""

    history: tuple[tuple[float, int], ...] = ()
    scaled_in_at: float | None = None
    spares: int = 0


def demand(obs: Observation, bounds: Bounds) -> int:
    """Workers needed: the count rule, and with a target wait the latency rule above it, within the bounds."""
    needed = max(count_rule(obs, bounds), latency_rule(obs, bounds))
    return min(max(needed, bounds.minimum), bounds.maximum)


def count_rule(obs: Observation, bounds: Bounds) -> int:
    """One worker per `jobs_per_worker` jobs in sight; in-flight jobs count because their workers are not free."""
    work = max(0, obs.queued) + max(0, obs.in_flight)
    return -(-work // bounds.jobs_per_worker)  # integer ceil: exact at any size, unlike a float division


KEEP_UP = 0.8
"""Share of the arrival rate the latency rule staffs outright; the queue's own term staffs the rest."""
BACKLOG_SHARE = 0.8
"""Share of the target wait the queued jobs get to drain in; the rest is left to Pods starting."""


def latency_rule(obs: Observation, bounds: Bounds) -> int:
    """Workers so that a job arriving now starts within the target wait W, from the arrival rate λ and one busy
    worker's service rate μ:

        n = ceil( 0.8·λ/μ  +  Q/(μ·0.8·W) · max(1, A/W) )

    The backlog term drains the Q jobs queued ahead of a new one within 0.8·W (BACKLOG_SHARE), leaving the rest
    of the target to Pods that still have to start. The arrival term staffs 0.8 of λ/μ (KEEP_UP) and lets the
    backlog term find the rest: a steady stream then settles where Q/(μ·0.8·W) = 0.2·λ/μ, a standing queue of
    0.16·λ·W jobs (by Little's law a mean wait of 0.16·W, 4.8 s for 30 s), instead of the idle Pods that full
    staffing of a noisy rate keeps. A is the oldest queued job's age: once it exceeds W the rates underestimate
    the need, and the backlog term grows with the miss. Never more workers than jobs in sight (queued + in
    flight): a worker without a job waits no job less, and with nothing in sight the count rule alone takes the
    fleet down to its minimum. 0 while the target is off or μ is unknown (no job finished yet): the count rule
    rules.
    """
    target, service = bounds.target_wait, obs.service_rate
    in_sight = max(0, obs.queued) + max(0, obs.in_flight)
    if target is None or service is None or not math.isfinite(service) or service <= 0 or in_sight == 0:
        return 0
    arrival = obs.arrival_rate if obs.arrival_rate is not None and math.isfinite(obs.arrival_rate) else 0.0
    lateness = max(1.0, max(0.0, obs.oldest_wait) / target)
    backlog = max(0, obs.queued) / (service * BACKLOG_SHARE * target) * lateness
    needed = KEEP_UP * max(0.0, arrival) / service + backlog
    if not math.isfinite(needed):
        return in_sight
    return min(math.ceil(needed - 1e-9), in_sight)  # 2.0000000001 from float noise is still 2 workers


def decide(obs: Observation, bounds: Bounds, state: PolicyState, now: float) -> tuple[Decision, PolicyState]:
    """Pick the replica count for `now` and return the state to pass to the next call: the count demand and the
    window give (`follow`, on the replicas without the spares asked for last), and the spares on top."""
    held = min(state.spares, max(0, obs.current))
    decision, next_state = follow(replace(obs, current=max(0, obs.current) - held), bounds, state, now)
    kept = with_spares(decision, obs, bounds, held)
    return kept, replace(next_state, spares=kept.spares)


def with_spares(decision: Decision, obs: Observation, bounds: Bounds, held: int = 0) -> Decision:
    """`decision` (on the replicas without the `held` spares asked for before) plus the spares to ask for now.

    On a scale-up while jobs are queued and no worker is up (a cold start), add up to `start_spares` Pods; keep
    them while that lasts; once a worker is up (or nothing waits) they go at once, never below the busy workers.
    A worker that comes and goes (a crash loop) adds none: spares come only with a scale-up. With Pod start
    times varying, a job arriving at zero workers then waits for the fastest of 1 + s starts, not for one.
    """
    base = decision.desired
    current = max(0, obs.current)
    spares = 0
    cold = obs.ready == 0 and obs.queued > 0 and base > 0
    if cold and (held > 0 or base > current - held):  # asked for on a scale-up, kept while it lasts
        spares = max(0, min(bounds.start_spares, bounds.maximum - base))
    desired = base + spares
    if desired < current:
        desired = max(desired, min(max(0, obs.busy_workers), current))  # a spare that took a job keeps it
    reason = decision.reason
    if desired > current:
        reason = Reason.SCALE_UP
    elif desired < current and base >= current - held:
        reason = Reason.SPARES_RELEASED
    elif desired == current and reason is Reason.SCALE_UP:
        reason = Reason.STEADY  # the spares became demand
    return Decision(desired=desired, reason=reason, demand=decision.demand, spares=desired - base)


def follow(obs: Observation, bounds: Bounds, state: PolicyState, now: float) -> tuple[Decision, PolicyState]:
    """Pick the replica count for `now` from demand and the scale-down window, spares aside.

    Precedence, strongest last:
      1. demand >= current: follow demand at once (it is already within [minimum, maximum]).
      2. otherwise: the highest demand seen in the last `scale_down_delay` seconds, capped at current,
         then clamped to [minimum, maximum] (a hand-made count above maximum is brought back without delay).
      3. never below min(busy_workers, current): busy workers beat maximum, because scaling below them would
         kill running jobs, but they never raise desired above current, because busy counts may be stale.
      4. a scale-in comes at most once per quarter of `scale_down_delay` (a count above maximum excepted): as
         demand falls the window's maximum falls with it one worker at a time, and a write per worker would
         only churn the Deployment.

    The first call (empty history) seeds the window with `current`, so a freshly started autoscaler waits a
    full delay before scaling down instead of trusting a single sample. Entries stamped later than `now`
    (the clock went backwards) stay in the window, which errs towards keeping workers.
    """
    wanted = demand(obs, bounds)
    current = max(0, obs.current)
    delay = bounds.scale_down_delay
    history = state.history
    if not history and delay > 0:
        history = ((now, current),)
    window = (*(entry for entry in history if entry[0] >= now - delay), (now, wanted))
    last_in = state.scaled_in_at
    next_state = PolicyState(history=window, scaled_in_at=last_in)

    if wanted >= current:
        reason = Reason.SCALE_UP if wanted > current else Reason.STEADY
        return Decision(desired=wanted, reason=reason, demand=wanted), next_state

    held = min(max(value for _, value in window), current)
    held = min(max(held, bounds.minimum), bounds.maximum)
    floor = min(max(0, obs.busy_workers), current)
    desired, reason = (floor, Reason.BUSY_WORKERS) if floor > held else (held, Reason.SCALE_DOWN)
    if desired >= current:
        return Decision(desired=current, reason=Reason.SCALE_DOWN_DELAYED, demand=wanted), next_state
    if last_in is not None and now - delay / 4 < last_in <= now and current <= bounds.maximum:
        return Decision(desired=current, reason=Reason.SCALE_DOWN_DELAYED, demand=wanted), next_state
    return Decision(desired=desired, reason=reason, demand=wanted), PolicyState(history=window, scaled_in_at=now)
