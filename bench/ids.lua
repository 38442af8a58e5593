-- ids.lua: wrk script asking for signup URLs by id, in one of two modes.
-- Usage: wrk -s bench/ids.lua URL -- hot [count] [path template]
--        wrk -s bench/ids.lua URL -- cold prefix [path template]
--   hot            cycles through a fixed set of ids that are already cached,
--                  hot-0000 .. hot-<count-1> (count: default 1000), each thread
--                  from its own offset
--   cold           every request asks for an id never asked before,
--                  <prefix>-<thread>-<counter>; prefix is unique per run, so
--                  that ids never repeat across runs
--   path template  request path with %s for the id (default /customers/%s/signup)
-- done() prints one machine-readable BENCH line (latencies in microseconds).

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

-- init replaces request with the mode's own; this one only tells wrk that
-- requests are made by the script.
function request()
  error("ids.lua: init did not run")
end

local modes = {}

function modes.hot(tid, count, tmpl)
  local n = tonumber(count) or 1000
  local reqs = {}
  for k = 0, n - 1 do
    reqs[k] = wrk.format("GET", string.format(tmpl, string.format("hot-%04d", k)))
  end
  local i = tid * 7919 % n
  return function()
    local r = reqs[i]
    i = (i + 1) % n
    return r
  end
end

function modes.cold(tid, prefix, tmpl)
  prefix = (prefix or "cold") .. "-" .. tid .. "-"
  local count = 0
  return function()
    count = count + 1
    return wrk.format("GET", string.format(tmpl, prefix .. count))
  end
end

function init(args)
  local mode = modes[args[1]]
  if not mode then
    error("ids.lua: the first script argument must be hot or cold, not " .. tostring(args[1]))
  end
  request = mode(tonumber(tid) or 0, args[2], args[3] or "/customers/%s/signup")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d p999_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.requests / summary.duration * 1e6,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
