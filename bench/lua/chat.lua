-- wrk script: POSTs a chat completion to the target and prints one JSON line
-- ("BENCH_JSON {...}") with the run's figures.
-- Environment:
--   BENCH_BODY     file with the request body
--   BENCH_HEADERS  file with extra request headers, one "Name: value" a line
--   BENCH_TOKENS   optional file of tokens, one a line: each request sends the
--                  next as "Authorization: Bearer <token>" (spreads the load
--                  over many users, as a real gateway sees it)
--   BENCH_TOKEN_HEADER  header the tokens go in (default Authorization)
--   BENCH_LIMIT    optional: stop this thread after that many responses, and
--                  append a line to BENCH_DONE_FILE
local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local body = slurp(os.getenv("BENCH_BODY"))
local headers = { ["Content-Type"] = "application/json" }
local hfile = os.getenv("BENCH_HEADERS")
if hfile and hfile ~= "" then
  for line in io.lines(hfile) do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k] = v end
  end
end

local tfile = os.getenv("BENCH_TOKENS")
local theader = os.getenv("BENCH_TOKEN_HEADER") or "Authorization"
if not tfile or tfile == "" then
  -- One fixed request: let wrk build it once.
  wrk.method = "POST"
  wrk.body = body
  wrk.headers = headers
else
  local requests = {}
  local i = 0
  -- Built in init(), once wrk.init has set the Host header.
  function init(args)
    for tok in io.lines(tfile) do
      if tok ~= "" then
        local h = { Host = wrk.headers["Host"] }
        for k, v in pairs(headers) do h[k] = v end
        h[theader] = "Bearer " .. tok
        requests[#requests + 1] = wrk.format("POST", nil, h, body)
      end
    end
  end
  function request()
    i = i + 1
    if i > #requests then i = 1 end
    return requests[i]
  end
end

-- Defining response() makes wrk parse every body: only when a limit is set.
local limit = tonumber(os.getenv("BENCH_LIMIT") or "")
if limit then
  local seen, bad = 0, 0
  function response(status, headers, body)
    seen = seen + 1
    if status ~= 200 then
      bad = bad + 1
      if bad <= 3 then
        io.stderr:write("status " .. status .. ": " .. string.sub(body or "", 1, 300) .. "\n")
      end
    end
    if seen == limit then
      -- wrk's main thread sleeps for the whole -d duration: tell the driver,
      -- which ends the run with SIGINT (wrk then reports as usual).
      local f = io.open(os.getenv("BENCH_DONE_FILE") or "/dev/null", "a")
      if f then f:write("done\n"); f:close() end
      wrk.thread:stop()
    end
  end
end

function done(summary, latency, requests)
  local us = summary.duration
  local e = summary.errors
  local function p(q) return latency:percentile(q) / 1000.0 end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"seconds":%.6f,"rps":%.3f,' ..
    '"latency_ms":{"mean":%.4f,"stdev":%.4f,"p50":%.4f,"p90":%.4f,"p99":%.4f,"max":%.4f},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, us / 1e6, summary.requests / (us / 1e6),
    latency.mean / 1000.0, latency.stdev / 1000.0, p(50), p(90), p(99), latency.max / 1000.0,
    e.connect, e.read, e.write, e.status, e.timeout))
end
