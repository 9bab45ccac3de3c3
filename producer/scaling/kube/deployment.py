"""A worker Deployment as the autoscaler's scale target: read through a short cache, written through ``scale``."""

from __future__ import annotations

import time
from collections.abc import Sequence

from producer.scaling.autoscaler import TargetChanged, TargetState
from producer.scaling.kube.client import ConflictError, DeploymentInfo, KubeClient
from task_processor.observe import WorkerInfo

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
"""The ReplicaSet removes Pods with the lowest cost first when it scales in."""

IDLE_COST, BUSY_COST = "-1000", "1000"
"""Deletion costs the autoscaler gives idle and busy worker Pods just before it lowers the replicas."""


class KubeDeployment:
    """The worker Deployment as a scale target: read through a short cache, written through ``scale``."""

    def __init__(self, kube: KubeClient, name: str, resync: float = 2.0) -> None:
        self.kube = kube
        self.name = name
        self.resync = resync
        self._cached: DeploymentInfo | None = None
        self.uid: str | None = None
        """The Deployment's uid as last read: Events name the object by it (``kubectl describe`` finds them so)."""
        self._read_at = 0.0

    def read(self, fresh: bool = False) -> TargetState:
        """The Deployment's replicas and pause annotation, at most ``resync`` seconds old unless ``fresh``."""
        if fresh or self._cached is None or time.monotonic() - self._read_at >= self.resync:
            self._cached = self.kube.get_deployment(self.name)
            self.uid = self._cached.uid
            self._read_at = time.monotonic()
        return TargetState(self._cached.replicas, self._cached.paused)

    def set_replicas(self, replicas: int, workers: Sequence[WorkerInfo] = ()) -> None:
        """Write ``replicas`` on the condition that the Deployment is still as last read; TargetChanged if not."""
        read = self._cached
        if read is not None and replicas < read.replicas:
            self._mark_pods(read.selector, workers)
        try:
            self.kube.scale(self.name, replicas, read.resource_version if read is not None else None)
        except ConflictError as exc:
            raise TargetChanged(str(exc)) from exc
        finally:
            self._cached = None

    def _mark_pods(self, selector: str, workers: Sequence[WorkerInfo]) -> None:
        """Make the ReplicaSet remove idle Pods first: workers record their Pod name as their hostname."""
        if not selector:
            return  # an empty selector would select every Pod in the namespace
        busy = {w.hostname for w in workers if w.busy}
        for pod in self.kube.list_pods(selector):
            if pod.deleting:
                continue
            cost = BUSY_COST if pod.name in busy else IDLE_COST
            if pod.annotations.get(DELETION_COST) != cost:
                self.kube.annotate_pod(pod.name, {DELETION_COST: cost})
