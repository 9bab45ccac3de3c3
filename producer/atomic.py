"""Write a batch of queued jobs as one Lua script: all of them or none, and at most once.

The script writes what RQ's ``Queue.enqueue_many`` writes for each job of the batch (``producer.jobhash``): the
queue's name into the ``rq:queues`` set, the job's hash, and its id onto the queue's list (the tail, or the
head for ``at_front``). It takes only what varies per job; the fields every queued job shares are part of the
script, so a call carries a few arguments per job instead of a ~16-field HSET.

MULTI/EXEC does not roll back: when one command fails (a queue key holding foreign data), the others still
apply, leaving a task queued on one queue and an orphaned job hash for the other. The script first checks that
every key it will write holds the type RQ keeps there (or nothing), and writes only then.

redis-py resends a command whose connection broke before the reply came (a Redis restart). The script's
receipt makes that resend harmless: when the batch's first job hash already carries this batch's
``created_at``, the batch was applied and the script writes nothing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import redis
from rq import Queue
from rq.job import Job
from rq.utils import utcformat

from producer.jobhash import QUEUED, QueuedJob

PER_JOB = 8
"""Script arguments per job: its queue's index, then ``QueuedJob.varying_fields``."""

# KEYS[1]: rq:queues; KEYS[2 .. 1 + nq]: the batch's queue lists; KEYS[2 + nq ..]: one job hash per job.
# ARGV[1]: the batch's timestamp (created_at and enqueued_at of every job, and the receipt); ARGV[2]: nq;
# ARGV[3 .. 2 + nq]: the queues' names; then PER_JOB arguments per job: queue index (1-based), 'L' or 'R',
# id, data, description, timeout, retries_left and retry_intervals ('' and '' without retries).
# Returns 1 when it wrote, 0 when the receipt shows this batch was already written.
_WRITE_BATCH = f"""
local nq = tonumber(ARGV[2])
local function check(key, want)
  local have = redis.call('TYPE', key)['ok']
  if have ~= 'none' and have ~= want then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. have .. ', not a ' .. want)
  end
end
local problem = check(KEYS[1], 'set')
for i = 2, #KEYS do
  problem = problem or check(KEYS[i], i <= 1 + nq and 'list' or 'hash')
end
if problem then return problem end
if redis.call('HGET', KEYS[2 + nq], 'created_at') == ARGV[1] then return 0 end
for i = 2, 1 + nq do redis.call('SADD', KEYS[1], KEYS[i]) end
local pos = 3 + nq
for k = 2 + nq, #KEYS do
  local q = tonumber(ARGV[pos])
  local fields = {{'status', '{QUEUED}', 'created_at', ARGV[1], 'data', ARGV[pos + 3]}}
  if ARGV[pos + 6] ~= '' then
    for _, value in ipairs({{'retries_left', ARGV[pos + 6], 'retry_intervals', ARGV[pos + 7]}}) do
      fields[#fields + 1] = value
    end
  end
  for _, value in ipairs({{'origin', ARGV[2 + q], 'description', ARGV[pos + 4], 'enqueued_at', ARGV[1],
                          'timeout', ARGV[pos + 5]}}) do
    fields[#fields + 1] = value
  end
  redis.call('HSET', KEYS[k], unpack(fields))
  redis.call(ARGV[pos + 1] == 'L' and 'LPUSH' or 'RPUSH', KEYS[1 + q], ARGV[pos + 2])
  pos = pos + {PER_JOB}
end
return 1
"""


class BatchWriter:
    """One registered script per client; ``write`` sends a batch of checked jobs in one round trip."""

    def __init__(self, connection: redis.Redis) -> None:
        self._script = connection.register_script(_WRITE_BATCH)

    def write(self, jobs: Sequence[QueuedJob], stamp: datetime) -> bool:
        """True when this call wrote the batch, False when an earlier (resent) call already had."""
        queues: dict[str, int] = {}
        per_job: list[object] = []
        for job in jobs:
            index = queues.setdefault(job.queue, len(queues) + 1)
            per_job.append(index)
            per_job += job.varying_fields()
        keys = [Queue.redis_queues_keys, *(Queue.redis_queue_namespace_prefix + q for q in queues)]
        keys += [Job.redis_job_namespace_prefix + job.id for job in jobs]
        return bool(self._script(keys=keys, args=[utcformat(stamp), len(queues), *queues, *per_job]))
