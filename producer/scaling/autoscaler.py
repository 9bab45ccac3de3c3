"""One worker pool's pass: observe its queues and workers in Redis, ask the policy, set its target's replicas.

The pass owns the pool's I/O; the decision itself is ``policy.decide``; a target only knows how to read and set
a replica count (a Kubernetes Deployment, or a local one of the embedded default). Ops come first: a pause
annotation or a replica count someone else set stops its writes (``_ops_in_control``). ``fleet.py`` runs every
pool's pass under one Lease, and retries a failing one with backoff.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis
from rq.serializers import JSONSerializer, Serializer

from producer.scaling import metrics
from producer.scaling.housekeeping import Housekeeper
from producer.scaling.loop import run_loop
from producer.scaling.policy import Bounds, Decision, Observation, PolicyState, decide
from producer.scaling.pools import serves, share
from producer.scaling.rates import RateMeter, Rates, WorkerTally
from producer.scaling.report import LoopState, Report, report_ttl
from task_processor.errors import TaskProcessorError
from task_processor.logs import get_logger
from task_processor.observe import QueueCounts, WorkerInfo, list_workers, oldest_waits, queue_counts
from task_processor.settings import Settings

EVENTS_KEPT = 1000
"""Scaling events kept in memory (for run-local's summary)."""

ACTIVE, HOLDING, PAUSED, FOLLOWER = LoopState.ACTIVE, LoopState.HOLDING, LoopState.PAUSED, LoopState.FOLLOWER
"""FOLLOWER is the fleet's: it leads through the Lease for every pool."""

PAUSE_HINT = 'task-processor.io/autoscale: "paused"'
"""How ops pause the loop (an annotation on the Deployment), as the log line names it."""

log = get_logger("task_processor.autoscaler")


@dataclass(frozen=True)
class TargetState:
    """What a target says about itself: the replicas asked for, and whether ops paused autoscaling."""

    replicas: int
    paused: bool = False


class TargetChanged(TaskProcessorError):
    """A write to the target was refused because the target changed since it was read (a 409 on Kubernetes)."""


def bounds_from(
    settings: Settings,
    minimum: int | None = None,
    maximum: int | None = None,
    scale_down_delay: float | None = None,
) -> Bounds:
    """The policy's bounds from the AUTOSCALE_* settings (``run-local``'s options override three of them)."""
    return Bounds(
        settings.autoscale_min if minimum is None else minimum,
        settings.autoscale_max if maximum is None else maximum,
        settings.jobs_per_worker,
        settings.scale_down_delay if scale_down_delay is None else scale_down_delay,
        target_wait=settings.target_wait,
        start_spares=settings.start_spares,
    )


@dataclass(frozen=True)
class Look:
    """What one pass of the loop sees: the policy's inputs, the target's state, and our queues' workers; per queue,
    the oldest queued job's wait (seconds) and the rates the latency rule reads."""

    observation: Observation
    target: TargetState
    workers: list[WorkerInfo]
    waits: dict[str, float] = field(default_factory=dict)
    rates: Rates = field(default_factory=Rates)


class ScaleTarget(Protocol):
    """What the loop needs from a Deployment: its name, its state read (``fresh`` skips any cache), and its
    replica count set. ``workers`` lets a target choose which workers go first when it scales in. A target that
    can tell raises TargetChanged when it changed since its last read, and then writes nothing."""

    name: str

    def read(self, fresh: bool = False) -> TargetState: ...

    def set_replicas(self, replicas: int, workers: Sequence[WorkerInfo] = ()) -> None: ...


class EventSink(Protocol):
    """Where ops see what the loop did (Kubernetes Events on the Deployment); it must never raise."""

    def record(self, reason: str, message: str, warning: bool = False) -> None: ...


@dataclass(frozen=True)
class ScaleEvent:
    at: float
    previous: int
    desired: int
    reason: str
    queued: int
    in_flight: int


class Autoscaler:
    def __init__(
        self,
        connection: redis.Redis,
        queues: tuple[str, ...],
        target: ScaleTarget,
        bounds: Bounds,
        interval: float = 1.0,
        serializer: Serializer = JSONSerializer,
        max_abandons: int = 3,
        manual_hold: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        pool: str | None = None,
        shares: Mapping[str, tuple[int, int]] | None = None,
        housekeeping: bool = True,
        label: str = "default",
        recorder: EventSink | None = None,
    ) -> None:
        """``pool``: size one worker pool (``pools.py``), whose workers say so in their hash, and count of each
        shared queue only the share ``shares`` gives it; ``housekeeping=False`` when the fleet moves due jobs
        and reaps for every pool at once. ``label``: the pool's name in metrics; ``recorder``: where each write,
        hold, pause and refused write is recorded for ops."""
        self.connection = connection
        self.queues = queues
        self.pool = pool
        self.shares = dict(shares or {})
        self.label = label
        self.recorder = recorder
        self.target = target
        self.bounds = bounds
        self.interval = interval
        self.clock = clock
        self.housekeeper = (
            Housekeeper(connection, queues, serializer, interval, max_abandons, clock) if housekeeping else None
        )
        self.manual_hold = manual_hold
        self.state = PolicyState()
        self.mode = ACTIVE
        self.events: deque[ScaleEvent] = deque(maxlen=EVENTS_KEPT)
        self._last_logged: tuple[int, str] | None = None
        self._expected: int | None = None
        self._hold_until = 0.0
        self._counts: dict[str, QueueCounts] = {}
        self.rates = RateMeter()

    def observe(self, registered: list[WorkerInfo] | None = None) -> Look:
        """One look at the queues, the workers and the target (a few Redis round trips; the target may cache).
        ``registered``: every live worker, when the caller has read them for several pools at once."""
        self._counts = queue_counts(self.connection, self.queues)
        counts = self._counts.values()
        waits = oldest_waits(self.connection, self.queues)  # one round trip for every queue's head
        every = list_workers(self.connection) if registered is None else registered
        if self.pool is None:
            ours = set(self.queues)
            workers = [w for w in every if ours.intersection(w.queues)]
            in_flight = sum(c.started for c in counts)
        else:  # a pool's in-flight jobs are its own workers' (slots'), whichever queue they came from
            workers = [w for w in every if serves(w, self.pool, self.queues)]
            in_flight = sum(1 for w in workers if w.busy)
        target = self.target.read()
        rates = self.rates.update(
            self.clock(),
            {queue: c.total for queue, c in self._counts.items()},
            {w.name: WorkerTally(w.completed, w.working_time) for w in workers},
        )
        split = {queue: self.shares.get(queue, (0, 1)) for queue in self._counts}
        observation = Observation(
            queued=sum(share(c.queued, *split[queue]) for queue, c in self._counts.items()),
            in_flight=in_flight,
            # Replicas with a running job: a worker process (a Pod) counts once, however many of its slots are busy.
            busy_workers=len({(w.hostname, w.pid) for w in workers if w.busy}),
            current=target.replicas,
            oldest_wait=max(waits.values(), default=0.0),
            arrival_rate=sum(rate / split[queue][1] for queue, rate in rates.arrival.items()),
            service_rate=rates.service,
            ready=len({(w.hostname, w.pid) for w in workers}),
        )
        metrics.observed(self.label, self._counts, target.replicas, waits, rates)
        return Look(observation, target, workers, waits, rates)

    def step(self, registered: list[WorkerInfo] | None = None) -> Decision | None:
        """One pass of the loop; writes to the target only when the replica count must change.

        Returns the decision, or None when ops have the replicas (paused, or holding after a manual scale).
        """
        if self.housekeeper is not None:
            self.housekeeper.tick()
        look = self.observe(registered)
        observation, target, workers = look.observation, look.target, look.workers
        now = self.clock()
        if self._ops_in_control(target, now):
            metrics.desired(self.label, observation.current)
            self._report(look, None)
            return None
        decision, self.state = decide(observation, self.bounds, self.state, now)
        self._log_decision(look, decision)
        if decision.desired != observation.current:
            # Look again, uncached, right before writing: never overwrite a pause or a manual scale.
            latest = self.target.read(fresh=True)
            if latest != target:
                self._ops_in_control(latest, now)
                return None
            try:
                self.target.set_replicas(decision.desired, workers)  # conditional on that read
            except TargetChanged:
                # Someone wrote since that read: theirs stands; the next pass reads it and holds or hands over.
                self.record_event(
                    "FailedRescale",
                    f"Not setting {decision.desired} replicas: the Deployment changed since it was read (a kubectl "
                    "scale, or its status); deciding again on the next look",
                    warning=True,
                )
                log.info(
                    "the target changed just before our write (a kubectl scale, or its status); not overwriting it, "
                    "deciding again on the next look",
                    target=self.target.name,
                    desired=decision.desired,
                )
                return None
            self._expected = decision.desired
            self.record_event(
                "SuccessfulRescale",
                f"New size: {decision.desired} (was {observation.current}); reason: {decision.reason}; demand "
                f"{decision.demand}: {observation.queued} queued, {observation.in_flight} in flight, "
                f"{observation.busy_workers} busy workers",
            )
            metrics.scaled(self.label, observation.current, decision.desired, str(decision.reason))
            self.events.append(
                ScaleEvent(
                    time.time(),
                    observation.current,
                    decision.desired,
                    str(decision.reason),
                    observation.queued,
                    observation.in_flight,
                )
            )
        self._report(look, decision)
        return decision

    def _ops_in_control(self, target: TargetState, now: float) -> bool:
        """Ops first: a pause annotation, or a replica count someone else set, stops the loop's writes."""
        previous = self.mode
        if target.paused:
            self.mode = PAUSED
        elif self._expected is not None and target.replicas != self._expected:
            self._hold_until = now + self.manual_hold
            self.mode = HOLDING if self.manual_hold > 0 else ACTIVE
            log.info(
                "replicas changed by someone else (kubectl scale?); leaving them alone",
                target=self.target.name,
                expected=self._expected,
                replicas=target.replicas,
                hold_seconds=self.manual_hold,
            )
            self.record_event(
                "ScalingHeld",
                f"Replicas set to {target.replicas} by someone else (kubectl scale?), not {self._expected}: left "
                f"alone for {self.manual_hold:g} s",
            )
        elif self.mode != PAUSED and now < self._hold_until:
            self.mode = HOLDING
        else:
            self.mode = ACTIVE
        self._expected = target.replicas
        if self.mode != previous:
            self._event_for_mode(previous, target.replicas)
            if self.mode == PAUSED:
                log.info(
                    f"autoscaling paused by the annotation {PAUSE_HINT}; replicas are left to ops until it is removed",
                    target=self.target.name,
                    replicas=target.replicas,
                )
            elif self.mode == ACTIVE:
                log.info("autoscaling resumed", target=self.target.name, replicas=target.replicas, after=previous)
        if self.mode != ACTIVE:
            # When control comes back, start a fresh scale-down window from the replicas ops left.
            self.state = PolicyState()
        return self.mode != ACTIVE

    def record_event(self, reason: str, message: str, warning: bool = False) -> None:
        if self.recorder is not None:
            self.recorder.record(reason, message, warning)

    def _event_for_mode(self, previous: str, replicas: int) -> None:
        if self.mode == PAUSED:
            self.record_event(
                "ScalingPaused", f"Paused by the annotation {PAUSE_HINT}: {replicas} replicas are left to ops"
            )
        elif self.mode == ACTIVE and previous in (PAUSED, HOLDING):
            self.record_event("ScalingResumed", f"Autoscaling resumed at {replicas} replicas (was {previous})")

    def _log_decision(self, look: Look, decision: Decision) -> None:
        """One line per new (desired, reason), before the write: a refused write still shows what was decided.

        With the inputs of both rules: the counts, and per queue the oldest job's wait and the arrival rate, with
        one busy worker's service rate (null until a job has ended) and the target wait (null when off)."""
        metrics.desired(self.label, decision.desired)
        if (decision.desired, str(decision.reason)) == self._last_logged:
            return
        self._last_logged = (decision.desired, str(decision.reason))
        observation, service = look.observation, look.rates.service
        log.info(
            "scaling decision",
            pool=self.label,
            target=self.target.name,
            queued=observation.queued,
            in_flight=observation.in_flight,
            busy=observation.busy_workers,
            current=observation.current,
            desired=decision.desired,
            demand=decision.demand,
            spares=decision.spares,
            reason=str(decision.reason),
            oldest_wait={queue: round(wait, 3) for queue, wait in look.waits.items()},
            arrival_rate={queue: round(rate, 3) for queue, rate in look.rates.arrival.items()},
            service_rate=None if service is None else round(service, 3),
            target_wait=self.bounds.target_wait,
        )

    def _report(self, look: Look, decision: Decision | None) -> None:
        observation = look.observation
        desired = observation.current if decision is None else decision.desired
        reason = self.mode if decision is None else str(decision.reason)
        Report(
            desired=desired,
            current=observation.current,
            reason=reason,
            state=self.mode,
            queued=observation.queued,
            in_flight=observation.in_flight,
            busy=observation.busy_workers,
            updated_at=time.time(),
            oldest_wait=dict(look.waits),
            arrival_rate=dict(look.rates.arrival),
            service_rate=look.rates.service,
            target_wait=self.bounds.target_wait,
            pool=self.label,
            queues=self.queues,
        ).publish(self.connection, self.target.name, ttl=report_ttl(self.interval))

    def run(self, stop: threading.Event) -> None:
        """This one pool's loop until ``stop`` is set (``task-producer autoscale`` and run-local run pools in a
        ``Fleet``, which also leads through the Lease)."""
        run_loop(
            stop,
            self.interval,
            self.step,
            lambda: True,
            lambda: metrics.state(self.label, self.mode),
            self.housekeeper.close if self.housekeeper is not None else lambda: None,
        )
