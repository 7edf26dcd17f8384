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

-- One machine-readable line for run.sh, after wrk's own report. Counts only: the latency
-- percentiles are taken from wrk's --latency text, as printed.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "wrk-summary requests=%.0f duration_us=%.0f bytes=%.0f connect=%.0f read=%.0f write=%.0f status=%.0f timeout=%.0f body_bytes=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout, #body))
end
