"""Job timeouts for task slots running in threads, where RQ's SIGALRM death penalty cannot reach.

One watchdog thread per process keeps every slot's deadline and, when one passes, raises the job's timeout
exception inside that slot's thread (``PyThreadState_SetAsyncExc``, as RQ's ``TimerDeathPenalty`` does, without
starting a timer thread per job). The exception lands at the task's next Python instruction: a task blocked in
one long C call (a socket read without a timeout, one long ``time.sleep``) is stopped when that call returns.
"""

from __future__ import annotations

import ctypes
import functools
import math
import threading
import time
from typing import Any

from rq.timeouts import BaseDeathPenalty, JobTimeoutException

from worker import stopjob


def _raise_in(thread_id: int, exception: type[BaseException] | None) -> None:
    """Set (or, with None, clear) the exception pending in another thread."""
    target = ctypes.py_object(exception) if exception is not None else None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), target)


class _Watchdog:
    def __init__(self) -> None:
        self._deadlines: dict[int, tuple[float, type[BaseException]]] = {}
        self._fired: set[int] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._wakes_at = math.inf  # when the watchdog looks at the deadlines next

    def arm(self, seconds: float, exception: type[BaseException]) -> None:
        deadline = time.monotonic() + seconds
        with self._changed:
            self._deadlines[threading.get_ident()] = (deadline, exception)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="job-timeouts", daemon=True)
                self._thread.start()
            if deadline < self._wakes_at:  # else the watchdog wakes in time anyway: no wake-up per job
                self._changed.notify()

    def fire(self, thread_id: int, exception: type[BaseException]) -> None:
        """Raise ``exception`` in that thread now (a stop-job command), withdrawn like a timeout by ``disarm``."""
        with self._changed:
            self._deadlines.pop(thread_id, None)
            self._fired.add(thread_id)
            _raise_in(thread_id, exception)

    def disarm(self) -> None:
        """Cancel this thread's deadline; a timeout that fired but has not landed yet is withdrawn."""
        me = threading.get_ident()
        with self._changed:
            self._deadlines.pop(me, None)
            if me in self._fired:
                self._fired.discard(me)
                _raise_in(me, None)

    def landed(self) -> None:
        """The timeout exception reached its thread: nothing to withdraw any more."""
        with self._changed:
            self._fired.discard(threading.get_ident())

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for thread_id, (deadline, exception) in list(self._deadlines.items()):
                    if deadline <= now:
                        del self._deadlines[thread_id]
                        self._fired.add(thread_id)
                        _raise_in(thread_id, exception)
                self._wakes_at = min((deadline for deadline, _ in self._deadlines.values()), default=math.inf)
                self._changed.wait(None if self._wakes_at == math.inf else max(0.0, self._wakes_at - now))


_WATCHDOG = _Watchdog()


@functools.cache
def _timeout_exception(exception: type[BaseException], timeout: float) -> type[BaseException]:
    """PyThreadState_SetAsyncExc raises a class, so the message travels in a subclass made for this timeout (once
    per timeout value: making a class costs more than a short task)."""
    message = f"Task exceeded maximum timeout value ({timeout} seconds)"
    return type(
        exception.__name__,
        (exception,),
        {
            "__init__": lambda self: exception.__init__(self, message),
            "__module__": exception.__module__,
            "__qualname__": exception.__qualname__,
        },
    )


class ThreadDeathPenalty(BaseDeathPenalty):
    """RQ's death-penalty interface (``with penalty(timeout, exception):``) for a job running in a thread, which a
    stop-job command can also fire (``worker.stopjob``)."""

    def __init__(self, timeout: float, exception: type[BaseException] = JobTimeoutException, **kwargs: Any) -> None:
        super().__init__(timeout, exception, **kwargs)
        self._exception = _timeout_exception(exception, timeout)  # type: ignore[arg-type]  # classes hash
        self._job_id: str | None = kwargs.get("job_id")
        self._thread = threading.get_ident()  # made in the job's thread, as RQ makes it (``with penalty(...)``)

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: Any) -> bool:
        if kind is self._exception or kind is stopjob.JobStopped:
            _WATCHDOG.landed()
        return bool(super().__exit__(kind, value, tb))

    def setup_death_penalty(self) -> None:
        if self._timeout > 0:
            _WATCHDOG.arm(self._timeout, self._exception)
        stopjob.running(self._job_id, self)

    def cancel_death_penalty(self) -> None:
        stopjob.ended(self._job_id)
        _WATCHDOG.disarm()

    def stop(self) -> None:
        _WATCHDOG.fire(self._thread, stopjob.JobStopped)
