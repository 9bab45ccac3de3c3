"""How a worker stops: warm (finish the running job, take no new one), cold (put the running job back), and what
it hands back either way.

A warm stop only sets a flag that the dequeue loop reads between pops (RQ raises from the signal handler, which can
abort a blocking pop after Redis moved a job to the worker but before the worker saw it). Jobs a pop took for the
worker to run next go back to the front of their queues, in their order, as they were: the start the pop recorded
is undone, their attempt uncounted. A job a cold stop interrupts goes back to the front too: it did not fail, it
was not allowed to finish.
"""

from __future__ import annotations

import signal
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING

import redis
from rq import Queue
from rq.executions import Execution
from rq.job import Job
from rq.utils import now

from task_processor.jobs import ATTEMPT_META_KEY
from task_processor.logs import get_logger
from worker.dequeue import Dequeuer, Taken

log = get_logger("task_processor.worker")


class Shutdown:
    """For TaskWorker: its stops, and the jobs it gives back."""

    connection: redis.Redis
    execution: Execution | None
    _dequeue: Dequeuer
    _cold_stop: bool
    _stop_requested: bool
    _shutdown_requested_date: datetime | None

    if TYPE_CHECKING:

        def set_shutdown_requested_date(self) -> None: ...

        def cleanup_execution(self, job: Job, pipeline: redis.client.Pipeline) -> None: ...

    def _shutdown(self) -> None:
        # RQ raises StopRequested from the signal handler, which can abort a blocking pop after Redis moved a
        # job to the worker but before the worker saw it: the job would sit in no queue until a cleanup much
        # later. Idle or busy, a warm stop only sets the flag; the dequeue loop looks at it between pops.
        self._stop_requested = True
        self._shutdown_requested_date = now()
        self.set_shutdown_requested_date()

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        log.warning("cold shutdown: interrupting the running job", signal=signal.Signals(signum).name)
        self._cold_stop = True
        raise SystemExit(1)

    def handle_warm_shutdown_request(self) -> None:
        log.info("warm shutdown: finishing the running job, taking no new one; signal again to stop at once")

    def give_back_held(self) -> None:
        """The jobs a pop took for this worker to run next go back to the front of their queues, in their order."""
        for taken in reversed(self._dequeue.take_held()):  # the last first: each goes to the front
            self._give_back(taken)

    def _give_back(self, taken: Taken) -> None:
        """A job taken when the worker is to run no more goes back to the front of its queue, as it was: when the
        pop had started it, the start is undone (its attempt did not happen)."""
        job, queue = taken.job, taken.queue
        if taken.execution is None:
            with self.connection.pipeline() as pipeline:
                pipeline.lrem(queue.intermediate_queue_key, 1, job.id)
                pipeline.lpush(queue.key, job.id)
                pipeline.execute()
            return
        attempts = int(job.meta.pop(ATTEMPT_META_KEY, 1)) - 1
        if attempts:
            job.meta[ATTEMPT_META_KEY] = attempts
        elif not job.meta:
            self.connection.hdel(job.key, "meta")  # RQ's save below writes no meta for an empty one
        self.execution = taken.execution
        self.requeue_interrupted(job, queue)

    def requeue_interrupted(self, job: Job, queue: Queue) -> None:
        """Put a job a cold stop interrupted back at the front of its queue (it did not fail)."""
        # Queued again before the started entry goes: at every moment the job is somewhere a worker will find it.
        queue.enqueue_job(job, at_front=True)
        with self.connection.pipeline() as pipeline:
            self.cleanup_execution(job, pipeline=pipeline)
            pipeline.execute()
