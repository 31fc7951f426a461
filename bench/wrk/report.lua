-- Shared by the wrk scripts in this folder: thread numbering for key offsets and a
-- one-line, machine-readable summary that bench/run.sh parses.

local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

-- Key i of "<prefix>0" .. "<prefix>(nkeys-1)"; each thread starts at its own offset
-- and walks the range in order, so the keyspace stays bounded.
function key_cycle(nkeys)
  local i = ((thread_id or 0) * 7919) % nkeys
  return function()
    i = i + 1
    if i >= nkeys then i = 0 end
    return i
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "WRK_RESULT rps=%.1f requests=%d seconds=%.2f non2xx=%d err_connect=%d err_read=%d " ..
    "err_write=%d err_timeout=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
    summary.requests / seconds, summary.requests, seconds, e.status, e.connect, e.read,
    e.write, e.timeout, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
