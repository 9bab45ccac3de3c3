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

from worker.batching import BatchedCalls

if TYPE_CHECKING:
    from worker.runner import TaskWorker

# start(job, id, wip, intermediate, meta, a): what RQ's prepare_execution, prepare_job_execution and Job.perform
# write when a job starts. ARGV[a ..] are the start's own arguments, chosen before the job is known: worker key,
# worker name, execution id, execution created_at, ISO now, heartbeat ttl, started score, executions score.
_START_FUNCTION = """
local function start(job, id, wip, intermediate, meta, a)
  local worker, name, execution_id, created, iso, ttl = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
                                                        ARGV[a + 4], ARGV[a + 5]
  local execution = 'rq:execution:' .. id .. ':' .. execution_id
  local executions = 'rq:executions:' .. id
  -- Execution.create: the execution hash, the job's execution registry, the started registry
  redis.call('HSET', execution, 'id', execution_id, 'created_at', created, 'last_heartbeat', created,
             'worker_name', name)
  redis.call('EXPIRE', execution, ttl)
  redis.call('ZADD', executions, ARGV[a + 7], execution_id)
  redis.call('EXPIRE', executions, ttl + 60)
  redis.call('ZADD', wip, ARGV[a + 6], id .. ':' .. execution_id)
  -- Worker.set_state, set_current_job_id, set_current_job_working_time, heartbeat
  redis.call('HSET', worker, 'state', 'busy', 'current_job', id, 'current_job_working_time', 0, 'last_heartbeat', iso)
  redis.call('EXPIRE', worker, ttl)
  -- Job.prepare_for_execution (and our attempt count in meta), Job.perform's PERSIST
  redis.call('HSET', job, 'meta', meta, 'last_heartbeat', iso, 'status', 'started', 'started_at', iso,
             'worker_name', name)
  redis.call('PERSIST', job)
  -- prepare_job_execution: the job leaves the intermediate list it was popped into
  redis.call('LREM', intermediate, 1, id)
end
"""

# pop(first, prefix, a): KEYS[first] is rq:suspended, then come each queue, its intermediate list and its started
# registry, highest priority first. Returns 'suspended' while `rq suspend` is in force, false when every queue is
# empty, else {queue key, job id, the job's hash as a flat list (false when its key is not a hash), 1 when the pop
# started the job}. The job moves into its queue's intermediate list: a popped job always exists in Redis. With
# ``a`` (the start's arguments, see start()), a queued job whose meta holds no more than our attempt count (JSON,
# the common case) is started in the same step, its attempt counted; any other job is left for Python to start.
# A queue key that is not a list (foreign data) is passed over, so it cannot stop the other queues.
_POP_FUNCTION = (
    _START_FUNCTION
    + """
local function next_meta(meta)
  if not meta or meta == '{}' then return '{"attempt": 1}' end
  local attempt = string.match(meta, '^{"attempt": (%d+)}$')
  if attempt then return '{"attempt": ' .. (tonumber(attempt) + 1) .. '}' end
  return nil
end

local function pop(first, prefix, a)
  if redis.call('EXISTS', KEYS[first]) == 1 then return 'suspended' end
  for i = first + 1, #KEYS, 3 do
    if redis.call('TYPE', KEYS[i])['ok'] == 'list' then
      local id = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
      if id then
        local job = prefix .. id
        if redis.call('TYPE', job)['ok'] ~= 'hash' then return {KEYS[i], id, false, 0} end
        local started = 0
        if a then
          local state = redis.call('HMGET', job, 'status', 'meta')
          local meta = state[1] == 'queued' and next_meta(state[2])
          if meta then
            start(job, id, KEYS[i + 2], KEYS[i + 1], meta, a)
            started = 1
          end
        end
        return {KEYS[i], id, redis.call('HGETALL', job), started}
      end
    end
  end
  return false
end
"""
)

# KEYS and ARGV[1] as for pop(1, ARGV[1], a); ARGV[2] is the number of the start's arguments that follow (8 or 0).
_POP = _POP_FUNCTION + "return pop(1, ARGV[1], tonumber(ARGV[2]) > 0 and 3 or nil)"

# KEYS: job, started registry (rq:wip:<q>), intermediate list. ARGV: job id, job meta, then the start's arguments.
_START = _START_FUNCTION + "start(KEYS[1], ARGV[1], KEYS[2], KEYS[3], ARGV[2], 3)"

# KEYS: job, worker, started registry, execution, the job's executions, results stream, finished registry,
# dependents, then (to pop the next job) the keys of pop(9, ...). ARGV: job id, execution id, seconds worked, ISO
# ended_at, result ttl, finished score, job key prefix, the number of the start's arguments (8 or 0), those, then
# the result's fields and values. Returns the job's dependents (read in the same atomic step as its status) and
# the next job, as pop() returns it.
_FINISH = (
    _POP_FUNCTION
    + """
local job_id, execution_id, ttl, starts = ARGV[1], ARGV[2], ARGV[5], tonumber(ARGV[8])
-- Worker.increment_successful_job_count, increment_total_working_time, set_current_job_id(None), set_state
redis.call('HINCRBY', KEYS[2], 'successful_job_count', 1)
redis.call('HINCRBYFLOAT', KEYS[2], 'total_working_time', ARGV[3])
redis.call('HDEL', KEYS[2], 'current_job')
redis.call('HSET', KEYS[2], 'state', 'idle')
-- Execution.delete: the execution hash, its started entry, its entry in the job's execution registry
redis.call('DEL', KEYS[4])
redis.call('ZREM', KEYS[3], job_id .. ':' .. execution_id)
redis.call('ZREM', KEYS[5], execution_id)
-- Job._handle_success: status, ended_at; Result.create; FinishedJobRegistry.add; Job.cleanup
redis.call('HSET', KEYS[1], 'status', 'finished', 'ended_at', ARGV[4])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', 10, '*', unpack(ARGV, 9 + starts))
redis.call('EXPIRE', KEYS[6], ttl)
redis.call('ZADD', KEYS[7], ARGV[6], job_id)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[8], ttl)
local dependents = redis.call('SMEMBERS', KEYS[8])
if #KEYS > 8 then return {dependents, pop(9, ARGV[7], starts > 0 and 9 or nil)} end
return {dependents, false}
"""
)


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
        self._pop = worker.connection.register_script(_POP)
        self._start = worker.connection.register_script(_START)
        self._finish = worker.connection.register_script(_FINISH)
        # The pop's start writes the attempt count into meta as JSON; with another serializer Python starts jobs.
        self.starts_on_pop = worker.serializer is JSONSerializer

    def pop(self, keys: list[str]) -> Popped | str | None:
        """The next job of the queues in ``keys`` (see pop() above), SUSPENDED, or None when they are empty."""
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
        it, as pop() does).

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
        """A start's execution id, time and script arguments (see start() above), chosen before the job is known."""
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
