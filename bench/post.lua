-- wrk script for bench/run.sh: every request is POST /log with the one sample record as its body.
--
-- The body is read from the file named by BENCH_BODY_FILE (run.sh sets it to
-- bench/sample-request.json, 512 bytes). Every wrk thread runs this file in its own Lua state,
-- so each reads the file once at start, never during the run.

local path = os.getenv("BENCH_BODY_FILE")
if path == nil or path == "" then
  error("BENCH_BODY_FILE is not set; run this through bench/run.sh")
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

-- Every request carries its own sequence (a 9-digit number, so the body stays 512 bytes): the
-- same record sent twice would be a retry, which the logger answers without writing it again.
local prefix, suffix = body:match('^(.-"sequence":)%d+(.*)$')
if prefix == nil then
  error("the sample record has no \"sequence\"")
end
-- run.sh gives each wrk run its own range; threads of one run split it.
local first = tonumber(os.getenv("BENCH_FIRST_SEQUENCE") or "") or 200000000
local threads = 0
local next_sequence = first

setup = function(thread)
  thread:set("thread_first", first + threads * 1000000)
  threads = threads + 1
end

init = function(args)
  next_sequence = thread_first or first
end

request = function()
  next_sequence = next_sequence + 1
  return wrk.format(nil, nil, nil, prefix .. next_sequence .. suffix)
end

-- One machine-readable line for run.sh, after wrk's own report. Counts only: the latency
-- percentiles are taken from wrk's --latency text, as printed.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "wrk-summary requests=%.0f duration_us=%.0f bytes=%.0f connect=%.0f read=%.0f write=%.0f status=%.0f timeout=%.0f body_bytes=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, #body))
end
