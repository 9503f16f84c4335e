-- wrk script: POST a capture session with an id no other request of the run uses.
-- Usage: wrk -s bench/wrk/capture.lua http://127.0.0.1:PORT  (RUN_TAG env: a per-run prefix)
local counter = 0
local threads = {}
local tag = os.getenv("RUN_TAG") or tostring(os.time())

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  prefix = tag .. "-" .. tostring(tid) .. "-"
end

local headers = {
  ["Content-Type"] = "application/json",
  ["Shopify-Shop-Domain"] = "bench-shop.myshopify.com",
  ["Shopify-Request-Id"] = "bench",
  ["Shopify-Api-Version"] = "2025-10",
}

request = function()
  counter = counter + 1
  local id = prefix .. counter
  local body = '{"id":"' .. id .. '","gid":"gid://shopify/CaptureSession/' .. id ..
    '","payment_id":"p' .. id .. '","amount":"10.00","currency":"EUR",' ..
    '"merchant_locale":"en","proposed_at":"2026-01-01T00:00:00Z","test":true}'
  return wrk.format("POST", "/capture_sessions", headers, body)
end

-- PAUSE_MS: each connection waits this long before its next request, which paces the run
-- near connections x 1000 / (PAUSE_MS + latency) requests per second.
local pause = tonumber(os.getenv("PAUSE_MS") or "")
if pause then
  delay = function() return pause end
end

-- wrk counts every answer in summary.requests and a 4xx or 5xx one in errors.status too: only
-- the others are requests served, so a run that was refused cannot pass for a fast one. (A
-- `response` hook would see each status, but it makes wrk parse every answer, and its
-- counts stay in each thread's own Lua state.)
done = function(summary, latency, requests)
  local out = {
    requests = summary.requests - summary.errors.status,
    seconds = summary.duration / 1e6,
    errors = summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.status + summary.errors.timeout,
    p50_ms = latency:percentile(50) / 1000,
    p99_ms = latency:percentile(99) / 1000,
    p999_ms = latency:percentile(99.9) / 1000,
    max_ms = latency.max / 1000,
  }
  local parts = {}
  for k, v in pairs(out) do table.insert(parts, string.format('"%s": %s', k, v)) end
  io.write("WRK_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
