"""``--concurrency N``: N task slots in one process, threads, each its own RQ worker.

For I/O-bound tasks a slot waiting on the network leaves the CPU to the others, so one Pod does N tasks at once
for the memory of one process. Each slot registers as an RQ worker of its own (its own name, ``rq:worker:<name>``
hash and heartbeat), so ``rq info``, rq-dashboard and the autoscaler see N workers on the Pod, each idle or busy.

Only the main thread receives signals; it passes them on. First SIGTERM/SIGINT: every slot finishes its running
job and takes no new one. A second: every running job goes back to the front of its queue and the process exits
at once (code 1), as a single worker does. Job timeouts use the thread-safe penalty of ``worker.timeouts``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType

import structlog
from rq import Queue
from rq.job import Job

from task_processor.logs import get_logger
from worker.recycle import Recycler
from worker.runner import TaskWorker
from worker.timeouts import ThreadDeathPenalty

log = get_logger("task_processor.worker")


class SlotWorker(TaskWorker):
    """A TaskWorker that runs in a thread: no signal handlers of its own, timeouts without SIGALRM."""

    death_penalty_class = ThreadDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass  # signals reach the main thread only; SlotPool passes them on

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        super().handle_execution_ended(job, queue, heartbeat_ttl)
        if self._cold_stop:
            # The main thread has put the job back in its queue and is ending the process: write nothing more.
            threading.Event().wait()

    def interrupt(self) -> None:
        """Cold stop, from the main thread: requeue the running job at the front, and log its line."""
        self._cold_stop = True
        job = self._heartbeat.idle()
        if job is None:
            return
        queue = self._running_queue
        assert queue is not None
        self.requeue_interrupted(job, queue)
        with structlog.contextvars.bound_contextvars(job_id=job.id, queue=queue.name, func=job.func_name):
            self.log_job(job, time.monotonic() - self._running_since)


class SlotPool:
    """Runs the slots, passes signals on, and stops them all (warm) once one of them stops (in burst mode, once
    each has found the queues empty)."""

    def __init__(self, slots: list[SlotWorker]) -> None:
        self.slots = slots
        self._slot_ended = threading.Event()

    def run(self, burst: bool, logging_level: str, recycler: Recycler | None) -> int:
        """Run until every slot has stopped; the exit code of the process (1 after a cold stop)."""
        signal.signal(signal.SIGTERM, self._warm)
        signal.signal(signal.SIGINT, self._warm)
        threads = [
            threading.Thread(
                target=self._run_slot, args=(slot, burst, logging_level, index == 0, recycler), name=slot.name
            )
            for index, slot in enumerate(self.slots)
        ]
        for thread in threads:
            thread.start()
        while not self._slot_ended.wait(1.0):
            pass
        if not burst:  # in burst mode each slot runs what it holds, and stops when the queues are empty
            for slot in self.slots:
                slot._shutdown()  # one slot stopped (recycled, error): the others finish their jobs
        for thread in threads:
            while thread.is_alive():
                thread.join(1.0)
        return 0

    def _run_slot(
        self, slot: SlotWorker, burst: bool, logging_level: str, with_scheduler: bool, recycler: Recycler | None
    ) -> None:
        try:
            slot.work(burst=burst, logging_level=logging_level, with_scheduler=with_scheduler, recycler=recycler)
        finally:
            self._slot_ended.set()

    def _warm(self, signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, self._cold_stop)
        signal.signal(signal.SIGINT, self._cold_stop)
        log.info("warm shutdown: finishing the running jobs, taking no new one; signal again to stop at once")
        for slot in self.slots:
            slot._shutdown()

    def _cold_stop(self, signum: int, frame: FrameType | None) -> None:
        log.warning("cold shutdown: interrupting the running jobs", signal=signal.Signals(signum).name)
        for slot in self.slots:
            slot.interrupt()
        for slot in self.slots:
            slot.teardown()
        sys.stdout.flush()
        # The slots' threads may be deep inside their tasks; nothing of theirs may write after the requeue.
        os._exit(1)
