-- hot.lua: wrk script cycling through a fixed set of ids that are already cached.
-- Usage: wrk -s bench/hot.lua URL -- [count] [path template]
--   count          number of ids, named hot-0000 .. hot-<count-1> (default 1000)
--   path template  request path with %s for the id (default /customers/%s/signup)
-- done() prints one machine-readable BENCH line (latencies in microseconds).

local threads = 0
function setup(thread)
  thread:set("offset", threads * 7919)
  threads = threads + 1
end

local reqs, n, i
function init(args)
  n = tonumber(args[1]) or 1000
  local tmpl = args[2] or "/customers/%s/signup"
  reqs = {}
  for k = 0, n - 1 do
    reqs[k] = wrk.format("GET", string.format(tmpl, string.format("hot-%04d", k)))
  end
  i = (tonumber(offset) or 0) % n
end

function request()
  local r = reqs[i]
  i = (i + 1) % n
  return r
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
