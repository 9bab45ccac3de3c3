-- include: lib/start.lua
-- start.lua: start a job the pop could not start (meta beyond the attempt count, or a serializer other than
-- JSON): see lib/start.lua.
local job = KEYS[1]           -- the job hash, rq:job:<id>
local wip = KEYS[2]           -- its queue's started registry, rq:wip:<q>
local intermediate = KEYS[3]  -- its queue's intermediate list
local id = ARGV[1]            -- the job id
local meta = ARGV[2]          -- the job's meta with its attempt counted, serialized by the worker
local s = start_args(3)
start(job, id, wip, intermediate, meta, s, s.execution_id, true)
