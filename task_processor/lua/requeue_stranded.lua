-- requeue_stranded.lua: put a job popped into an intermediate list by a worker that died before starting it back
-- at the front of its queue. The seen entry is the claim: a reaper that read it before another one moved the
-- job (and a worker popped it again) finds it gone and leaves the job alone, so it is not put back while it runs.
local intermediate = KEYS[1]  -- the queue's intermediate list, rq:queue:<q>:intermediate
local queue = KEYS[2]         -- the queue list
local seen = KEYS[3]          -- task-processor:intermediate-seen:<q>, job id -> when first seen stranded
local job_id = ARGV[1]
-- Returns 1 when this call moved the job.
if redis.call('HDEL', seen, job_id) == 0 then return 0 end
if redis.call('LREM', intermediate, 1, job_id) == 0 then return 0 end
redis.call('LPUSH', queue, job_id)
return 1
