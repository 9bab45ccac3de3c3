"""Leader election over a ``coordination.k8s.io/v1`` Lease, so two producer replicas never both scale.

It follows client-go's rules: a Lease counts as expired only when its record has not changed for a whole
lease duration *as observed by us* (our monotonic clock, not the holder's wall clock, so clock skew between
nodes cannot make two replicas lead), every write carries the ``resourceVersion`` it read (a racing write
answers 409 and loses), and a leader that could not renew within the renew deadline stops scaling before
its Lease can expire for the others.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Callable

from producer.scaling.kube.client import ConflictError, KubeClient, KubeError, Lease
from task_processor.logs import get_logger

LEASE_DURATION = 15
"""Seconds a Lease stays valid without renewal (client-go's default)."""

RENEW_DEADLINE = 10.0
"""Seconds the leader keeps leading without a successful renewal; below LEASE_DURATION on purpose."""

RETRY_PERIOD = 2.0
"""Seconds between two renewals (or acquisition attempts)."""

log = get_logger("task_processor.leader")


class LeaderElector:
    def __init__(
        self,
        kube: KubeClient,
        lease_name: str,
        identity: str,
        duration: int = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        retry_period: float = RETRY_PERIOD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < retry_period < renew_deadline < duration:
            raise ValueError("leader election needs 0 < retry_period < renew_deadline < duration")
        self.kube = kube
        self.lease_name = lease_name
        self.identity = identity
        self.duration = duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self._renewed_at: float | None = None
        self._attempted_at: float | None = None
        self._observed: tuple[str | None, datetime.datetime | None, str | None] | None = None
        self._observed_at = 0.0
        self._failing = False

    @property
    def leading(self) -> bool:
        return self._renewed_at is not None and self.clock() - self._renewed_at < self.renew_deadline

    def tick(self) -> bool:
        """Renew or try to acquire when a retry period has passed; say whether we lead now."""
        now = self.clock()
        if self._attempted_at is None or now - self._attempted_at >= self.retry_period:
            self._attempted_at = now
            try:
                if self._try_acquire_or_renew():
                    self._renewed_at = self.clock()
                self._failing = False
            except KubeError as exc:
                if not self._failing:
                    log.warning("cannot reach the leader Lease; will retry", lease=self.lease_name, error=str(exc))
                self._failing = True
        return self.leading

    def _try_acquire_or_renew(self) -> bool:
        lease = self.kube.get_lease(self.lease_name)
        now = datetime.datetime.now(datetime.UTC)
        if lease is None:
            candidate = Lease(self.lease_name, self.identity, self.duration, now, 0, acquired_at=now)
        else:
            record = (lease.holder, lease.renewed_at, lease.resource_version)
            if record != self._observed:
                self._observed, self._observed_at = record, self.clock()
            mine = lease.holder == self.identity
            expired = not lease.holder or self.clock() - self._observed_at > lease.duration
            if not mine and not expired:
                if self._renewed_at is not None:  # another holds it: stop now, not at our renew deadline
                    log.warning("lost the leader Lease", lease=self.lease_name, holder=lease.holder)
                    self._renewed_at = None
                return False
            # As client-go: a renewal keeps acquireTime and leaseTransitions; a change of holder sets both anew.
            transitions, acquired = (lease.transitions, lease.acquired_at) if mine else (lease.transitions + 1, now)
            candidate = Lease(
                self.lease_name, self.identity, self.duration, now, transitions, lease.resource_version, acquired
            )
        try:
            written = self.kube.write_lease(candidate)
        except ConflictError:
            return False  # another replica wrote first; it leads
        self._observed, self._observed_at = (written.holder, written.renewed_at, written.resource_version), self.clock()
        if not self.leading:
            log.info("acquired the leader Lease", lease=self.lease_name, identity=self.identity)
        return True

    def release(self) -> None:
        """Give the Lease up on shutdown so another replica takes over at once instead of after it expires."""
        if not self.leading:
            return
        self._renewed_at = None
        try:
            lease = self.kube.get_lease(self.lease_name)
            if lease is not None and lease.holder == self.identity:
                self.kube.write_lease(dataclasses.replace(lease, holder=None, duration=1))
                log.info("released the leader Lease", lease=self.lease_name, identity=self.identity)
        except KubeError as exc:
            log.warning("could not release the leader Lease; it expires on its own", error=str(exc))
