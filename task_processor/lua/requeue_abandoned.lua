-- requeue_abandoned.lua: put a job whose worker died (its started entry lapsed) back at the front of its queue,
-- counting the abandon; past the maximum the job stays out, for the reaper to fail it (a poison task).
-- Atomic, so that of any number of reapers (idle workers, the autoscaler) exactly one moves each job.
local wip = KEYS[1]        -- the started registry, rq:wip:<q>
local queue = KEYS[2]      -- the queue list, rq:queue:<q>
local job = KEYS[3]        -- the job hash, rq:job:<id>
local execution = KEYS[4]  -- the dead execution's hash
local member = ARGV[1]     -- the lapsed entry, <job id>:<execution id>
local job_id = ARGV[2]
local max_abandons = tonumber(ARGV[3])
-- Returns -1 when another reaper got there first, -2 when the job no longer exists, else the abandon count.
if redis.call('ZREM', wip, member) == 0 then return -1 end
redis.call('DEL', execution)
if redis.call('EXISTS', job) == 0 then return -2 end
local count = redis.call('HINCRBY', job, 'abandoned', 1)
if count <= max_abandons then
  redis.call('HSET', job, 'status', 'queued')
  redis.call('LPUSH', queue, job_id)
end
return count
