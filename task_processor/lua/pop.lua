-- include: lib/start.lua
-- include: lib/pop.lua
-- pop.lua: a worker's pop when no finish popped for it (its first jobs, or after an empty queue).
-- See lib/pop.lua for what it returns, and why it must be atomic.
-- KEYS: rq:suspended, then three a queue (queue list, intermediate list, started registry), highest priority first.
local prefix = ARGV[1]                -- the job key prefix, rq:job:
local k = tonumber(ARGV[2])           -- how many jobs to take at most
local starts = tonumber(ARGV[3]) > 0  -- whether the start's arguments follow (9 of them), so a pop may start jobs
local again = ARGV[4 + tonumber(ARGV[3])] == '1'  -- sent again: its first send's reply was lost, and it may have run
local s = starts and start_args(4) or nil
local before = again and s and taken_before(1, prefix, s)
return before or pop(1, prefix, s, k, true)
