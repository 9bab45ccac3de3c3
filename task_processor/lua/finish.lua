-- include: lib/start.lua
-- include: lib/pop.lua
-- finish.lua: record a job's success exactly as RQ's Worker.handle_job_success does (its four round trips
-- here one), and pop the next job in the same step (lib/pop.lua), so a job in a busy queue costs one call.
-- Atomic, so that the dependents read here are those that existed when the job became finished: a dependent
-- enqueued later sees the job finished (RQ's enqueue watches the job's key) and is queued at once.
local job = KEYS[1]           -- the job hash, rq:job:<id>
local worker = KEYS[2]        -- the worker's hash, rq:worker:<name>
local wip = KEYS[3]           -- the started registry, rq:wip:<q>
local execution = KEYS[4]     -- the execution hash, rq:execution:<id>:<execution id>
local executions = KEYS[5]    -- the job's execution registry, rq:executions:<id>
local results = KEYS[6]       -- the job's results stream, rq:results:<id>
local finished = KEYS[7]      -- the finished registry, rq:finished:<q>
local dependents = KEYS[8]    -- the job's dependents set, rq:job:<id>:dependents
-- KEYS[9 ..], to pop the next job: as for lib/pop.lua (none when the worker takes no more jobs)
local job_id = ARGV[1]
local execution_id = ARGV[2]
local worked = ARGV[3]        -- seconds the job ran
local ended_at = ARGV[4]      -- ISO, as RQ writes dates
local ttl = ARGV[5]           -- the result ttl
local finished_score = ARGV[6]
local prefix = ARGV[7]        -- the job key prefix, rq:job:
local starts = tonumber(ARGV[8])  -- how many start arguments follow (8 or 0)
-- ARGV[9 ..]: the start's arguments (lib/start.lua), then the result's fields and values (Result.serialize)
local result_at = 9 + starts

-- Worker.increment_successful_job_count, increment_total_working_time, set_current_job_id(None), set_state
redis.call('HINCRBY', worker, 'successful_job_count', 1)
redis.call('HINCRBYFLOAT', worker, 'total_working_time', worked)
redis.call('HDEL', worker, 'current_job')
redis.call('HSET', worker, 'state', 'idle')
-- Execution.delete: the execution hash, its started entry, its entry in the job's execution registry
redis.call('DEL', execution)
redis.call('ZREM', wip, job_id .. ':' .. execution_id)
redis.call('ZREM', executions, execution_id)
-- Job._handle_success: status, ended_at; Result.create; FinishedJobRegistry.add; Job.cleanup
redis.call('HSET', job, 'status', 'finished', 'ended_at', ended_at)
redis.call('XADD', results, 'MAXLEN', '~', 10, '*', unpack(ARGV, result_at))
redis.call('EXPIRE', results, ttl)
redis.call('ZADD', finished, finished_score, job_id)
redis.call('EXPIRE', job, ttl)
redis.call('EXPIRE', dependents, ttl)
local waiting = redis.call('SMEMBERS', dependents)
if #KEYS > 8 then return {waiting, pop(9, prefix, starts > 0 and start_args(9) or nil)} end
return {waiting, false}
