"""An emulated kubelet and ReplicaSet controller: the emulator's worker Deployment as real ``task-worker`` processes.

The Kubernetes API emulator (tests/kubeapi) runs no controllers, so on its own a Deployment's ``spec.replicas``
changes nothing. ``Kubelet`` closes that gap for end-to-end tests: it converges a ``LocalDeployment`` on the
replicas (the local deployment is its process runner, as designed), mirrors each worker slot as a Pod named and
labelled like a ReplicaSet's, gives the worker that name as POD_NAME (so the autoscaler can match Pods to RQ
workers) and, on scale-in, retires Pods in the ReplicaSet's order: lowest ``pod-deletion-cost`` first.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from producer.scaling.kube import DELETION_COST
from producer.scaling.local import LocalDeployment, WorkerProcess
from task_processor.logs import get_logger
from task_processor.settings import DEFAULT_DEPLOYMENT, Settings
from tests.kubeapi.server import KubeAPI

SYNC_INTERVAL = 0.1
"""Seconds between two passes of the kubelet: read the Deployment, converge, mirror the Pods."""

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The characters Kubernetes uses for generated name suffixes (no vowels, no look-alikes)."""

log = get_logger("tests.kubelet")


class Kubelet:
    """Runs the Pods of one emulated Deployment as local worker processes until closed.

    A worker that dies on its own is restarted in its Pod (same name); a retired Pod is marked with a
    ``deletionTimestamp`` while its worker finishes its job (SIGTERM) and deleted once the process has exited.
    Closing stops every worker (letting running jobs finish) and leaves the Pod objects behind, as a stopped
    node would.
    """

    def __init__(
        self,
        kube_api: KubeAPI,
        connection: redis.Redis,
        env: Mapping[str, str],
        deployment: str = DEFAULT_DEPLOYMENT,
        log_file: Path | None = None,
    ) -> None:
        self.kube_api = kube_api
        self.deployment = deployment
        self.local = LocalDeployment(
            connection,
            env,
            Settings.from_env(env).queues,
            log_file=log_file,
            name=f"{deployment}-kubelet",
            pod_names=self._pod_name,
            retirement_order=self._deletion_order,
        )
        self._template_hash = ""
        self._labels: dict[str, str] = {}
        self._template_spec: dict[str, Any] = {}
        self._status: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self.local.start()
        self._thread = threading.Thread(target=self._run, name=f"{self.deployment}-kubelet", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.local.close(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def selector(self) -> str:
        """The Deployment's ``matchLabels`` as a label selector: which Pods are this kubelet's."""
        return ",".join(f"{key}={value}" for key, value in sorted(self._labels.items()))

    def pods(self) -> list[dict[str, Any]]:
        """The Deployment's Pods in the emulator's store, terminating ones included."""
        return self.kube_api.list("pods", label_selector=self.selector) if self._labels else []

    def _run(self) -> None:
        while not self._stop.wait(SYNC_INTERVAL):
            # Like a kubelet, keep going through a bad pass: the next one starts from the store again.
            try:
                self._sync()
            except Exception as exc:
                log.warning("kubelet pass failed; retrying", error=repr(exc))

    def _sync(self) -> None:
        deployment = self.kube_api.get("deployments", self.deployment)
        if deployment is None:  # deleted: its Pods go too
            self.local.set_replicas(0)
        else:
            spec = deployment["spec"]
            self._labels = dict(spec["selector"]["matchLabels"])
            self._template_spec = spec["template"]["spec"]
            self._template_hash = hashlib.sha256(json.dumps(spec["template"], sort_keys=True).encode()).hexdigest()[:10]
            self.local.set_replicas(int(spec.get("replicas", 1)))
        self._mirror_pods(self.local.workers())
        if deployment is not None:
            self._report_status(self.local.workers())

    def _mirror_pods(self, slots: list[WorkerProcess]) -> None:
        """Create a Pod for each new slot, mark retiring ones as terminating, delete those whose worker is gone."""
        pods = {pod["metadata"]["name"]: pod for pod in self.pods()}
        for slot in slots:
            assert slot.pod_name is not None  # every slot is named by _pod_name
            pod = pods.pop(slot.pod_name, None)
            if pod is None:
                self.kube_api.create(self._pod(slot.pod_name))
            elif slot.retiring and "deletionTimestamp" not in pod["metadata"]:
                now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                self.kube_api.patch("pods", slot.pod_name, {"metadata": {"deletionTimestamp": now}})
        for name in pods:
            self.kube_api.delete("pods", name)

    def _report_status(self, slots: list[WorkerProcess]) -> None:
        """Keep the Deployment's ``status`` roughly true, as the Deployment controller would (terminating Pods
        do not count; a Pod is ready while its worker process runs)."""
        current = [slot for slot in slots if not slot.retiring]
        ready = sum(slot.popen.poll() is None for slot in current)
        status = {"replicas": len(current), "readyReplicas": ready, "availableReplicas": ready}
        if status != self._status:
            self.kube_api.patch("deployments", self.deployment, {"status": status})
            self._status = status

    def _pod(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {**self._labels, "pod-template-hash": self._template_hash}},
            "spec": copy.deepcopy(self._template_spec),
            "status": {"phase": "Running"},
        }

    def _pod_name(self) -> str:
        """``<deployment>-<pod-template-hash>-<5 random>``: what a ReplicaSet names its Pods."""
        suffix = "".join(secrets.choice(NAME_ALPHABET) for _ in range(5))
        return f"{self.deployment}-{self._template_hash}-{suffix}"

    def _deletion_order(self, slots: list[WorkerProcess]) -> list[WorkerProcess]:
        """The ReplicaSet's scale-in order: lowest pod-deletion-cost first (none counts as 0), then newest first."""
        costs = {
            pod["metadata"]["name"]: int(pod["metadata"].get("annotations", {}).get(DELETION_COST, 0))
            for pod in self.pods()
        }
        return sorted(slots, key=lambda slot: (costs.get(slot.pod_name or "", 0), -slot.started_at))
