"""``task-worker check``: a liveness probe that passes only while a worker of this host is alive.

It runs as a separate process beside the worker (an exec probe), so it finds the worker through RQ's own
registration: same hostname (the Pod name on Kubernetes), a live heartbeat, and a PID that still exists.
"""

from __future__ import annotations

import os
import socket

from redis import Redis

from worker.observe import WorkerInfo, list_workers


def _process_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def healthy_workers(connection: Redis, name: str | None = None) -> list[WorkerInfo]:
    """Workers that pass the probe: named ``name``, or else registered from this host with a live process."""
    hostname = socket.gethostname()
    found = []
    for worker in list_workers(connection):
        if name is not None:
            if worker.name == name:
                found.append(worker)
        elif worker.hostname == hostname and _process_alive(worker.pid):
            found.append(worker)
    return found
