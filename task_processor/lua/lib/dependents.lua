-- lib/dependents.lua: enqueue_dependents(), for finish.lua.
--
-- enqueue_dependents(parent, dependents, d) queues the dependents of a job that has just finished, writing what
-- RQ's Queue.enqueue_dependents writes, in the same atomic step as the finish: a worker that dies after the
-- finish cannot leave them deferred.
--   parent      the finished job's id
--   dependents  its dependents set, rq:job:<id>:dependents
--   d           {prefix: rq:job:, queue_prefix: rq:queue:, deferred_prefix: rq:deferred:, queues: rq:queues,
--                now: the enqueue time as RQ writes dates, timeout: RQ's default job timeout}
-- A dependent is queued when it is deferred and each of its other dependencies is finished, or failed when it
-- allows dependency failures (Job.dependencies_are_met; a dependency whose hash is gone counts as met, as in RQ).
-- It leaves its origin queue's deferred registry for that queue (its front with enqueue_at_front), its hash
-- written as Queue._enqueue_async_job writes it, and the queue is registered in rq:queues. Then, as in RQ, the
-- dependents set goes when every member was queued, else loses those that were. A dependent no longer deferred
-- (canceled, or queued by an earlier run of the same finish) is left alone, and so is one whose keys hold data of
-- another type (RQ's own call would fail on it): it stays where it is. Returns the ids it queued.

-- Whether key holds nothing or data of type kind.
local function holds(key, kind)
  local found = redis.call('TYPE', key)['ok']
  return found == 'none' or found == kind
end

-- A flag as Job.restore reads it (bool(int(value)) when set).
local function flag(value)
  return value ~= false and value ~= '' and tonumber(value) ~= 0
end

-- A job's dependencies set (Job.dependencies_key): rq:job::<id>:dependencies, with RQ's two colons.
local function dependencies_key(prefix, id)
  return prefix .. ':' .. id .. ':dependencies'
end

-- Job.dependencies_are_met(parent_job=<the finished job>): the job's other dependencies are all met.
local function others_met(id, parent, prefix, allow_failures)
  local ids = redis.pcall('SMEMBERS', dependencies_key(prefix, id))
  if ids.err then return false end
  for _, id in ipairs(ids) do
    if id ~= parent then
      local status = redis.pcall('HGET', prefix .. id, 'status')
      if type(status) == 'table' then return false end
      if status and status ~= '' and status ~= 'finished' and not (allow_failures and status == 'failed') then
        return false
      end
    end
  end
  return true
end

local function enqueue_dependents(parent, dependents, d)
  local queued = {}
  if redis.call('TYPE', dependents)['ok'] ~= 'set' or not holds(d.queues, 'set') then return queued end
  local ids = redis.call('SMEMBERS', dependents)
  for _, id in ipairs(ids) do
    local key = d.prefix .. id
    if redis.call('TYPE', key)['ok'] == 'hash' then
      local job = redis.call('HMGET', key, 'status', 'origin', 'allow_dependency_failures', 'enqueue_at_front',
                             'timeout', 'ttl')
      local origin = job[2]
      if job[1] == 'deferred' and origin and origin ~= '' then
        local queue, deferred = d.queue_prefix .. origin, d.deferred_prefix .. origin
        if holds(queue, 'list') and holds(deferred, 'zset') and others_met(id, parent, d.prefix, flag(job[3])) then
          -- DeferredJobRegistry.remove
          redis.call('ZREM', deferred, id)
          -- Queue._prepare_for_queue, _persist_job (the other fields it saves are those the hash holds)
          redis.call('HSET', key, 'status', 'queued', 'enqueued_at', d.now)
          if not job[5] or job[5] == '' then redis.call('HSET', key, 'timeout', d.timeout) end
          -- Job.cleanup(ttl=job.ttl)
          local ttl = tonumber(job[6])
          if ttl and ttl > 0 then
            redis.call('EXPIRE', key, ttl)
            redis.call('EXPIRE', key .. ':dependents', ttl)
            redis.call('EXPIRE', dependencies_key(d.prefix, id), ttl)
          end
          -- Queue.push_job_id; the queue registered as Queue.enqueue_job does
          redis.call(flag(job[4]) and 'LPUSH' or 'RPUSH', queue, id)
          redis.call('SADD', d.queues, queue)
          queued[#queued + 1] = id
        end
      end
    end
  end
  -- Only delete dependents_key if all dependents have been enqueued (Queue.enqueue_dependents)
  if #queued == #ids then
    redis.call('DEL', dependents)
  else
    for _, id in ipairs(queued) do redis.call('SREM', dependents, id) end
  end
  return queued
end
