-- lib/queued.lua: queued_fields(), shared by enqueue.lua and enqueue_one.lua.
--
-- queued_fields(status, stamp, origin, job) is the flat field list of a job hash as RQ's enqueue writes it for a
-- job of that status ('queued', 'scheduled' or 'deferred'): status, created_at, data, the retries (when
-- job.retries_left is not ''), origin, description, timeout, and enqueued_at for a queued job. `job` holds data,
-- description, timeout, retries_left and retry_intervals; the option fields, if any, go after these.
local function queued_fields(status, stamp, origin, job)
  local fields = {'status', status, 'created_at', stamp, 'data', job.data}
  if job.retries_left ~= '' then
    fields[#fields + 1] = 'retries_left'
    fields[#fields + 1] = job.retries_left
    fields[#fields + 1] = 'retry_intervals'
    fields[#fields + 1] = job.retry_intervals
  end
  fields[#fields + 1] = 'origin'
  fields[#fields + 1] = origin
  fields[#fields + 1] = 'description'
  fields[#fields + 1] = job.description
  fields[#fields + 1] = 'timeout'
  fields[#fields + 1] = job.timeout
  if status == 'queued' then
    fields[#fields + 1] = 'enqueued_at'
    fields[#fields + 1] = stamp
  end
  return fields
end
