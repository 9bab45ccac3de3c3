-- enqueue.lua: write a batch of queued jobs, all of them or none, and at most once.
--
-- For each job it writes what RQ's Queue.enqueue_many writes: the queue's name into rq:queues, the job's hash,
-- and its id onto the queue's list (the tail, or the head for at_front). MULTI/EXEC does not roll back, so a
-- queue key holding foreign data would leave half a batch: every key is checked first, and written only then.
-- redis-py resends a command whose connection broke before the reply came: when the batch's first job hash
-- already carries this batch's created_at (the receipt), the batch was applied and nothing is written again.
local queues = KEYS[1]          -- rq:queues, the set of every queue's key
local nq = tonumber(ARGV[2])    -- KEYS[2 .. 1 + nq]: the batch's queue lists; KEYS[2 + nq ..]: one job hash a job
local stamp = ARGV[1]           -- the batch's timestamp: created_at and enqueued_at of every job, and the receipt
local per_job = tonumber(ARGV[3 + nq])  -- arguments a job, after the queues' names ARGV[3 .. 2 + nq]:
-- queue index (1-based), 'L' or 'R', id, data, description, timeout, retries_left, retry_intervals
-- (the last two '' without retries).
-- Returns 1 when it wrote, 0 when the receipt shows this batch was already written.

local function check(key, want)
  local have = redis.call('TYPE', key)['ok']
  if have ~= 'none' and have ~= want then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. have .. ', not a ' .. want)
  end
end
local problem = check(queues, 'set')
for i = 2, #KEYS do
  problem = problem or check(KEYS[i], i <= 1 + nq and 'list' or 'hash')
end
if problem then return problem end
if redis.call('HGET', KEYS[2 + nq], 'created_at') == stamp then return 0 end
for i = 2, 1 + nq do redis.call('SADD', queues, KEYS[i]) end
local at = 4 + nq
for k = 2 + nq, #KEYS do
  local q = tonumber(ARGV[at])
  local side, id, data, description = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4]
  local timeout, retries_left, retry_intervals = ARGV[at + 5], ARGV[at + 6], ARGV[at + 7]
  local fields = {'status', 'queued', 'created_at', stamp, 'data', data}
  if retries_left ~= '' then
    fields[#fields + 1] = 'retries_left'
    fields[#fields + 1] = retries_left
    fields[#fields + 1] = 'retry_intervals'
    fields[#fields + 1] = retry_intervals
  end
  for _, value in ipairs({'origin', ARGV[2 + q], 'description', description, 'enqueued_at', stamp,
                          'timeout', timeout}) do
    fields[#fields + 1] = value
  end
  redis.call('HSET', KEYS[k], unpack(fields))
  redis.call(side == 'L' and 'LPUSH' or 'RPUSH', KEYS[1 + q], id)
  at = at + per_job
end
return 1
