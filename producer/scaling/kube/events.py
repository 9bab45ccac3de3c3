"""Kubernetes Events on a pool's Deployment: what the autoscaler did, where ops already look.

Each scaling write, hold, pause, resume and refused write becomes an Event on the Deployment (as the HPA's
``SuccessfulRescale``), so ``kubectl describe deployment`` and ``kubectl get events`` show it. A token bucket per
Deployment keeps a busy pool from flooding the API: past the burst, one Event per ``refill`` seconds, and the
next one says how many were skipped. An Event that cannot be written is logged once and never stops scaling.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

from producer.scaling.kube.client import REQUEST_TIMEOUT, KubeClient, KubeError
from task_processor.errors import first_line
from task_processor.logs import get_logger

COMPONENT = "task-processor-autoscaler"
"""The Event's source: what ``kubectl get events`` shows in its FROM column."""

BURST, REFILL = 10, 30.0
"""Events a Deployment may get at once, and the seconds after which one more is allowed."""

log = get_logger("task_processor.autoscaler")


class KubeEvents:
    def __init__(
        self,
        kube: KubeClient,
        deployment: str,
        uid: Callable[[], str | None],
        instance: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.deployment = deployment
        self.uid = uid
        self.instance = instance
        self.clock = clock
        self.tokens = float(BURST)
        self.skipped = 0
        self._filled_at = clock()
        self._failing: str | None = None

    def record(self, reason: str, message: str, warning: bool = False) -> None:
        """Write one Event on the Deployment, unless the bucket is empty (then it is counted as skipped)."""
        now = self.clock()
        self.tokens = min(BURST, self.tokens + (now - self._filled_at) / REFILL)
        self._filled_at = now
        if self.tokens < 1:
            self.skipped += 1
            return
        self.tokens -= 1
        if self.skipped:
            message = f"{message} ({self.skipped} earlier events skipped: at most one per {REFILL:g} s)"
        try:
            self._create(reason, message, warning)
        except KubeError as exc:
            error = first_line(exc)
            if error != self._failing:
                log.warning("could not record a Kubernetes Event; scaling goes on", target=self.deployment, error=error)
                self._failing = error
            return
        self.skipped, self._failing = 0, None

    def _create(self, reason: str, message: str, warning: bool) -> None:
        moment = datetime.datetime.now(datetime.UTC)
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = self.kube.namespace
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            # As client-go's recorder names them: the object's name and the time in nanoseconds, in hex.
            "metadata": {"name": f"{self.deployment}.{time.time_ns():x}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": self.deployment,
                "namespace": namespace,
                "uid": self.uid(),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self.kube.call(
            "create",
            f"events in {namespace}",
            # The client sends a dict body as it is: no model to build, and this module need not import it.
            lambda: self.kube.core.create_namespaced_event(namespace, body, _request_timeout=REQUEST_TIMEOUT),  # type: ignore[arg-type]
        )
