"""The success path's bookkeeping, each step one Lua call that writes exactly what RQ's own methods write.

redis-py spends more Python per command it packs and parses than Redis spends running it, and each round trip
costs a pair of context switches; RQ's SimpleWorker sends about 40 commands in 14 round trips per successful
job. Here a job costs two calls: the start, and the finish that also pops the next job (or, when there was
none, a pop of its own). Each line of the scripts names the RQ method whose write it reproduces, so that RQ's
tools and rq-dashboard cannot tell the difference (``tests/test_fastpath.py`` compares what a job leaves in
Redis with what RQ's ``SimpleWorker`` leaves).

Only the common case takes this path: a result kept for a positive time and no repeats. Anything else (failure,
retry, stop, ``result_ttl`` 0 or -1, repeats, dependents) goes through RQ's own code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import uuid4

from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.registry import FinishedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.utils import current_timestamp, now, utcformat
from rq.worker import WorkerStatus

from worker.batching import BatchedCalls

if TYPE_CHECKING:
    from worker.runner import TaskWorker

# pop(first, prefix): KEYS[first] is rq:suspended, then come each queue and its intermediate list, highest priority
# first. Returns 'suspended' while `rq suspend` is in force, false when every queue is empty, else {queue key,
# job id, the job's hash as a flat list, or false when its key is not a hash}. The job moves into its queue's
# intermediate list: a popped job always exists in Redis. A queue key that is not a list (foreign data) is passed
# over, so it cannot stop the other queues.
_POP_FUNCTION = """
local function pop(first, prefix)
  if redis.call('EXISTS', KEYS[first]) == 1 then return 'suspended' end
  for i = first + 1, #KEYS, 2 do
    if redis.call('TYPE', KEYS[i])['ok'] == 'list' then
      local id = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
      if id then
        local job = prefix .. id
        if redis.call('TYPE', job)['ok'] == 'hash' then return {KEYS[i], id, redis.call('HGETALL', job)} end
        return {KEYS[i], id, false}
      end
    end
  end
  return false
end
"""

# KEYS and ARGV[1] as for pop(1, ARGV[1]).
_POP = _POP_FUNCTION + "return pop(1, ARGV[1])"

# KEYS: job, worker, started registry (rq:wip:<q>), intermediate list, execution, the job's executions.
# ARGV: job id, execution id, worker name, execution created_at, ISO now, heartbeat ttl, started score,
# executions score, job meta.
_START = """
local job_id, execution_id, worker, created, iso, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
-- Execution.create: the execution hash, the job's execution registry, the started registry
redis.call('HSET', KEYS[5], 'id', execution_id, 'created_at', created, 'last_heartbeat', created, 'worker_name', worker)
redis.call('EXPIRE', KEYS[5], ttl)
redis.call('ZADD', KEYS[6], ARGV[8], execution_id)
redis.call('EXPIRE', KEYS[6], ttl + 60)
redis.call('ZADD', KEYS[3], ARGV[7], job_id .. ':' .. execution_id)
-- Worker.set_state, set_current_job_id, set_current_job_working_time, heartbeat
redis.call('HSET', KEYS[2], 'state', 'busy', 'current_job', job_id, 'current_job_working_time', 0,
           'last_heartbeat', iso)
redis.call('EXPIRE', KEYS[2], ttl)
-- Job.prepare_for_execution (and our attempt count in meta), Job.perform's PERSIST
redis.call('HSET', KEYS[1], 'meta', ARGV[9], 'last_heartbeat', iso, 'status', 'started', 'started_at', iso,
           'worker_name', worker)
redis.call('PERSIST', KEYS[1])
-- prepare_job_execution: the job leaves the intermediate list it was popped into
redis.call('LREM', KEYS[4], 1, job_id)
"""

# KEYS: job, worker, started registry, execution, the job's executions, results stream, finished registry,
# dependents, then (to pop the next job) the keys of pop(9, ...). ARGV: job id, execution id, seconds worked, ISO
# ended_at, result ttl, finished score, job key prefix, then the result's fields and values. Returns the job's
# dependents (read in the same atomic step as its status) and the next job, as pop() returns it.
_FINISH = (
    _POP_FUNCTION
    + """
local job_id, execution_id, ttl = ARGV[1], ARGV[2], ARGV[5]
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
redis.call('XADD', KEYS[6], 'MAXLEN', '~', 10, '*', unpack(ARGV, 8))
redis.call('EXPIRE', KEYS[6], ttl)
redis.call('ZADD', KEYS[7], ARGV[6], job_id)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[8], ttl)
local dependents = redis.call('SMEMBERS', KEYS[8])
if #KEYS > 8 then return {dependents, pop(9, ARGV[7])} end
return {dependents, false}
"""
)

Popped = bytes | list[Any]
"""What pop() returns when it found something: ``b"suspended"`` or [queue key, job id, job hash or None]."""


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

    def pop(self, keys: list[str]) -> Popped | None:
        """The next job of the queues in ``keys`` (see pop() above), or None when they are empty."""
        return self.calls.call(self._pop, keys, [Job.redis_job_namespace_prefix])

    def start(self, job: Job, intermediate_key: str) -> Execution:
        """Mark the job started by this worker; returns its execution (RQ's prepare_execution and
        prepare_job_execution, with the same state on the Python objects)."""
        worker = self.worker
        ttl = worker.get_heartbeat_ttl(job)
        execution = Execution(id=uuid4().hex, job_id=job.id, connection=worker.connection, worker_name=worker.name)
        started = now()
        worker._state = WorkerStatus.BUSY
        worker.current_job_working_time = 0
        worker.last_heartbeat = job.last_heartbeat = job.started_at = started
        job.worker_name = worker.name
        job._status = JobStatus.STARTED
        timestamp = current_timestamp()
        self.calls.call(
            self._start,
            [job.key, worker.key, StartedJobRegistry.key_template.format(job.origin), intermediate_key,
             execution.key, ExecutionRegistry.key_template.format(job.id)],
            [job.id, execution.id, worker.name, execution.created_at.timestamp(), utcformat(started), ttl,
             timestamp + ttl, timestamp + ttl + 60, job.serializer.dumps(job.meta)],
        )  # fmt: skip
        return execution

    def finish(
        self, job: Job, execution: Execution, result_ttl: int, pop_keys: list[str]
    ) -> tuple[list[bytes], Popped | None]:
        """Record the job's success (RQ's handle_job_success) and, with ``pop_keys``, pop the next job.

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
        dependents, popped = self.calls.call(
            self._finish,
            [job.key, worker.key, StartedJobRegistry.key_template.format(job.origin), execution.key,
             ExecutionRegistry.key_template.format(job.id), Result.get_key(job.id),
             FinishedJobRegistry.key_template.format(job.origin), job.dependents_key, *pop_keys],
            [job.id, execution.id, (job.ended_at - job.started_at).total_seconds(), utcformat(job.ended_at),
             result_ttl, current_timestamp() + result_ttl, Job.redis_job_namespace_prefix, *fields],
        )  # fmt: skip
        return dependents, popped
