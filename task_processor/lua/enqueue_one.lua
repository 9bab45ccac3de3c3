-- include: lib/check.lua
-- include: lib/queued.lua
-- enqueue_one.lua: enqueue.lua for one job without options (no schedule, dependencies, ttl, uniqueness or option
-- fields): the call `enqueue` makes most. It writes what enqueue.lua writes for such a job, all of it or none, and
-- at most once, in four Redis calls instead of seven: each key's type is learned from the call that writes it
-- (pcall), in an order that leaves nothing written when one refuses, where enqueue.lua checks every key first.
--   KEYS: rq:queues, the queue's list, the job's hash
--   ARGV: the stamp (created_at and enqueued_at, and the receipt), the queue's name, 'L' or 'R' (the list's head
--         for at_front, else its tail), the job's id, data, description, timeout, retries_left and
--         retry_intervals ('' both without retries)
-- Returns {1} when it wrote, {0} when the receipt shows this call was already written (a resend: see enqueue.lua),
-- or the error reply naming a key that holds another type.
local queues, queue, key = KEYS[1], KEYS[2], KEYS[3]
local stamp, side, id = ARGV[1], ARGV[3], ARGV[4]

local function refused(reply)
  return type(reply) == 'table' and reply.err ~= nil
end

-- The receipt, read from the job's hash: also what shows the key holds a hash or nothing.
local receipt = redis.pcall('HGET', key, 'created_at')
if refused(receipt) then return check(key, 'hash') or receipt end
if receipt == stamp then
  redis.call('HSET', key, 'created_at', stamp)  -- written by the earlier call: rewritten as it is, for a WAIT
  return {0}
end
-- The push shows the queue key holds a list (or nothing); a refused push wrote nothing.
local pushed = redis.pcall(side == 'L' and 'LPUSH' or 'RPUSH', queue, id)
if refused(pushed) then return check(queue, 'list') or pushed end
-- rq:queues refused (it holds another type): the push is taken back (the same end, in the same atomic call).
local added = redis.pcall('SADD', queues, queue)
if refused(added) then
  redis.call(side == 'L' and 'LPOP' or 'RPOP', queue)
  return check(queues, 'set') or added
end
local job = {data = ARGV[5], description = ARGV[6], timeout = ARGV[7], retries_left = ARGV[8],
             retry_intervals = ARGV[9]}
redis.call('HSET', key, unpack(queued_fields('queued', stamp, ARGV[2], job)))
return {1}
