"""Every worker pool sized by one loop, under one Lease.

Each pass (while this replica leads): every few seconds, ask the pool source for the pools (the labelled
Deployments of the namespace, ``kube/pools.py``; or run-local's, ``local/pools.py``); move due jobs and reap dead
workers' jobs once, for every pool's queues; then run each pool's own ``Autoscaler`` pass: its policy state, its
hold after a ``kubectl scale``, its pause annotation. A pool whose pass fails (its Deployment deleted, a refused
write) is logged and backed off alone, and the others go on. A pool that changed gets a fresh loop (a fresh
scale-down window); one that is gone is left alone from then on. First of all, the periodic tasks (TASK_CRON) that
came due are enqueued (``cron.py``): by the leader only, once per pass, whatever the pools or the Kubernetes API do.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from producer.scaling import metrics
from producer.scaling.autoscaler import (
    ACTIVE,
    FOLLOWER,
    Autoscaler,
    EventSink,
    ScaleTarget,
)
from producer.scaling.cron import Cron
from producer.scaling.housekeeping import Housekeeper
from producer.scaling.loop import FailureStreak, run_loop
from producer.scaling.pools import Pool, shares
from task_processor.logs import get_logger
from task_processor.observe import list_workers
from task_processor.settings import Settings

DISCOVER_EVERY = 5.0
"""Seconds between two lists of the pool Deployments: a pool added or changed is picked up within this."""

log = get_logger("task_processor.autoscaler")


class Elector(Protocol):
    """Leader election: only the leader scales; ``tick`` renews or tries to acquire leadership."""

    def tick(self) -> bool: ...

    def release(self) -> None: ...


class PoolSource(Protocol):
    """Where the pools come from: the labelled Deployments of a namespace, or run-local's own."""

    def pools(self) -> dict[str, Pool]:
        """The pools by name, as they are now (a fault raises: the loop keeps the pools it has and retries)."""
        ...

    def target(self, pool: Pool) -> tuple[ScaleTarget, EventSink | None]:
        """What a pool's loop sizes, and where it records what it did."""
        ...


class Fleet:
    def __init__(
        self,
        connection: redis.Redis,
        source: PoolSource,
        settings: Settings,
        elector: Elector | None = None,
        discover_every: float = DISCOVER_EVERY,
        clock: Callable[[], float] = time.monotonic,
        cron: Cron | None = None,
    ) -> None:
        self.connection = connection
        self.cron = cron
        """The periodic tasks this fleet's leader enqueues (TASK_CRON), on the fleet's Redis connection."""
        self.source = source
        self.settings = settings
        self.elector = elector
        self.discover_every = discover_every
        self.clock = clock
        self.interval = settings.autoscale_interval
        self.pools: dict[str, Autoscaler] = {}
        """Each pool's loop, by pool name."""
        self.specs: dict[str, Pool] = {}
        self._leader_mode = ACTIVE
        self._discovered_at = -math.inf
        self._streaks: dict[str, FailureStreak] = {}
        self._retry_at: dict[str, float] = {}
        self._housekeeper: Housekeeper | None = None

    @property
    def mode(self) -> str:
        """``follower`` while another replica leads; else the one pool's state (active, holding, paused), or
        ``active`` with several pools (each pool reports its own)."""
        if self._leader_mode == FOLLOWER or len(self.pools) != 1:
            return self._leader_mode
        return next(iter(self.pools.values())).mode

    def step(self) -> None:
        if self.cron is not None:
            self.cron.tick()  # before the pools look at their queues, so a run just enqueued scales them up now
        if self.clock() - self._discovered_at >= self.discover_every:
            self.discover()
        self._housekeep()
        registered = list_workers(self.connection)  # read once for every pool of this pass
        now = self.clock()
        for name, autoscaler in list(self.pools.items()):
            if now < self._retry_at.get(name, now):
                continue  # backing off after a failure of this pool alone
            streak = self._streaks.setdefault(name, FailureStreak(self.interval, target=autoscaler.target.name))
            try:
                autoscaler.step(registered)
            except Exception as exc:  # one pool's fault must not stop the others
                cause = streak.last_error
                self._retry_at[name] = now + streak.failed(exc)
                if streak.last_error != cause:  # a new cause: ops see it on the Deployment too
                    autoscaler.record_event(
                        "FailedScaling", f"Autoscaler pass failed: {streak.last_error}", warning=True
                    )
            else:
                streak.succeeded()
                self._retry_at.pop(name, None)

    def discover(self) -> None:
        """Ask the source for the pools and start, change or drop each pool's loop to match."""
        wanted = self.source.pools()
        self._discovered_at = self.clock()
        self._apply(wanted)

    def _apply(self, wanted: dict[str, Pool]) -> None:
        split = shares(wanted.values())
        for name in [n for n in self.pools if n not in wanted]:
            log.info(
                "pool dropped: its Deployment is left alone from now on", pool=name, target=self.specs[name].deployment
            )
            metrics.forget(name)
            del self.pools[name], self.specs[name]
            self._streaks.pop(name, None)
            self._retry_at.pop(name, None)
        for name, pool in wanted.items():
            if self.specs.get(name) != pool:
                self.pools[name] = self._autoscaler(pool)
                self._streaks.pop(name, None)
                log.info(
                    "pool changed" if name in self.specs else "pool found",
                    pool=name,
                    target=pool.deployment,
                    queues=list(pool.queues),
                    min=pool.bounds.minimum,
                    max=pool.bounds.maximum,
                    jobs_per_worker=pool.bounds.jobs_per_worker,
                    scale_down_delay=pool.bounds.scale_down_delay,
                    target_wait=pool.bounds.target_wait,
                )
                self.specs[name] = pool
            self.pools[name].shares = split.get(name, {})

    def _autoscaler(self, pool: Pool) -> Autoscaler:
        s = self.settings
        target, recorder = self.source.target(pool)
        return Autoscaler(
            self.connection,
            pool.queues,
            target,
            pool.bounds,
            interval=self.interval,
            serializer=s.serializer,
            max_abandons=s.max_abandons,
            manual_hold=s.manual_hold,
            clock=self.clock,
            pool=pool.name if pool.labelled else None,
            housekeeping=False,
            label=pool.name,
            recorder=recorder,
        )

    def _housekeep(self) -> None:
        """Due jobs and dead workers' jobs, once for all pools' queues, before any pool looks at its queues."""
        queues = tuple(sorted({q for pool in self.specs.values() for q in pool.queues}))
        if self._housekeeper is None or queues != self._housekeeper.queues:
            if self._housekeeper is not None:
                self._housekeeper.close()
            s = self.settings
            self._housekeeper = (
                Housekeeper(self.connection, queues, s.serializer, self.interval, s.max_abandons, self.clock)
                if queues
                else None
            )
        if self._housekeeper is not None:
            self._housekeeper.tick()

    def run(self, stop: threading.Event) -> None:
        """Loop until ``stop`` is set; with an elector, only while this replica leads."""
        run_loop(stop, self.interval, self.step, self._leading, self._report_state, self._close)

    def _report_state(self) -> None:
        for name, autoscaler in self.pools.items():
            metrics.state(name, FOLLOWER if self._leader_mode == FOLLOWER else autoscaler.mode)

    def _close(self) -> None:
        if self._housekeeper is not None:
            self._housekeeper.close()
        if self.elector is not None:
            self.elector.release()

    def _leading(self) -> bool:
        if self.elector is None:
            return True
        if self.elector.tick():
            if self._leader_mode == FOLLOWER:
                log.info("leading: this replica now scales the workers")
                # Fresh loops: what another leader did meanwhile is read anew, not taken for a manual scale.
                self._leader_mode, self.pools, self.specs, self._discovered_at = ACTIVE, {}, {}, -math.inf
            return True
        if self._leader_mode != FOLLOWER:
            log.info("standing by: another replica holds the Lease")
            self._leader_mode = FOLLOWER
            if self._housekeeper is not None:
                self._housekeeper.close()
        return False
