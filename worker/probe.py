"""``task-worker check``: a liveness probe that passes only while a worker of this host is alive.

It runs as a separate process beside the worker (an exec probe), so it finds the worker through RQ's own
registration: same host (POD_NAME on Kubernetes, else the hostname), a live heartbeat, and a PID that still exists.
"""

from __future__ import annotations

import os

from redis import Redis

from task_processor.observe import WorkerInfo, list_workers


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


def healthy_workers(connection: Redis, host: str, name: str | None = None) -> list[WorkerInfo]:
    """Workers that pass the probe: named ``name``, or else registered from ``host`` with a live process."""
    found = []
    for worker in list_workers(connection):
        if name is not None:
            if worker.name == name:
                found.append(worker)
        elif worker.hostname == host and _process_alive(worker.pid):
            found.append(worker)
    return found
