-- lib/check.lua: check(), shared by enqueue.lua and enqueue_one.lua.
--
-- check(key, want) is nil when `key` holds nothing or a `want` (a Redis type name), else the error reply naming
-- the key and what it holds: Redis's own WRONGTYPE would not say which key.
local function check(key, want)
  local have = redis.call('TYPE', key)['ok']
  if have ~= 'none' and have ~= want then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. have .. ', not a ' .. want)
  end
end
