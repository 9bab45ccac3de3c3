"""An emulated kubelet and ReplicaSet controller: the emulator's worker Deployment as real ``task-worker`` processes.

The Kubernetes API emulator (tests/kubeapi) runs no controllers, so on its own a Deployment's ``spec.replicas``
changes nothing. ``Kubelet`` closes that gap for end-to-end tests: it converges a ``LocalDeployment`` on the
replicas (the local deployment is its process runner, as designed), mirrors each worker slot as a Pod named and
labelled like a ReplicaSet's, gives the worker that name as POD_NAME (so the autoscaler can match Pods to RQ
workers) and, on scale-in, retires Pods in the ReplicaSet's order (``tests.replicaset.scale_in_order``: unready
first, then lowest ``pod-deletion-cost``, ...). Each Pod carries the status a kubelet would report, kept true on
every pass: bound to one node, phase Running, Ready while its worker process runs (``lastTransitionTime`` when it
last started or stopped), and its container's ``restartCount`` (the worker restarts in the same Pod).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
import redis

from producer.scaling.local.deployment import LocalDeployment, WorkerProcess
from task_processor.logs import get_logger
from task_processor.settings import DEFAULT_DEPLOYMENT, Settings
from tests.kubeapi.server import KubeAPI
from tests.replicaset import scale_in_order

SYNC_INTERVAL = 0.1
"""Seconds between two passes of the kubelet: read the Deployment, converge, mirror the Pods."""

NODE_NAME = "emulated-node"
"""The one node every Pod is bound to (``spec.nodeName``): this machine."""

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The characters Kubernetes uses for generated name suffixes (no vowels, no look-alikes)."""

log = get_logger("tests.kubelet")


def _rfc3339(wall: float) -> str:
    """A wall-clock time as the API writes a ``metav1.Time``: whole seconds, UTC."""
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Container:
    """What the kubelet remembers of a Pod's one container between passes."""

    pid: int
    restarts: int
    ready: bool
    since: str
    """The Ready condition's ``lastTransitionTime``: when the worker last started (ready) or was seen down."""


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
        self._containers: dict[str, _Container] = {}
        self._containers_lock = threading.Lock()  # _observe runs in this thread and under the local's lock
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
        """Create a Pod for each new slot and keep its status true, mark retiring ones as terminating, delete
        those whose worker is gone."""
        pods = {pod["metadata"]["name"]: pod for pod in self.pods()}
        for slot in slots:
            assert slot.pod_name is not None  # every slot is named by _pod_name
            pod = pods.pop(slot.pod_name, None)
            status = self._observe(slot)
            if pod is None:
                self.kube_api.create(self._pod(slot.pod_name, status))
                continue
            if pod.get("status") != status:
                self.kube_api.patch("pods", slot.pod_name, {"status": status})
            if slot.retiring and "deletionTimestamp" not in pod["metadata"]:
                now = _rfc3339(time.time())
                self.kube_api.patch("pods", slot.pod_name, {"metadata": {"deletionTimestamp": now}})
        for name in pods:
            self.kube_api.delete("pods", name)
            with self._containers_lock:  # a slot's Pod goes once its worker has exited for good
                self._containers.pop(name, None)

    def _observe(self, slot: WorkerProcess) -> dict[str, Any]:
        """The slot's Pod status as a kubelet would report it now; a new worker process in the slot is a restart."""
        assert slot.pod_name is not None
        ready = slot.popen.poll() is None and not slot.crashed
        now = time.time()
        started = _rfc3339(now - (time.monotonic() - slot.started_at))  # started_at is on the monotonic clock
        with self._containers_lock:
            seen = self._containers.get(slot.pod_name)
            if seen is None:
                seen = _Container(slot.pid, 0, ready, started if ready else _rfc3339(now))
                self._containers[slot.pod_name] = seen
            restarted = seen.pid != slot.pid
            if restarted:
                seen.pid, seen.restarts = slot.pid, seen.restarts + 1
            if ready and (restarted or not seen.ready):
                seen.since = started
            elif not ready and seen.ready:
                seen.since = _rfc3339(now)
            seen.ready = ready
            pid, restarts, since = seen.pid, seen.restarts, seen.since
        container = (self._template_spec.get("containers") or [{}])[0]
        return {
            "phase": "Running",  # a crashed worker waits for its restart in a Running Pod, as in CrashLoopBackOff
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": since}],
            "containerStatuses": [
                {
                    "name": container.get("name", "worker"),
                    "image": container.get("image", ""),
                    "imageID": "",
                    "containerID": f"emulated://{pid}",
                    "ready": ready,
                    "started": ready,
                    "restartCount": restarts,
                }
            ],
        }

    def _report_status(self, slots: list[WorkerProcess]) -> None:
        """Keep the Deployment's ``status`` roughly true, as the Deployment controller would (terminating Pods
        do not count; a Pod is ready while its worker process runs)."""
        current = [slot for slot in slots if not slot.retiring]
        ready = sum(slot.popen.poll() is None for slot in current)
        status = {"replicas": len(current), "readyReplicas": ready, "availableReplicas": ready}
        if status != self._status:
            self.kube_api.patch("deployments", self.deployment, {"status": status})
            self._status = status

    def _pod(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {**self._labels, "pod-template-hash": self._template_hash}},
            "spec": {**copy.deepcopy(self._template_spec), "nodeName": NODE_NAME},
            "status": status,
        }

    def _pod_name(self) -> str:
        """``<deployment>-<pod-template-hash>-<5 random>``: what a ReplicaSet names its Pods."""
        suffix = "".join(secrets.choice(NAME_ALPHABET) for _ in range(5))
        return f"{self.deployment}-{self._template_hash}-{suffix}"

    def _deletion_order(self, slots: list[WorkerProcess]) -> list[WorkerProcess]:
        """The ReplicaSet's scale-in order (``tests.replicaset.scale_in_order``) of the active slots' Pods.

        Each Pod is the store's (the autoscaler's deletion costs, the creation time) with its status as of now,
        which the store may show one pass late; a slot not mirrored yet ranks as a Pod with no creation time
        (newest). The node rank counts these Pods only: the retiring ones are terminating, so not counted."""
        stored = {pod["metadata"]["name"]: pod for pod in self.pods()}
        by_name: dict[str, WorkerProcess] = {}
        pods: list[dict[str, Any]] = []
        for slot in slots:
            assert slot.pod_name is not None
            by_name[slot.pod_name] = slot
            status = self._observe(slot)
            pods.append({**(stored.get(slot.pod_name) or self._pod(slot.pod_name, status)), "status": status})
        return [by_name[pod["metadata"]["name"]] for pod in scale_in_order(pods)]


@pytest.fixture
def kubelet(kube_api: KubeAPI, conn: redis.Redis, env: dict[str, str], tmp_path: Path) -> Iterator[Kubelet]:
    """The worker Deployment at 0 replicas, and a kubelet running its Pods; every worker is stopped at the end.
    A test module imports it next to ``kube_api`` (from tests.kubeapi.fixtures)."""
    kube_api.create_deployment(DEFAULT_DEPLOYMENT, replicas=0)
    with Kubelet(kube_api, conn, env, DEFAULT_DEPLOYMENT, log_file=tmp_path / "workers.log") as running:
        yield running
