"""The job a worker runs: RQ's ``Job``, with TASK_MODULES as the boundary of the code it may run.

RQ resolves a job's function and callbacks with ``import_attribute``, which imports any module a job names; here
they resolve through ``task_processor.taskmodules``, all of them before any of them runs, so one refused path
refuses the whole job. It also counts attempts in ``meta`` and names a job whose data it cannot decode.
"""

from __future__ import annotations

from typing import Any

from rq import get_current_job
from rq.exceptions import DeserializationError
from rq.job import Job, _job_stack

from task_processor.errors import undecodable_job
from task_processor.jobs import ATTEMPT_META_KEY
from task_processor.taskmodules import TaskModules, TaskRefusedError
from worker.stopjob import JobStopped


def current_attempt() -> int:
    """Which attempt of the current job this is (1-based); for tasks that behave differently on retries."""
    job = get_current_job()
    return int(job.meta.get(ATTEMPT_META_KEY, 1)) if job is not None else 1


class TaskJob(Job):
    """An RQ job that runs only code inside TASK_MODULES, counts its attempts and explains what it cannot run.

    Its function and callbacks resolve through ``modules`` (see ``task_processor.taskmodules``) instead of RQ's
    ``import_attribute``, which imports any module a job names. A worker makes its own subclass with
    ``allowing``; this base class allows nothing.
    """

    modules = TaskModules(())
    _refusal: str | None = None

    @classmethod
    def allowing(cls, modules: TaskModules) -> type[TaskJob]:
        """This job class with ``modules`` as its trust boundary."""
        return type(cls.__name__, (cls,), {"modules": modules, "__module__": cls.__module__})

    @property
    def refusal(self) -> str | None:
        """Why the job was refused (one line), once it was."""
        return self._refusal

    @property
    def func(self) -> Any:
        if self.func_name is None:
            return None
        if self.instance is not None:
            raise self.modules.refuse(self.func_name, "it is bound to an instance carried in the job")
        return self.modules.resolve(self.func_name)

    def _callback(self, name: str | None) -> Any:
        if name is None or self._refusal is not None:
            return None  # a refused job runs no callback either
        return self.modules.resolve(name)

    def execute_failure_callback(self, death_penalty_class: Any, *exc_info: Any) -> None:
        """A job stopped by a stop-job command runs its stopped callback instead (``worker.stopjob``), as RQ's."""
        if exc_info and isinstance(exc_info[0], type) and issubclass(exc_info[0], JobStopped):
            return
        super().execute_failure_callback(death_penalty_class, *exc_info)

    @property
    def success_callback(self) -> Any:
        return self._callback(self._success_callback_name)

    @property
    def failure_callback(self) -> Any:
        return self._callback(self._failure_callback_name)

    @property
    def stopped_callback(self) -> Any:
        return self._callback(self._stopped_callback_name)

    def check_allowed(self) -> None:
        """Resolve the function and every callback before any of them runs: one refused refuses the job."""
        try:
            self.func  # noqa: B018
            for name in (self._success_callback_name, self._failure_callback_name, self._stopped_callback_name):
                if name is not None:
                    self._callback(name)
        except TaskRefusedError as exc:
            self._refusal = str(exc)
            raise

    def _deserialize_data(self) -> None:
        try:
            super()._deserialize_data()
        except DeserializationError as exc:
            raise DeserializationError(undecodable_job(self.id, exc.__cause__)) from exc.__cause__

    def perform(self) -> Any:
        # RQ's perform() first removes any expiry from the job hash, in a round trip of its own; the worker's
        # start pipeline has done that already.
        self.check_allowed()
        stack = _job_stack.push(self)  # the thread's stack (get_current_job reads its top)
        try:
            self._result = self._execute()
        finally:
            # Not _job_stack.pop(): that drops the thread's stack once it is empty, and the next push makes it
            # again through two caught exceptions (KeyError, AttributeError), for every job.
            stack.pop()
        return self._result
