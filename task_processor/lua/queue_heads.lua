-- queue_heads.lua: when the job at the head of each queue was enqueued, in one round trip (its age, for status).
-- KEYS: the queue lists, rq:queue:<q>. ARGV[1]: the job key prefix, rq:job:.
-- Returns one value a queue: the head job's enqueued_at, or '' (empty, foreign data, or no such job).
local prefix = ARGV[1]
local out = {}
for i, queue in ipairs(KEYS) do
  local value = ''
  if redis.call('TYPE', queue)['ok'] == 'list' then
    local id = redis.call('LINDEX', queue, 0)
    if id and redis.call('TYPE', prefix .. id)['ok'] == 'hash' then
      value = redis.call('HGET', prefix .. id, 'enqueued_at') or ''
    end
  end
  out[i] = value
end
return out
