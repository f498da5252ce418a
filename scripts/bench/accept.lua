-- wrk script of `make bench` phase 2 (scripts/bench/accept.go).
-- Arguments: SUBJECT_PREFIX BODY_TEXT CONTENT KEY_PREFIX.
--   CONTENT is "json" (what the page's script posts: application/json,
--   Accept: application/json) or "form" (what the page posts without
--   script: application/x-www-form-urlencoded, a browser's Accept).
--   KEY_PREFIX, when not empty, gives every request its own
--   Idempotency-Key, KEY_PREFIX-<thread>-<n>, quoted as the page sends
--   it (a structured-field string); empty: no Idempotency-Key.
-- Each request POSTs a unique message; every thread counts the statuses it
-- saw, and done() prints one line, "BENCH-RESULT {json}", with the totals
-- and the latency percentiles.
local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

-- urlencode encodes s as application/x-www-form-urlencoded does (HTML's
-- "application/x-www-form-urlencoded serializer": space as "+").
local function urlencode(s)
   s = s:gsub("[^%w%*%-%._ ]", function(c) return string.format("%%%02X", c:byte()) end)
   return (s:gsub(" ", "+"))
end

function init(args)
   prefix = args[1] or "bench accept "
   text = args[2] or "bench"
   content = args[3] or "json"
   keyPrefix = args[4] or ""
   n = 0
   codes = {}
   if content == "form" then
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded",
                  ["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8" }
      encodedText = urlencode(text)
   elseif content == "json" then
      headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
   else
      error("accept.lua: CONTENT must be json or form, got " .. content)
   end
end

function request()
   n = n + 1
   local subject = prefix .. tid .. "-" .. n
   local body
   if content == "form" then
      body = "assunto=" .. urlencode(subject) .. "&mensagem=" .. encodedText
   else
      body = '{"assunto":"' .. subject .. '","mensagem":"' .. text .. '"}'
   end
   if keyPrefix ~= "" then
      headers["Idempotency-Key"] = '"' .. keyPrefix .. "-" .. tid .. "-" .. n .. '"'
   end
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
