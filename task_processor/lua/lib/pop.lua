-- lib/pop.lua: pop(), shared by pop.lua and finish.lua; needs lib/start.lua before it.
--
-- pop(first, prefix, s, k, current) takes up to k next jobs of the worker's queues, from the highest-priority queue
-- that has any.
--   KEYS[first]   rq:suspended: while it exists (`rq suspend`), nothing is popped
--   KEYS[first + 1 ..], three a queue: the queue list (rq:queue:<q>), its intermediate list, its started registry
--   prefix        the job key prefix (rq:job:)
--   s             the start's arguments (lib/start.lua), or nil to leave every popped job for Python to start
--   k             how many jobs the worker takes at most (the worker sizes it to what it starts soon)
--   current       whether the first job taken becomes the worker's current job (false when the worker runs a held job
--                 first: a finish that names its next job and takes more behind it)
-- Returns 'suspended'; false when every queue is empty; else {queue key, hits}, one hit a job in queue order:
-- {job id, the job's hash as a flat list (false when its key is not a hash), 1 when the pop started the job, its
-- execution id}. Each job leaves its queue in the same atomic step that starts it or, when it is not started
-- here, moves it into its queue's intermediate list (as LMOVE would: the same step), so a popped job always exists
-- in Redis. A queued job whose meta holds no more than our attempt count (JSON, the common case) is
-- started here, its attempt counted; a batch ends at any other job, which is left for Python to start. Only the
-- first job of a batch becomes the worker's current job (with `current`); each later one does when the job before it
-- finishes.
-- A queue key that is not a list (foreign data) is passed over: it cannot stop the other queues.

-- The meta of a job's next attempt, when its meta holds nothing but the attempt count; else nil.
local function next_meta(meta)
  if not meta or meta == '{}' then return '{"attempt": 1}' end
  local attempt = string.match(meta, '^{"attempt": (%d+)}$')
  if attempt then return '{"attempt": ' .. (tonumber(attempt) + 1) .. '}' end
  return nil
end

-- The n-th execution id of a batch: the worker's fresh id for the first, the same id with n in its last four
-- hex digits for the others (unique within each job's executions, which is where RQ keys them).
local function execution_id(s, n)
  if n == 1 then return s.execution_id end
  return string.sub(s.execution_id, 1, -5) .. string.format('%04x', n)
end

-- A hit for the job `id` just taken off its queue: started when it can be, else moved into `intermediate`; and
-- whether a batch may go on. (A started job would leave the intermediate list again in the same call: it never
-- goes there, one call fewer a job than LMOVE and LREM.)
local function take(id, intermediate, wip, prefix, s, n, current)
  local job = prefix .. id
  if redis.call('TYPE', job)['ok'] ~= 'hash' then
    redis.call('RPUSH', intermediate, id)
    return {id, false, 0, false}, false
  end
  if s then
    local state = redis.call('HMGET', job, 'status', 'meta')
    local meta = state[1] == 'queued' and next_meta(state[2])
    if meta then
      local execution = execution_id(s, n)
      start(job, id, wip, nil, meta, s, execution, current and n == 1)
      return {id, redis.call('HGETALL', job), 1, execution}, true
    end
  end
  redis.call('RPUSH', intermediate, id)
  return {id, redis.call('HGETALL', job), 0, false}, false
end

local function pop(first, prefix, s, k, current)
  if redis.call('EXISTS', KEYS[first]) == 1 then return 'suspended' end
  for i = first + 1, #KEYS, 3 do
    local queue, intermediate, wip = KEYS[i], KEYS[i + 1], KEYS[i + 2]
    if redis.call('TYPE', queue)['ok'] == 'list' then
      local id = redis.call('LPOP', queue)
      if id then
        local hits = {}
        while id do
          local hit, more = take(id, intermediate, wip, prefix, s, #hits + 1, current)
          hits[#hits + 1] = hit
          if not more or #hits >= k then break end
          id = redis.call('LPOP', queue)
        end
        return {queue, hits}
      end
    end
  end
  return false
end
