-- cold.lua: wrk script where every request asks for an id never asked before.
-- Usage: wrk -s bench/cold.lua URL -- prefix [path template]
--   prefix         unique per run, so that ids never repeat across runs
--   path template  request path with %s for the id (default /customers/%s/signup)
-- Ids are <prefix>-<thread>-<counter>. done() prints one machine-readable BENCH
-- line (latencies in microseconds).

local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

local prefix, tmpl, count
function init(args)
  prefix = (args[1] or "cold") .. "-" .. tostring(tid or 0) .. "-"
  tmpl = args[2] or "/customers/%s/signup"
  count = 0
end

function request()
  count = count + 1
  return wrk.format("GET", string.format(tmpl, prefix .. count))
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
