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
-- started here, its attempt counted; a batch ends at any other job, which is left for Python to start, and the jobs
-- taken with it that come after it go back to the queue's head (a batch leaves its queue in one LPOP). Only the
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

-- Whether a pcall's reply is Redis refusing a key that holds another type; any other error reply is raised as it is.
local function wrong_type(reply)
  if type(reply) ~= 'table' or not reply.err then return false end
  if string.sub(reply.err, 1, 9) == 'WRONGTYPE' then return true end
  error(reply)
end

-- The hash `fields` (flat, as HGETALL reads it) with the flat field list `written` written over it (as HSET writes).
local function overwritten(fields, written)
  local at = {}
  for i = 1, #fields, 2 do at[fields[i]] = i + 1 end
  for i = 1, #written, 2 do
    local value_at = at[written[i]]
    if value_at then
      fields[value_at] = written[i + 1]
    else
      fields[#fields + 1] = written[i]
      fields[#fields + 1] = written[i + 1]
    end
  end
  return fields
end

-- A hit for the job `id` just taken off its queue: started when it can be, else moved into `intermediate`; and
-- whether a batch may go on. (A started job would leave the intermediate list again in the same call: it never
-- goes there, one call fewer a job than LMOVE and LREM.) One read of the hash serves three ends: it shows the key
-- holds a hash (a refused read: another type; an empty one: no key), it holds the status and meta the start
-- depends on, and with the start's writes over it, it is the job as the worker gets it.
local function take(id, intermediate, wip, prefix, s, n, current)
  local job = prefix .. id
  local fields = redis.pcall('HGETALL', job)
  if wrong_type(fields) or #fields == 0 then
    redis.call('RPUSH', intermediate, id)
    return {id, false, 0, false}, false
  end
  if s then
    local status, meta
    for i = 1, #fields, 2 do
      local field = fields[i]
      if field == 'status' then status = fields[i + 1] elseif field == 'meta' then meta = fields[i + 1] end
    end
    meta = status == 'queued' and next_meta(meta)
    if meta then
      local execution = execution_id(s, n)
      local written = start(job, id, wip, nil, meta, s, execution, current and n == 1)
      return {id, overwritten(fields, written), 1, execution}, true
    end
  end
  redis.call('RPUSH', intermediate, id)
  return {id, fields, 0, false}, false
end

-- Up to k jobs off `queue` in one call (LPOP with a count), each taken in order; those after a job that ends the
-- batch go back to the queue's head, as they were, in the same atomic call. False when the queue is empty or
-- holds another type than a list.
local function take_from(queue, intermediate, wip, prefix, s, k, current)
  local ids = redis.pcall('LPOP', queue, k)
  if not ids or wrong_type(ids) then return false end
  local hits = {}
  for n = 1, #ids do
    local hit, more = take(ids[n], intermediate, wip, prefix, s, n, current)
    hits[n] = hit
    if not more and n < #ids then
      local back = {}
      for i = #ids, n + 1, -1 do back[#back + 1] = ids[i] end
      redis.call('LPUSH', queue, unpack(back))
      break
    end
  end
  return hits
end

local function pop(first, prefix, s, k, current)
  if redis.call('EXISTS', KEYS[first]) == 1 then return 'suspended' end
  if not s then k = 1 end  -- without the start's arguments, every job ends a batch
  for i = first + 1, #KEYS, 3 do
    local hits = take_from(KEYS[i], KEYS[i + 1], KEYS[i + 2], prefix, s, k, current)
    if hits then return {KEYS[i], hits} end
  end
  return false
end

-- taken_before(first, prefix, s): what pop(first, prefix, s, ...) returned when this same call ran before, its reply
-- lost with the connection and the call sent again by redis-py: the jobs it started, found in the started registries
-- by the execution ids that s gives each place of a batch, in that order (a second pop would take other jobs and
-- leave those started for nobody until the reaper saw them). False when that call took none.
local function taken_before(first, prefix, s)
  local base = string.sub(s.execution_id, 1, -5)
  for i = first + 1, #KEYS, 3 do
    local by_place = {}
    local cursor = '0'
    repeat
      local page = redis.pcall('ZSCAN', KEYS[i + 2], cursor, 'MATCH', '*:' .. base .. '????', 'COUNT', 1000)
      if wrong_type(page) then break end  -- a registry key of foreign data holds none of them
      cursor = page[1]
      for m = 1, #page[2], 2 do
        local member = page[2][m]
        local execution = string.sub(member, -#s.execution_id)
        local n = execution == s.execution_id and 1 or tonumber(string.sub(execution, -4), 16)
        if n then by_place[n] = string.sub(member, 1, -#s.execution_id - 2) end
      end
    until cursor == '0'
    local hits = {}
    while by_place[#hits + 1] do
      local n = #hits + 1
      local id = by_place[n]
      hits[n] = {id, redis.call('HGETALL', prefix .. id), 1, execution_id(s, n)}
    end
    if #hits > 0 then return {KEYS[i], hits} end
  end
  return false
end
