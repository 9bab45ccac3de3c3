"""Arrival and service rates from counters RQ already keeps, smoothed over time (the latency rule's inputs).

Arrivals: every job a queue's registries hold (queued, started, finished, failed, scheduled, deferred) only grows
as jobs arrive; its increase between two looks is the arrivals of that interval. Registry clean-ups make it
shrink: a drop counts as no arrivals, never as negative ones.

Service: each RQ worker hash counts the jobs it ended (``successful_job_count`` + ``failed_job_count``) and the
seconds it spent on them (``total_working_time``, added when a job ends). Over the workers seen in both looks,
jobs ended per second worked is one busy worker's service rate, 1 / the mean job duration. A worker that is
new, gone or restarted under its name (counters lower than before) adds nothing to that interval.

Both are exponentially weighted moving averages with a half-life in seconds, whatever the interval between
looks. The service rate is the ratio of two such averages (jobs ended per second, seconds worked per second),
not an average of per-interval ratios: most short intervals see only short jobs end, and averaging their
ratios would overstate the rate of a fleet whose jobs are mostly long.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["RateMeter", "Rates", "WorkerTally"]

HALF_LIFE = 30.0
"""Seconds after which an observation weighs half as much as a fresh one."""


@dataclass(frozen=True)
class WorkerTally:
    """What one worker's RQ hash says it has done so far."""

    completed: int
    """successful_job_count + failed_job_count"""
    working_time: float
    """total_working_time: seconds spent on the jobs it completed"""


@dataclass(frozen=True)
class Rates:
    arrival: dict[str, float] = field(default_factory=dict)
    """Jobs per second entering each queue (0 for a queue seen once)."""
    service: float | None = None
    """Jobs per second one busy worker finishes; None until a job has ended on a worker seen twice."""

    @property
    def total_arrival(self) -> float:
        return sum(self.arrival.values())


class RateMeter:
    """Turns successive snapshots of RQ's counters into smoothed rates; one per autoscaler loop."""

    def __init__(self, half_life: float = HALF_LIFE) -> None:
        if not math.isfinite(half_life) or half_life <= 0:
            raise ValueError(f"half_life ({half_life!r}) must be a positive number of seconds")
        self.half_life = half_life
        self._at: float | None = None
        self._totals: dict[str, int] = {}
        self._tallies: dict[str, WorkerTally] = {}
        self._arrival: dict[str, float] = {}
        self._ended: float | None = None  # jobs ended per second (smoothed)
        self._worked: float = 0.0  # seconds worked per second (smoothed)

    def update(self, now: float, queue_totals: Mapping[str, int], workers: Mapping[str, WorkerTally]) -> Rates:
        """Take one look's counters at ``now`` (a monotonic clock); return the rates so far."""
        elapsed = None if self._at is None else now - self._at
        if elapsed is not None and elapsed > 0:
            weight = 1.0 - 0.5 ** (elapsed / self.half_life)
            for queue, total in queue_totals.items():
                if queue in self._totals:
                    rate = max(0, total - self._totals[queue]) / elapsed
                    previous = self._arrival.get(queue, rate)
                    self._arrival[queue] = previous + weight * (rate - previous)
            self._update_service(workers, weight, elapsed)
        if elapsed is None or elapsed > 0:  # a clock that stood still or went back: keep the old snapshot
            self._at = now
            self._totals = dict(queue_totals)
            self._tallies = dict(workers)
        arrival = {queue: self._arrival.get(queue, 0.0) for queue in queue_totals}
        return Rates(arrival=arrival, service=self.service)

    @property
    def service(self) -> float | None:
        if self._ended is None or self._ended <= 0:
            return None
        # Jobs shorter than the timer's resolution: a floor of 1 ms a job keeps the rate finite.
        return self._ended / max(self._worked, self._ended * 0.001)

    def _update_service(self, workers: Mapping[str, WorkerTally], weight: float, elapsed: float) -> None:
        ended, worked = 0, 0.0
        for name, tally in workers.items():
            before = self._tallies.get(name)
            if before is None or tally.completed < before.completed or tally.working_time < before.working_time:
                continue
            ended += tally.completed - before.completed
            worked += tally.working_time - before.working_time
        if self._ended is None:
            if ended <= 0:
                return  # nothing known yet: the first jobs to end start the averages
            self._ended, self._worked = ended / elapsed, worked / elapsed
            return
        self._ended += weight * (ended / elapsed - self._ended)
        self._worked += weight * (worked / elapsed - self._worked)
