-- wrk script of `make bench` phase 2 (scripts/bench/accept.go).
-- Arguments: SUBJECT_PREFIX BODY_TEXT. Each request POSTs a unique JSON
-- message; every thread counts the statuses it saw, and done() prints one
-- line, "BENCH-RESULT {json}", with the totals and the latency percentiles.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

function init(args)
   prefix = args[1] or "bench accept "
   text = args[2] or "bench"
   n = 0
   codes = {}
   headers = { ["Content-Type"] = "application/json" }
end

function request()
   n = n + 1
   local body = '{"assunto":"' .. prefix .. tid .. "-" .. n .. '","mensagem":"' .. text .. '"}'
   return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, body)
   codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
   local total = {}
   for _, t in ipairs(threads) do
      for k, v in pairs(t:get("codes")) do
         total[k] = (total[k] or 0) + v
      end
   end
   local parts = {}
   for k, v in pairs(total) do
      parts[#parts + 1] = string.format('"%d":%d', k, v)
   end
   local e = summary.errors
   io.write(string.format('BENCH-RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d},' ..
      '"codes":{%s}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      table.concat(parts, ",")))
end
