-- set_aside.lua: move data of the wrong type out of a key RQ writes, keeping it for whoever put it there.
-- Atomic, so that only the data seen holding the wrong type is moved, never a key RQ has just written.
local key = KEYS[1]     -- one of RQ's keys
local aside = KEYS[2]   -- task-processor:foreign:<key>
local seen = ARGV[1]    -- the type it was seen holding
-- Returns 1 when it moved the key.
if redis.call('TYPE', key)['ok'] ~= seen then return 0 end
redis.call('RENAME', key, aside)
return 1
