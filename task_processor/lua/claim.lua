-- include: lib/start.lua
-- include: lib/pop.lua
-- claim.lua: start the job an idle worker's blocking pop (BLMOVE) just moved into its queue's intermediate list,
-- and return it as pop.lua does: one call from an idle worker's pop to the job's run. See lib/pop.lua.
-- KEYS: rq:suspended, the queue list, its intermediate list, its started registry.
local id = ARGV[1]                    -- the job id the blocking pop moved
local prefix = ARGV[2]                -- the job key prefix, rq:job:
local starts = tonumber(ARGV[3]) > 0  -- whether the start's arguments follow (8 of them)
return claim(KEYS[1], KEYS[2], KEYS[3], KEYS[4], id, prefix, starts and start_args(4) or nil)
