-- lib/pop.lua: pop(), shared by pop.lua and finish.lua; needs lib/start.lua before it.
--
-- pop(first, prefix, s) takes the next job of the worker's queues, highest priority first.
--   KEYS[first]   rq:suspended: while it exists (`rq suspend`), nothing is popped
--   KEYS[first + 1 ..], three a queue: the queue list (rq:queue:<q>), its intermediate list, its started registry
--   prefix        the job key prefix (rq:job:)
--   s             the start's arguments (lib/start.lua), or nil to leave every popped job for Python to start
-- Returns 'suspended'; false when every queue is empty; else {queue key, job id, the job's hash as a flat list
-- (false when its key is not a hash), 1 when the pop started the job}. The job moves into its queue's
-- intermediate list in the same step, so a popped job always exists in Redis. A queued job whose meta holds no
-- more than our attempt count (JSON, the common case) is started here, its attempt counted; any other job is
-- left for Python to start. A queue key that is not a list (foreign data) is passed over: it cannot stop the
-- other queues.

-- The meta of a job's next attempt, when its meta holds nothing but the attempt count; else nil.
local function next_meta(meta)
  if not meta or meta == '{}' then return '{"attempt": 1}' end
  local attempt = string.match(meta, '^{"attempt": (%d+)}$')
  if attempt then return '{"attempt": ' .. (tonumber(attempt) + 1) .. '}' end
  return nil
end

local function pop(first, prefix, s)
  if redis.call('EXISTS', KEYS[first]) == 1 then return 'suspended' end
  for i = first + 1, #KEYS, 3 do
    local queue, intermediate, wip = KEYS[i], KEYS[i + 1], KEYS[i + 2]
    if redis.call('TYPE', queue)['ok'] == 'list' then
      local id = redis.call('LMOVE', queue, intermediate, 'LEFT', 'RIGHT')
      if id then
        local job = prefix .. id
        if redis.call('TYPE', job)['ok'] ~= 'hash' then return {queue, id, false, 0} end
        local started = 0
        if s then
          local state = redis.call('HMGET', job, 'status', 'meta')
          local meta = state[1] == 'queued' and next_meta(state[2])
          if meta then
            start(job, id, wip, intermediate, meta, s)
            started = 1
          end
        end
        return {queue, id, redis.call('HGETALL', job), started}
      end
    end
  end
  return false
end
