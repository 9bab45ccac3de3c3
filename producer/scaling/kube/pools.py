"""The pools of a namespace: every Deployment labelled ``task-processor.io/pool``, read from its annotations.

A Deployment with a bad annotation is named in one log line (once while it lasts) and left out; with no labelled
Deployment at all, ``WORKER_DEPLOYMENT`` and ``TASK_QUEUES`` describe the one pool, as before pools; an
autoscaler whose Role may not list Deployments says so once and sizes that one.
"""

from __future__ import annotations

from producer.scaling.autoscaler import EventSink, ScaleTarget, bounds_from
from producer.scaling.kube.client import ForbiddenError, KubeClient
from producer.scaling.kube.deployment import KubeDeployment
from producer.scaling.kube.events import KubeEvents
from producer.scaling.pools import POOL_LABEL, Pool, PoolError, pool_from
from task_processor.errors import first_line
from task_processor.logs import get_logger
from task_processor.settings import Settings

FALLBACK = "default"
"""The name of the one pool ``WORKER_DEPLOYMENT`` + ``TASK_QUEUES`` describe when no Deployment is labelled."""

log = get_logger("task_processor.autoscaler")


class KubePools:
    def __init__(self, kube: KubeClient, settings: Settings, identity: str = "") -> None:
        self.kube = kube
        self.settings = settings
        self.identity = identity
        self._said: set[str] = set()

    def pools(self) -> dict[str, Pool]:
        complaints: dict[str, dict[str, str]] = {}  # each logged once while it lasts: message -> its fields
        try:
            found = self.kube.list_deployments(POOL_LABEL)
        except ForbiddenError as exc:
            complaints[
                "pools are off: the autoscaler may not list Deployments; grant it list on deployments.apps (the "
                f"chart's Role does) to size every Deployment labelled {POOL_LABEL}"
            ] = {"error": first_line(exc)}
            found = []
        wanted: dict[str, Pool] = {}
        for info in sorted(found, key=lambda d: d.name):
            try:
                pool = pool_from(info, self.settings)
            except PoolError as exc:
                complaints[f"{exc}; this pool is left alone until it is fixed"] = {"deployment": info.name}
                continue
            other = wanted.get(pool.name)
            if other is not None:
                message = (
                    f"Deployment {info.name} uses the pool name {pool.name!r} of Deployment {other.deployment}: "
                    f"give it a {POOL_LABEL} of its own; it is left alone until then"
                )
                complaints[message] = {"deployment": info.name}
                continue
            wanted[pool.name] = pool
        for message, fields in complaints.items():
            if message not in self._said:
                log.warning(message, **fields)
        self._said = set(complaints)
        if not found:
            s = self.settings
            return {FALLBACK: Pool(FALLBACK, s.deployment, s.queues, bounds_from(s), labelled=False)}
        return wanted

    def target(self, pool: Pool) -> tuple[ScaleTarget, EventSink | None]:
        target = KubeDeployment(self.kube, pool.deployment)
        return target, KubeEvents(self.kube, pool.deployment, lambda: target.uid, self.identity)
