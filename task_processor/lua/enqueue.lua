-- include: lib/check.lua
-- include: lib/queued.lua
-- enqueue.lua: write a batch of jobs, all of them or none, and at most once.
--
-- For each job it writes what RQ's enqueue writes: the queue's name into rq:queues, the job's hash, and then
--   'Q': its id onto the queue's list (the tail, or the head for at_front), as Queue.enqueue_call does;
--   'S': its id into the queue's scheduled registry, scored by when it comes due (Queue.enqueue_at);
--   'D': as 'Q' when every dependency has finished, else deferred as Queue.setup_dependencies does: status
--        deferred, its id in the queue's deferred registry, in each dependency's dependents set, and each
--        dependency in its own dependencies set.
-- A job's ttl expires its hash (and its dependents and dependencies sets) as Job.cleanup does.
-- MULTI/EXEC does not roll back, so a key holding foreign data would leave half a batch: every key is checked
-- first (type, a unique id already live, a dependency that does not exist), and written only then.
-- redis-py resends a command whose connection broke before the reply came: when the batch's first job hash
-- already carries this batch's created_at (the receipt), the batch was applied and nothing else is written again.
local queues = KEYS[1]          -- rq:queues, the set of every queue's key
local stamp = ARGV[1]           -- the batch's timestamp: created_at and enqueued_at of every job, and the receipt
local nq = tonumber(ARGV[2])    -- queues in the batch; their names are ARGV[3 .. 2 + nq]
-- KEYS[2 .. 1 + nq]: their lists; then as many scheduled registries, then as many deferred registries;
-- KEYS[2 + 3 * nq ..]: one job hash a job, in the order of the jobs' arguments.
local prefix = ARGV[3 + nq]     -- the job key prefix, rq:job:
local now = ARGV[4 + nq]        -- unix seconds: the deferred registry's score
-- Then a job's arguments: queue index (1-based), 'L' or 'R', id, data, description, timeout, retries_left,
-- retry_intervals (the last two '' without retries), placement ('Q', 'S' or 'D'), score ('S'), ttl (0: none),
-- unique (1 or 0), the number of dependencies and their ids, the number of option fields and their names and
-- values (producer.jobhash.QueuedJob.varying_fields).
-- Returns {1, ids deferred...} when it wrote, {0} when the receipt shows this batch was already written, or an
-- error: 'DUPLICATE <id>' (unique, and a job with that id is live) or 'UNKNOWN_DEPENDENCY <id> <dependency>'.
-- The receipt and a live duplicate rewrite one field of a job hash as it is: nothing changes, but a WAIT after the call
-- covers the earlier write of that job (WAIT waits for the latest write of its own connection, and this is one).

local first = 2 + 3 * nq
local jobs = {}
local at = 5 + nq
for k = first, #KEYS do
  local job = {key = KEYS[k], q = tonumber(ARGV[at]), side = ARGV[at + 1], id = ARGV[at + 2], data = ARGV[at + 3],
               description = ARGV[at + 4], timeout = ARGV[at + 5], retries_left = ARGV[at + 6],
               retry_intervals = ARGV[at + 7], mode = ARGV[at + 8], score = ARGV[at + 9],
               ttl = tonumber(ARGV[at + 10]), unique = ARGV[at + 11] == '1', deps = {}, fields = {}}
  local ndeps = tonumber(ARGV[at + 12])
  for i = 1, ndeps do job.deps[i] = ARGV[at + 12 + i] end
  at = at + 13 + ndeps
  local nfields = tonumber(ARGV[at])
  for i = 1, 2 * nfields do job.fields[i] = ARGV[at + i] end
  at = at + 1 + 2 * nfields
  jobs[#jobs + 1] = job
end

local problem = check(queues, 'set')
for i = 2, #KEYS do  -- a queue's registries only when a job of the batch goes into them
  if i <= 1 + nq then problem = problem or check(KEYS[i], 'list')
  elseif i >= first then problem = problem or check(KEYS[i], 'hash') end
end
for _, job in ipairs(jobs) do
  if job.mode == 'S' then problem = problem or check(KEYS[1 + nq + job.q], 'zset')
  elseif job.mode == 'D' then problem = problem or check(KEYS[1 + 2 * nq + job.q], 'zset') end
end
if problem then return problem end
if #jobs > 0 and redis.call('HGET', jobs[1].key, 'created_at') == stamp then
  redis.call('HSET', jobs[1].key, 'created_at', stamp)  -- written by the earlier call, on a connection now gone
  return {0}
end
local earlier = {}
for _, job in ipairs(jobs) do
  if job.unique and (earlier[job.id] or redis.call('EXISTS', job.key) == 1) then
    if not earlier[job.id] then  -- live already: rewrite a field as it is, for a WAIT to cover that job (receipt's why)
      local status = redis.call('HGET', job.key, 'status')
      if status then redis.call('HSET', job.key, 'status', status) end
    end
    return redis.error_reply('DUPLICATE ' .. job.id)
  end
  for _, dep in ipairs(job.deps) do
    problem = check(prefix .. dep, 'hash') or check(prefix .. dep .. ':dependents', 'set')
      or check(prefix .. ':' .. job.id .. ':dependencies', 'set')
    if problem then return problem end
    if not earlier[dep] and redis.call('EXISTS', prefix .. dep) == 0 then
      return redis.error_reply('UNKNOWN_DEPENDENCY ' .. job.id .. ' ' .. dep)
    end
  end
  earlier[job.id] = true
end

for i = 2, 1 + nq do redis.call('SADD', queues, KEYS[i]) end
local deferred = {1}
for _, job in ipairs(jobs) do
  local waits = false
  if job.mode == 'D' then
    for _, dep in ipairs(job.deps) do
      if redis.call('HGET', prefix .. dep, 'status') ~= 'finished' then waits = true end
    end
  end
  local status = 'queued'
  if job.mode == 'S' then status = 'scheduled' elseif waits then status = 'deferred' end
  local fields = queued_fields(status, stamp, ARGV[2 + job.q], job)
  for _, value in ipairs(job.fields) do fields[#fields + 1] = value end
  redis.call('HSET', job.key, unpack(fields))
  if status == 'scheduled' then
    redis.call('ZADD', KEYS[1 + nq + job.q], job.score, job.id)
  elseif status == 'deferred' then
    redis.call('ZADD', KEYS[1 + 2 * nq + job.q], now, job.id)
    for _, dep in ipairs(job.deps) do
      redis.call('SADD', prefix .. dep .. ':dependents', job.id)
      redis.call('SADD', prefix .. ':' .. job.id .. ':dependencies', dep)
    end
    deferred[#deferred + 1] = job.id
  else
    redis.call(job.side == 'L' and 'LPUSH' or 'RPUSH', KEYS[1 + job.q], job.id)
  end
  if job.ttl > 0 then
    redis.call('EXPIRE', job.key, job.ttl)
    redis.call('EXPIRE', prefix .. job.id .. ':dependents', job.ttl)
    redis.call('EXPIRE', prefix .. ':' .. job.id .. ':dependencies', job.ttl)
  end
end
return deferred
