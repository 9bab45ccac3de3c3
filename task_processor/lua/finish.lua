-- include: lib/start.lua
-- include: lib/pop.lua
-- include: lib/dependents.lua
-- finish.lua: record a job's success exactly as RQ's Worker.handle_job_success does (its four round trips
-- here one), queue its dependents as RQ's Queue.enqueue_dependents does (lib/dependents.lua), and pop the next job
-- in the same step (lib/pop.lua), so a job in a busy queue costs one call (or names the next job, which an earlier
-- pop took, as the worker's current one). Atomic: the dependents queued here are
-- those that existed when the job became finished, and a dependent enqueued later sees the job finished (RQ's
-- enqueue watches the job's key) and is queued at once; no worker death between the finish and the dependents'
-- enqueue can leave them deferred.
local job = KEYS[1]           -- the job hash, rq:job:<id>
local worker = KEYS[2]        -- the worker's hash, rq:worker:<name>
local wip = KEYS[3]           -- the started registry, rq:wip:<q>
local execution = KEYS[4]     -- the execution hash, rq:execution:<id>:<execution id>
local executions = KEYS[5]    -- the job's execution registry, rq:executions:<id>
local results = KEYS[6]       -- the job's results stream, rq:results:<id>
local finished = KEYS[7]      -- the finished registry, rq:finished:<q>
local dependents = KEYS[8]    -- the job's dependents set, rq:job:<id>:dependents
local queues = KEYS[9]        -- the set of every queue's key, rq:queues
-- KEYS[10 ..], to pop the next job: as for lib/pop.lua (none when the worker takes no more jobs)
local job_id = ARGV[1]
local execution_id = ARGV[2]
local worked = ARGV[3]        -- seconds the job ran
local ended_at = ARGV[4]      -- ISO, as RQ writes dates
local ttl = ARGV[5]           -- the result ttl
local finished_score = ARGV[6]
local prefix = ARGV[7]        -- the job key prefix, rq:job:
local enqueued_at = ARGV[8]   -- ISO: when the dependents this finish queues are enqueued
local timeout = ARGV[9]       -- the timeout a queued dependent without one gets (RQ's default)
local queue_prefix = ARGV[10] -- rq:queue:
local deferred_prefix = ARGV[11] -- rq:deferred:
local returned_none = ARGV[12] == '1' -- the job returned None
local k = tonumber(ARGV[13])  -- how many jobs the pop takes at most
local next_id = ARGV[14]      -- '' or the job the worker runs next, taken by an earlier pop (lib/pop.lua)
local starts = tonumber(ARGV[15]) -- how many start arguments follow (9 or 0)
-- ARGV[16 ..]: the start's arguments (lib/start.lua), then the result's fields and values (Result.serialize)
local result_at = 16 + starts

-- Worker.set_current_job_id(None), set_state; Execution.delete: the execution hash, its started entry, its entry in
-- the job's execution registry
redis.call('HDEL', worker, 'current_job')
redis.call('HSET', worker, 'state', 'idle')
local gone = redis.call('DEL', execution) == 0
redis.call('ZREM', wip, job_id .. ':' .. execution_id)
redis.call('ZREM', executions, execution_id)
-- A finish that finds its execution gone and the job finished was sent again: the connection broke after Redis ran it
-- and before its reply came back, and redis-py sent it again (or the reaper had handed the job on and another worker
-- finished it first). The job is recorded already; counting it, its result and its dependents again would record it
-- twice.
local queued = {}
local recorded = gone and redis.call('HGET', job, 'status') == 'finished'
if not recorded then
  -- Worker.increment_successful_job_count, increment_total_working_time
  redis.call('HINCRBY', worker, 'successful_job_count', 1)
  redis.call('HINCRBYFLOAT', worker, 'total_working_time', worked)
  -- Job._handle_success: status, ended_at; Result.create; FinishedJobRegistry.add; Job.cleanup
  redis.call('HSET', job, 'status', 'finished', 'ended_at', ended_at)
  -- A None result with no earlier results is not written: RQ reads a job without results as one that returned None
  -- (Job.return_value, rq-dashboard), and a one-entry stream takes most of a finished job's memory. A job with
  -- earlier results (failed attempts) gets its entry, or its latest result would be the last failure.
  if not returned_none or redis.call('EXISTS', results) == 1 then
    redis.call('XADD', results, 'MAXLEN', '~', 10, '*', unpack(ARGV, result_at))
    redis.call('EXPIRE', results, ttl)
  end
  redis.call('ZADD', finished, finished_score, job_id)
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', dependents, ttl)
  -- Queue.enqueue_dependents
  queued = enqueue_dependents(job_id, dependents, {prefix = prefix, queue_prefix = queue_prefix,
    deferred_prefix = deferred_prefix, queues = queues, now = enqueued_at, timeout = timeout})
end
-- The worker's next job, already started by the pop that took it, becomes its current job now (Worker.set_state,
-- set_current_job_id; Job.prepare_for_execution's started_at, when it really starts).
if next_id ~= '' then
  redis.call('HSET', worker, 'state', 'busy', 'current_job', next_id, 'current_job_working_time', 0)
  if redis.call('EXISTS', prefix .. next_id) == 1 then
    redis.call('HSET', prefix .. next_id, 'started_at', enqueued_at, 'last_heartbeat', enqueued_at)
  end
end
-- The pop behind a named next job takes the jobs after it: none of them is the worker's current job yet.
if #KEYS > 9 then
  local s = starts > 0 and start_args(16) or nil
  local before = recorded and s and taken_before(10, prefix, s)
  return {queued, before or pop(10, prefix, s, k, next_id == '')}
end
return {queued, false}
