"""LocalDeployment: the embedded default's "Deployment", a set of ``task-worker`` processes on this machine.

It behaves like a ReplicaSet: ``set_replicas`` only records the wish and a supervisor thread converges on it,
starting workers, restarting any that exit on their own in the same slot (with a crash-loop backoff), and
retiring idle workers first when asked for fewer. Retiring is a SIGTERM, so even a busy worker finishes its job
before it exits. The emulated kubelet of the end-to-end tests runs its Pods through it: it names each slot's
worker (POD_NAME) and decides which slots retire first (the Pods' deletion costs).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import redis

from producer.scaling.autoscaler import TargetState
from task_processor.logs import get_logger
from task_processor.observe import WorkerInfo, list_workers
from task_processor.settings import Settings

SUPERVISE_INTERVAL = 0.1
"""Seconds between two reconcile passes of the supervisor thread."""

CRASH_BACKOFF_FIRST, CRASH_BACKOFF_MAX = 0.5, 30.0
"""Restart delay after a worker that lived shorter than CRASH_WINDOW exits; doubles up to the max."""

CRASH_WINDOW = 10.0
"""A worker that exits within this many seconds of starting counts toward the crash-loop backoff."""

DRAIN_TIMEOUT = 30.0
"""Seconds ``close`` lets retiring workers finish their jobs before killing them."""

log = get_logger("task_processor.local")


@dataclass
class WorkerProcess:
    """One worker slot, like a Pod: a process that exits on its own is restarted here, under the same POD_NAME.

    ``hostname`` is what the worker registers in RQ (its POD_NAME, else this machine's name): with its pid, it is
    how the slot is found among the registered workers.
    """

    popen: subprocess.Popen[bytes]
    started_at: float
    hostname: str
    pod_name: str | None = None
    retiring: bool = False
    crashed: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid


@dataclass
class _Counters:
    started: int = 0
    replaced: int = 0
    retired: int = 0


def _kill_group(pid: int) -> None:
    """SIGKILL what is left of a worker's process group: RQ's scheduler, which the worker forks, outlives a
    worker that was killed (a crash, a poison task) and would go on writing to Redis with no parent."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


RetirementOrder = Callable[[list[WorkerProcess]], list[WorkerProcess]]
"""Orders running slots cheapest first: the first ones retire when the deployment is asked for fewer."""


class LocalDeployment:
    """Keeps ``replicas`` worker processes running on this machine.

    ``pod_names``, when given, names each new slot; its worker gets that name as POD_NAME and registers it as its
    hostname. ``retirement_order`` replaces the default (not yet registered, then idle, then busy; newest first).
    """

    def __init__(
        self,
        connection: redis.Redis,
        env: Mapping[str, str],
        queues: tuple[str, ...],
        replicas: int = 0,
        log_file: Path | None = None,
        name: str = "local",
        pod_names: Callable[[], str] | None = None,
        retirement_order: RetirementOrder | None = None,
    ) -> None:
        self.name = name
        self.connection = connection
        self.env = dict(env)
        self.queues = queues
        self.log_file = log_file
        self._host = Settings.from_env(self.env).host  # what an unnamed worker registers as its hostname
        self._pod_names = pod_names
        self._retirement_order = retirement_order or self._idle_first
        self._replicas = replicas
        self._workers: list[WorkerProcess] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_spawn_at = 0.0
        self._backoff = CRASH_BACKOFF_FIRST
        self._output: IO[bytes] | None = None
        self.counters = _Counters()

    # The ScaleTarget side: what the autoscaler reads and writes.
    def read(self, fresh: bool = False) -> TargetState:
        return TargetState(self._replicas)

    def get_replicas(self) -> int:
        return self._replicas

    def set_replicas(self, replicas: int, workers: Sequence[WorkerInfo] = ()) -> None:
        """Ask for ``replicas`` workers; which ones retire is decided from Redis at the time (``workers`` unused)."""
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas}")
        with self._lock:
            self._replicas = replicas
            self._reconcile()

    def running(self) -> list[WorkerProcess]:
        """Processes alive now, retiring ones included (like Pods still terminating)."""
        with self._lock:
            return [w for w in self._workers if w.popen.poll() is None]

    def workers(self) -> list[WorkerProcess]:
        """Every slot, like a ReplicaSet's Pods: running, waiting for a restart, or retiring until it exits."""
        with self._lock:
            return list(self._workers)

    def start(self) -> LocalDeployment:
        if self.log_file is not None:
            self._output = self.log_file.open("ab")
        self._thread = threading.Thread(target=self._supervise, name=f"{self.name}-supervisor", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Retire every worker (letting running jobs finish within ``timeout``), then stop supervising."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._replicas = 0
            for worker in self._workers:
                if worker.popen.poll() is None and not worker.retiring:
                    self._retire(worker)
            deadline = time.monotonic() + timeout
            for worker in self._workers:
                try:
                    worker.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("worker did not drain in time; killing it", pid=worker.pid)
                    _kill_group(worker.pid)
                    worker.popen.wait()
            self._workers.clear()
        if self._output is not None:
            self._output.close()

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_INTERVAL):
            with self._lock:
                try:
                    self._reconcile()
                except redis.RedisError as exc:
                    log.warning("cannot read worker states from Redis; will retry", error=str(exc))

    def _reconcile(self) -> None:
        now = time.monotonic()
        for worker in [w for w in self._workers if w.popen.poll() is not None]:
            if worker.retiring:
                _kill_group(worker.pid)
                self._workers.remove(worker)
            elif not worker.crashed:
                _kill_group(worker.pid)
                worker.crashed = True
                self.counters.replaced += 1
                lived = now - worker.started_at
                log.warning("worker exited on its own; replacing it", pid=worker.pid, code=worker.popen.returncode)
                if lived < CRASH_WINDOW:
                    self._next_spawn_at = now + self._backoff
                    self._backoff = min(self._backoff * 2, CRASH_BACKOFF_MAX)
                else:
                    self._backoff = CRASH_BACKOFF_FIRST
        active = [w for w in self._workers if not w.retiring]
        missing = self._replicas - len(active)
        if missing < 0:
            # A slot whose worker is down goes first whatever the order, as a ReplicaSet removes unready Pods first.
            doomed = sorted(self._retirement_order(active), key=lambda w: not w.crashed)[:-missing]
            for worker in doomed:
                self._retire(worker)
        elif now >= self._next_spawn_at:
            for worker in [w for w in active if w.crashed]:
                worker.popen, worker.started_at, worker.crashed = self._launch(worker.pod_name), now, False
            for _ in range(missing):
                pod_name = self._pod_names() if self._pod_names is not None else None
                self._workers.append(WorkerProcess(self._launch(pod_name), now, pod_name or self._host, pod_name))

    def _idle_first(self, active: list[WorkerProcess]) -> list[WorkerProcess]:
        """Cheapest first, like pod-deletion-cost: not yet registered, then idle, then busy; newest first."""
        # A process with --concurrency registers one RQ worker per slot: it ranks as busy when any slot is.
        rank = {"started": 1, "idle": 1, "suspended": 1}
        ranks: dict[tuple[str, int | None], int] = {}
        for info in list_workers(self.connection):
            key = (info.hostname, info.pid)
            ranks[key] = max(ranks.get(key, 0), rank.get(info.state, 2))
        return sorted(active, key=lambda w: (ranks.get((w.hostname, w.pid), 0), -w.started_at))

    def _launch(self, pod_name: str | None) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "worker.cli"]
        for queue in self.queues:
            command += ["--queue", queue]
        env = self.env if pod_name is None else {**self.env, "POD_NAME": pod_name}
        popen = subprocess.Popen(
            command,
            env=env,
            stdout=self._output,
            stderr=subprocess.STDOUT if self._output else None,
            start_new_session=True,
        )
        self.counters.started += 1
        return popen

    def _retire(self, worker: WorkerProcess) -> None:
        worker.retiring = True
        self.counters.retired += 1
        worker.popen.send_signal(signal.SIGTERM)  # a no-op once the process has exited and been reaped
