"""The scaling decision for the worker Deployment, kept pure so it can be tested without Redis or a cluster.

Scaling up follows demand at once, because queued work waits on every missing worker. Scaling down waits
for a stabilization window (like the Kubernetes HPA's) so that bursty queues do not make pods flap, and it
never goes below the workers that are busy, because removing a pod would kill its running job.

Demand is the count rule (a worker per AUTOSCALE_JOBS_PER_WORKER jobs in sight) and, with a target wait
(AUTOSCALE_TARGET_WAIT), the latency rule above it: enough workers for the measured arrival and service rates
that a job arriving now starts within the target (`latency_rule`). Scale-in goes through the same window, so
it happens only when the target would still hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
    "latency_rule",
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

    def __post_init__(self) -> None:
        _check_int("minimum", "AUTOSCALE_MIN", self.minimum, 0)
        _check_int("maximum", "AUTOSCALE_MAX", self.maximum, 1)
        _check_int("jobs_per_worker", "AUTOSCALE_JOBS_PER_WORKER", self.jobs_per_worker, 1)
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


@dataclass(frozen=True)
class Decision:
    """The replica count to ask for; `demand` rides along so logs show what the delay and floor changed."""

    desired: int
    reason: Reason
    demand: int


@dataclass(frozen=True)
class PolicyState:
    """Recent (time, demand) pairs and the last scale-in; the caller threads it between calls so the policy stays
    pure."""

    history: tuple[tuple[float, int], ...] = ()
    scaled_in_at: float | None = None


def demand(obs: Observation, bounds: Bounds) -> int:
    """Workers needed: the count rule, and with a target wait the latency rule above it, within the bounds."""
    needed = max(count_rule(obs, bounds), latency_rule(obs, bounds))
    return min(max(needed, bounds.minimum), bounds.maximum)


def count_rule(obs: Observation, bounds: Bounds) -> int:
    """One worker per `jobs_per_worker` jobs in sight; in-flight jobs count because their workers are not free."""
    work = max(0, obs.queued) + max(0, obs.in_flight)
    return -(-work // bounds.jobs_per_worker)  # integer ceil: exact at any size, unlike a float division


def latency_rule(obs: Observation, bounds: Bounds) -> int:
    """Workers so that a job arriving now starts within the target wait W, from the arrival rate λ and one busy
    worker's service rate μ:

        n = ceil( λ/μ  +  Q/(μ·W) · max(1, A/W) )

    λ/μ workers keep up with the arrivals; Q/(μ·W) more drain the Q jobs queued ahead of a new one within W.
    A is the oldest queued job's age: once it exceeds W the rates underestimate the need, and the backlog term
    grows with the miss. Never more workers than jobs in sight (queued + in flight): a worker without a job
    waits no job less, and with nothing in sight the count rule alone takes the fleet down to its minimum.
    0 while the target is off or μ is unknown (no job finished yet): the count rule rules.
    """
    target, service = bounds.target_wait, obs.service_rate
    in_sight = max(0, obs.queued) + max(0, obs.in_flight)
    if target is None or service is None or not math.isfinite(service) or service <= 0 or in_sight == 0:
        return 0
    arrival = obs.arrival_rate if obs.arrival_rate is not None and math.isfinite(obs.arrival_rate) else 0.0
    lateness = max(1.0, max(0.0, obs.oldest_wait) / target)
    needed = max(0.0, arrival) / service + max(0, obs.queued) / (service * target) * lateness
    if not math.isfinite(needed):
        return in_sight
    return min(math.ceil(needed - 1e-9), in_sight)  # 2.0000000001 from float noise is still 2 workers


def decide(obs: Observation, bounds: Bounds, state: PolicyState, now: float) -> tuple[Decision, PolicyState]:
    """Pick the replica count for `now` and return the state to pass to the next call.

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
