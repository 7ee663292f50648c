-- wrk script for bench/run.py: POSTs /call/web bodies like the browser SDK's, spread over many
-- userIds, and prints one JSON line (BENCH_RESULT ...) with the numbers run.py reads.
--
--   BENCH_ASSISTANT_TYPE=bench-coach BENCH_USERS=100000 wrk -s bench/post_call.lua http://127.0.0.1:PORT

local assistant_type = os.getenv("BENCH_ASSISTANT_TYPE") or "bench-coach"
local users = tonumber(os.getenv("BENCH_USERS") or "100000")
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  sent = 0
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  sent = sent + 1
  -- Different threads walk different userIds: thread i starts at i * 7919.
  local user = (id * 7919 + sent) % users
  local body = '{"userId": "bench-' .. user .. '", "assistantType": "' .. assistant_type .. '"}'
  return wrk.format("POST", "/call/web", headers, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local non2xx_total = 0
  for _, thread in ipairs(threads) do
    non2xx_total = non2xx_total + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "status_errors": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, non2xx_total, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0), latency.max, latency.mean))
end
