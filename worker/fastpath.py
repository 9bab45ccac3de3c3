"""The success path's bookkeeping, each step one Lua call that writes exactly what RQ's own methods write.

redis-py spends more Python per command it packs and parses than Redis spends running it, and each round trip
costs a pair of context switches; RQ's SimpleWorker sends about 40 commands in 14 round trips per successful
job. Here a job in a busy queue costs one call: the finish of the job before it, which also pops it and starts
it (a pop of its own when there was none). The start stays a call of its own only for a job the pop could not
start: one whose meta holds more than our attempt count, or whose serializer is not JSON. Each line of the
scripts names the RQ method whose write it reproduces, so that RQ's tools and rq-dashboard cannot tell the
difference (``tests/test_fastpath.py`` compares what a job leaves in Redis with what RQ's ``SimpleWorker``
leaves).

Only the common case takes this path: a result kept for a positive time and no repeats. Anything else (failure,
retry, stop, ``result_ttl`` 0 or -1, repeats, dependents) goes through RQ's own code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import current_timestamp, now, utcformat
from rq.worker import WorkerStatus

from task_processor import scripts
from worker.batching import BatchedCalls

if TYPE_CHECKING:
    from worker.runner import TaskWorker


@dataclass(frozen=True, slots=True)
class Popped:
    """A job a pop moved into its queue's intermediate list, and started when ``execution`` is set."""

    queue_key: str
    job_id: bytes
    fields: list[bytes] | None
    """The job's hash as a flat list (after the start, when the pop started it), None when its key is no hash."""
    execution: Execution | None


SUSPENDED = "suspended"
"""What a pop returns instead of a job while `rq suspend` is in force."""

_Start = tuple[str, datetime, list[Any]]
"""A start's execution id, its time, and its arguments to the scripts."""


def can_finish_fast(job: Job, result_ttl: int) -> bool:
    """Whether the job's success is the common case the finish script writes."""
    return result_ttl > 0 and not job.repeats_left


class FastPath:
    """The pop, start and finish scripts, registered once per worker. Keys come from RQ's own key templates
    (building RQ's registry objects per job costs more than the rest of the Python side of a job)."""

    def __init__(self, worker: TaskWorker, calls: BatchedCalls) -> None:
        self.worker = worker
        self.calls = calls
        self._pop = scripts.register(worker.connection, "pop")
        self._start = scripts.register(worker.connection, "start")
        self._finish = scripts.register(worker.connection, "finish")
        # The pop's start writes the attempt count into meta as JSON; with another serializer Python starts jobs.
        self.starts_on_pop = worker.serializer is JSONSerializer

    def pop(self, keys: list[str]) -> Popped | str | None:
        """The next job of the queues in ``keys`` (lua/lib/pop.lua), SUSPENDED, or None when they are empty."""
        start = self._start_args() if self.starts_on_pop else None
        reply = self.calls.call(self._pop, keys, [Job.redis_job_namespace_prefix, *self._start_part(start)])
        return self._popped(reply, start)

    def start(self, job: Job, intermediate_key: str) -> Execution:
        """Mark the job started by this worker; returns its execution (RQ's prepare_execution and
        prepare_job_execution, with the same state on the Python objects)."""
        start = self._start_args()
        _, started, args = start
        execution = self._started(start, job.id)
        job.last_heartbeat = job.started_at = started
        job.worker_name = self.worker.name
        job._status = JobStatus.STARTED
        self.calls.call(
            self._start,
            [job.key, StartedJobRegistry.key_template.format(job.origin), intermediate_key],
            [job.id, job.serializer.dumps(job.meta), *args],
        )
        return execution

    def finish(
        self, job: Job, execution: Execution, result_ttl: int, pop_keys: list[str]
    ) -> tuple[list[bytes], Popped | str | None]:
        """Record the job's success (RQ's handle_job_success) and, with ``pop_keys``, pop the next job (and start
        it, as a pop does): lua/finish.lua.

        Returns the ids of the job's dependents, and what the pop found."""
        worker = self.worker
        assert job.started_at is not None
        assert job.ended_at is not None
        job._status = JobStatus.FINISHED
        worker._state = WorkerStatus.IDLE
        result = Result(
            job_id=job.id,
            type=Result.Type.SUCCESSFUL,
            connection=worker.connection,
            return_value=job._result,
            worker_name=worker.name,
            serializer=job.serializer,
            execution_id=execution.id,
            execution_started_at=execution.created_at,
            execution_ended_at=job.ended_at,
        )
        fields = [item for pair in result.serialize().items() for item in pair]
        start = self._start_args() if pop_keys and self.starts_on_pop else None
        dependents, popped = self.calls.call(
            self._finish,
            [job.key, worker.key, StartedJobRegistry.key_template.format(job.origin), execution.key,
             ExecutionRegistry.key_template.format(job.id), Result.get_key(job.id),
             FinishedJobRegistry.key_template.format(job.origin), job.dependents_key, *pop_keys],
            [job.id, execution.id, (job.ended_at - job.started_at).total_seconds(), utcformat(job.ended_at),
             result_ttl, current_timestamp() + result_ttl, Job.redis_job_namespace_prefix,
             *self._start_part(start), *fields],
        )  # fmt: skip
        return dependents, self._popped(popped, start)

    def _start_args(self) -> _Start:
        """A start's execution id, time and script arguments (lua/lib/start.lua), chosen before the job is known."""
        worker = self.worker
        ttl = worker.abandon_after
        execution_id, started, timestamp = uuid4().hex, now(), current_timestamp()
        args = [worker.key, worker.name, execution_id, started.timestamp(), utcformat(started), ttl,
                timestamp + ttl, timestamp + ttl + 60]  # fmt: skip
        return execution_id, started, args

    @staticmethod
    def _start_part(start: _Start | None) -> list[Any]:
        return [len(start[2]), *start[2]] if start else [0]

    def _started(self, start: _Start, job_id: str) -> Execution:
        """The execution a start wrote, on the Python side."""
        execution_id, started, _ = start
        worker = self.worker
        execution = Execution(id=execution_id, job_id=job_id, connection=worker.connection, worker_name=worker.name)
        execution.created_at = execution.last_heartbeat = started
        return execution

    def busy(self, execution: Execution) -> None:
        """The worker's state after a start, on the Python side (once it runs the job the start was for)."""
        worker = self.worker
        worker._state = WorkerStatus.BUSY
        worker.current_job_working_time = 0
        worker.last_heartbeat = execution.created_at

    def _popped(self, reply: Any, start: _Start | None) -> Popped | str | None:
        if not reply:
            return None
        if reply == SUSPENDED.encode():
            return SUSPENDED
        queue_key, job_id, fields, started = reply
        execution = self._started(start, job_id.decode()) if started and start else None
        return Popped(queue_key.decode(), job_id, fields or None, execution)
