-- lib/start.lua: start(), shared by pop.lua, start.lua and finish.lua (each lists it on an include line).
--
-- start(job, id, wip, intermediate, meta, s, execution_id, current) marks a job started by a worker, writing exactly what RQ's
-- Worker.prepare_execution, Worker.prepare_job_execution and Job.perform write, in one atomic step, so that a
-- job is never popped without being started (or started without being out of its intermediate list).
--   job, id       the job's hash key (rq:job:<id>) and its id
--   wip           the started registry of its queue (rq:wip:<q>)
--   intermediate  the intermediate list it was popped into (rq:queue:<q>:intermediate), or nil for a job the same
--                 atomic call took straight off its queue (lib/pop.lua)
--   meta          the job's new meta (JSON), with our attempt count
--   s             the start's own arguments, read by start_args(): chosen by the worker before the job is known
--   execution_id  the execution's id (s.execution_id for a single start; see lib/pop.lua for a batch)
--   current       whether the job becomes the worker's current job (false for the later jobs of a batch, which
--                 become current when the finish of the job before them says so: finish.lua)
-- Returns the fields it wrote to the job's hash, flat.
-- Keys written besides those: the execution hash rq:execution:<id>:<execution id>, the job's execution
-- registry rq:executions:<id>, and the worker's hash (s.worker).

-- A moment as RQ writes dates (rq.utils.utcformat: %Y-%m-%dT%H:%M:%S.%fZ, UTC), from UNIX seconds and microseconds.
-- The date of the day count is Howard Hinnant's civil_from_days.
local function rq_time(sec, usec)
  local days = math.floor(sec / 86400)
  local rest = sec - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', year, month, day, math.floor(rest / 3600),
                       math.floor(rest % 3600 / 60), rest % 60, usec)
end

-- The nine start arguments from ARGV[at ..]: the order in which the worker sends them. A worker that sends its
-- pop ahead of the moment it runs (behind a blocking wait) marks it `at_run`: the four times are then Redis's
-- clock's now, as the worker would have taken them (RQ's current_timestamp() for the two scores: whole seconds),
-- unless Redis refuses TIME (an ACL of the user's own that does not allow it), when the worker's stay.
local function start_args(at)
  local s = {
    worker = ARGV[at],               -- the worker's hash key, rq:worker:<name>
    name = ARGV[at + 1],             -- the worker's name
    execution_id = ARGV[at + 2],
    created = ARGV[at + 3],          -- the execution's created_at, a UNIX timestamp
    iso = ARGV[at + 4],              -- the same moment as RQ writes dates
    ttl = ARGV[at + 5],              -- the heartbeat ttl: the keys lapse when the worker dies
    started_score = ARGV[at + 6],    -- the started registry's score (when the entry lapses)
    executions_score = ARGV[at + 7], -- the job's execution registry score
  }
  local now = ARGV[at + 8] == '1' and redis.pcall('TIME')  -- at_run
  if type(now) == 'table' and not now.err then
    local sec, usec = tonumber(now[1]), tonumber(now[2])
    s.created = string.format('%d.%06d', sec, usec)
    s.iso = rq_time(sec, usec)
    s.started_score = sec + tonumber(s.ttl)
    s.executions_score = sec + tonumber(s.ttl) + 60
  end
  return s
end

local function start(job, id, wip, intermediate, meta, s, execution_id, current)
  local execution = 'rq:execution:' .. id .. ':' .. execution_id
  local executions = 'rq:executions:' .. id
  -- Execution.create: the execution hash, the job's execution registry, the started registry
  redis.call('HSET', execution, 'id', execution_id, 'created_at', s.created, 'last_heartbeat', s.created,
             'worker_name', s.name)
  redis.call('EXPIRE', execution, s.ttl)
  redis.call('ZADD', executions, s.executions_score, execution_id)
  redis.call('EXPIRE', executions, s.ttl + 60)
  redis.call('ZADD', wip, s.started_score, id .. ':' .. execution_id)
  -- Worker.set_state, set_current_job_id, set_current_job_working_time, heartbeat
  if current then
    redis.call('HSET', s.worker, 'state', 'busy', 'current_job', id, 'current_job_working_time', 0,
               'last_heartbeat', s.iso)
    redis.call('EXPIRE', s.worker, s.ttl)
  end
  -- Job.prepare_for_execution (and our attempt count in meta), Job.perform's PERSIST
  local written = {'meta', meta, 'last_heartbeat', s.iso, 'status', 'started', 'started_at', s.iso,
                   'worker_name', s.name}
  redis.call('HSET', job, unpack(written))
  redis.call('PERSIST', job)
  -- prepare_job_execution: the job leaves the intermediate list it was popped into
  if intermediate then redis.call('LREM', intermediate, 1, id) end
  return written
end
