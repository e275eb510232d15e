-- wrk script: POST one fixed body, with any number of extra request headers; print one JSON
-- summary line at the end (same fields as the yardstick's post.lua).
--
-- Environment:
--   WRK_BODY_FILE     path of the request body (required)
--   WRK_CONTENT_TYPE  Content-Type (default application/octet-stream)
--   WRK_HEADERS_FILE  optional file of extra headers, one "Name: value" per line. Used for
--                     SigV4: Authorization, X-Amz-Date, X-Amz-Content-SHA256 and Host (which
--                     must be the host:port that was signed; wrk 4.1 sends only the host part
--                     by default, so the signer writes Host explicitly).
-- The same signed request is replayed for the whole run; re-sign (rewrite the file) before
-- every wrk start so the signature stays inside the server's clock-skew window.
-- No response() callback on purpose: defining one makes wrk hand every response to Lua,
-- which costs client CPU. wrk counts any status >= 400 in errors.status.
local path = assert(os.getenv("WRK_BODY_FILE"), "WRK_BODY_FILE is not set")
local f = assert(io.open(path, "rb"), "cannot open WRK_BODY_FILE")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/octet-stream"

local hfile = os.getenv("WRK_HEADERS_FILE")
if hfile and hfile ~= "" then
  local h = assert(io.open(hfile, "rb"), "cannot open WRK_HEADERS_FILE")
  for line in h:lines() do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k and k ~= "" then wrk.headers[k] = v end
  end
  h:close()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"lat_mean_us":%.1f,"lat_stdev_us":%.1f,' ..
    '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.stdev, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
