"""The heartbeat thread: keeps a worker, and the job it runs, alive in Redis while the process lives.

RQ's in-process worker heartbeats only between jobs: a long job would look abandoned, and a dead worker's job would
look alive for its whole timeout. Here one thread per worker heartbeats every third of TASK_ABANDON_AFTER, so only
a dead worker lets its keys lapse (and the reaper requeue its job).
"""

from __future__ import annotations

import threading
from typing import Protocol

import redis
from rq.job import Job

from task_processor.connection import OutageLog
from task_processor.errors import first_line
from task_processor.logs import get_logger

log = get_logger("task_processor.worker")


class Beating(Protocol):
    """What the thread needs of a worker: RQ's two heartbeats."""

    name: str
    outage: OutageLog

    def heartbeat(self) -> None: ...

    def maintain_heartbeats(self, job: Job) -> None: ...

    def hold_popped(self) -> None: ...

    def maintain_held(self) -> None: ...


class Heartbeat:
    """The thread, and the job it keeps alive. The lock keeps a heartbeat from reviving a job's execution entries
    while the job's final bookkeeping removes them."""

    def __init__(self, worker: Beating, interval: float) -> None:
        self.worker = worker
        self.interval = interval
        self.lock = threading.Lock()
        """Held while beating: the worker takes a held job, and records a job's end, only between beats."""
        self._running: Job | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{worker.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def running(self, job: Job) -> None:
        """From now on, keep ``job`` alive with the worker."""
        with self.lock:
            self._running = job

    def idle(self) -> Job | None:
        """From now on, leave the running job alone (its end is being recorded); returns it, if there was one."""
        with self.lock:
            job, self._running = self._running, None
        return job

    def _beat(self) -> None:
        while not self._stopped.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        """One beat: the worker's, the running job's if there is one, and those of the jobs a pop took for the worker
        to run next (the thread's every ``interval``)."""
        try:
            self.worker.hold_popped()  # outside the lock: holding a job takes it
            with self.lock:
                if self._running is None:
                    self.worker.heartbeat()
                else:
                    self.worker.maintain_heartbeats(self._running)
                self.worker.maintain_held()
        except redis.ConnectionError as exc:
            self.worker.outage.failed(exc)
        except Exception as exc:  # a Redis refusal, or a bug: the thread must go on beating either way
            log.warning("heartbeat failed; will retry", error=first_line(exc))
