"""RQ's stop-job command (``rq.command.send_stop_job_command``) for jobs that run in the worker's own process.

RQ stops a job by killing the forked work horse that runs it. Here a job runs in a thread of the worker (the main
thread, or a ``--concurrency`` slot's), so a stop reaches it the way a timeout does: through the job's death
penalty, which raises ``JobStopped`` in that thread (SIGALRM in the main thread, which also interrupts a blocking
call; an asynchronous exception in a slot's thread, which lands at the task's next Python instruction). RQ's
failure handling then finds the stop it was asked for (the worker's ``_stopped_job_id``): the job ends
``stopped``, in the failed registry, and its ``on_stopped`` callback runs.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal.getsignal without its enum lookup
import signal
import threading
from types import FrameType
from typing import Any, Protocol

from rq import Queue
from rq.job import Job
from rq.timeouts import BaseDeathPenalty, BaseTimeoutException

from task_processor.logs import get_logger

log = get_logger("task_processor.worker")


class JobStopped(BaseTimeoutException):
    """Raised in a job's thread by a stop-job command. A timeout exception to RQ, so that one landing as the job
    ends is dropped by the penalty's exit instead of escaping into the worker."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("stopped by a stop-job command (rq.command.send_stop_job_command)",)))


class Stoppable(Protocol):
    def stop(self) -> None: ...


_RUNNING: dict[str, Stoppable] = {}
_LOCK = threading.Lock()


def running(job_id: str | None, penalty: Stoppable) -> None:
    """``job_id`` runs under ``penalty`` from now on (called in the job's thread, as the penalty is set up)."""
    if job_id is not None:
        with _LOCK:
            _RUNNING[job_id] = penalty


def ended(job_id: str | None) -> None:
    """``job_id`` no longer runs: a stop from now on finds nothing (called before the penalty is taken down)."""
    if job_id is not None:
        with _LOCK:
            _RUNNING.pop(job_id, None)


def stop(job_id: str) -> bool:
    """Stop ``job_id`` if it runs in this process; False when it does not (any more)."""
    with _LOCK:
        penalty = _RUNNING.get(job_id)
        if penalty is None:
            return False
        penalty.stop()
        return True


class StopsJobs:
    """For a worker class: RQ's stop-job handler sets ``_stopped_job_id`` and calls ``kill_horse``; the stopped job
    then runs its ``on_stopped`` callback (not its failure callback: ``TaskJob``), as RQ's forking worker does."""

    _stopped_job_id: str | None

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        job_id = self.get_current_job_id()  # type: ignore[attr-defined]
        if job_id is None or not stop(job_id):
            log.info("stop-job: the job is not running here (any more)", job_id=job_id)

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = ""
    ) -> None:
        if self._stopped_job_id == job.id and job.stopped_callback:
            job.execute_stopped_callback(self.death_penalty_class)  # type: ignore[attr-defined]
        super().handle_job_failure(job, queue, started_job_registry, exc_string)  # type: ignore[misc]


class SignalDeathPenalty(BaseDeathPenalty):
    """RQ's SIGALRM timeout for the main thread (``UnixSignalDeathPenalty``), which a stop-job command can also fire.

    RQ installs its handler as each job starts and restores the default one as it ends; here the handler stays
    installed and serves whichever penalty is armed (two ``signal.signal`` calls cost a no-op task a few percent).
    An alarm that arrives after its job ended (the job finished as the alarm fired) finds nothing armed and is
    dropped, where RQ's default handler would have ended the process."""

    def __init__(self, timeout: Any, exception: type[BaseException] = BaseTimeoutException, **kwargs: Any) -> None:
        super().__init__(timeout, exception, **kwargs)
        self._job_id: str | None = kwargs.get("job_id")
        self._stopping = False

    def setup_death_penalty(self) -> None:
        global _armed
        # First use, or a task installed a handler of its own. (``signal.getsignal`` maps the handler to its enum,
        # which for a function raises and catches a ValueError on every job.)
        if _signal.getsignal(signal.SIGALRM) is not _on_alarm:
            signal.signal(signal.SIGALRM, _on_alarm)
        _armed = self
        signal.alarm(self._timeout)
        running(self._job_id, self)

    def cancel_death_penalty(self) -> None:
        global _armed
        ended(self._job_id)
        signal.alarm(0)
        _armed = None

    def handle_death_penalty(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            raise JobStopped
        raise self._exception(f"Task exceeded maximum timeout value ({self._timeout} seconds)")

    def stop(self) -> None:
        self._stopping = True
        main = threading.main_thread().ident
        assert main is not None
        signal.pthread_kill(main, signal.SIGALRM)


_armed: SignalDeathPenalty | None = None
"""The penalty of the job the main thread runs now, if any."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    penalty = _armed
    if penalty is not None:
        penalty.handle_death_penalty(signum, frame)
