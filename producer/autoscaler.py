"""The control loop: observe the queues in Redis, ask the policy, set the target's replicas.

The loop owns all I/O and error handling; the decision itself is ``policy.decide``; a target only knows
how to read and set a replica count (a Kubernetes Deployment, or the local one of the embedded default).
Failures are logged once per streak and retried with backoff: the loop never dies of a passing fault.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis
from rq.serializers import JSONSerializer, Serializer

from producer.policy import Bounds, Decision, Observation, PolicyState, decide
from producer.scheduler import DueJobMover
from worker.logs import get_logger
from worker.observe import list_workers, queue_counts

STATUS_KEY = "task-processor:autoscaler:{target}"
"""Redis hash where the loop publishes its last decision, for ``task-producer status`` and dashboards."""

BACKOFF_MAX = 30.0
"""Longest pause, in seconds, between two attempts while Redis or the target keeps failing."""

EVENTS_KEPT = 1000
"""Scaling events kept in memory (for run-local's summary)."""

log = get_logger("task_processor.autoscaler")


class ScaleTarget(Protocol):
    """What the loop needs from a Deployment: its name, and its desired replica count read and set."""

    name: str

    def get_replicas(self) -> int: ...

    def set_replicas(self, replicas: int) -> None: ...


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self.queues = queues
        self.target = target
        self.bounds = bounds
        self.interval = interval
        self.clock = clock
        self.due_jobs = DueJobMover(connection, queues, serializer, interval)
        self.state = PolicyState()
        self.events: deque[ScaleEvent] = deque(maxlen=EVENTS_KEPT)
        self._last_logged: tuple[int, str] | None = None

    def observe(self) -> Observation:
        counts = queue_counts(self.connection, self.queues).values()
        ours = set(self.queues)
        busy = sum(1 for w in list_workers(self.connection) if w.busy and ours.intersection(w.queues))
        return Observation(
            queued=sum(c.queued for c in counts),
            in_flight=sum(c.started for c in counts),
            busy_workers=busy,
            current=self.target.get_replicas(),
        )

    def step(self) -> Decision:
        """One pass of the loop; writes to the target only when the replica count must change."""
        self.due_jobs.tick()
        observation = self.observe()
        decision, self.state = decide(observation, self.bounds, self.state, self.clock())
        if decision.desired != observation.current:
            self.target.set_replicas(decision.desired)
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
        self._report(observation, decision)
        return decision

    def _report(self, observation: Observation, decision: Decision) -> None:
        if (decision.desired, str(decision.reason)) != self._last_logged:
            self._last_logged = (decision.desired, str(decision.reason))
            log.info(
                "scaling decision",
                target=self.target.name,
                queued=observation.queued,
                in_flight=observation.in_flight,
                busy=observation.busy_workers,
                current=observation.current,
                desired=decision.desired,
                demand=decision.demand,
                reason=str(decision.reason),
            )
        key = STATUS_KEY.format(target=self.target.name)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hset(
                key,
                mapping={
                    "desired": decision.desired,
                    "current": observation.current,
                    "reason": str(decision.reason),
                    "queued": observation.queued,
                    "in_flight": observation.in_flight,
                    "busy": observation.busy_workers,
                    "updated_at": time.time(),
                },
            )
            pipe.expire(key, max(60, int(self.interval * 10)))
            pipe.execute()

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set."""
        failures = 0
        while not stop.is_set():
            try:
                self.step()
            # Any fault (Redis down, API error, a bug in a target) is retried: a scaler that exits leaves the
            # workers at whatever size they had, which is worse than a scaler that keeps trying.
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "autoscaler step failed; retrying with backoff",
                        error=(str(exc) or type(exc).__name__).splitlines()[0],
                    )
                pause = min(self.interval * 2**failures, BACKOFF_MAX)
            else:
                if failures:
                    log.info("autoscaler recovered", failed_steps=failures)
                failures = 0
                pause = self.interval
            stop.wait(pause)
        self.due_jobs.close()
