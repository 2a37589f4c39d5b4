-- wrk script: checks every response (status 200 and the expected body) and prints the
-- counts, so a wrong answer fails the run as surely as a socket error. With WRK_POST set,
-- each request is a POST to /echo and the answer must be the body sent; so it is with the
-- argument `post` (`wrk -s check.lua URL -- post`: how `exuvia vm --wrk-script` passes it).
local post = os.getenv("WRK_POST")
local payload = "exuvia says hello through the upgrade"
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok, bad, last_bad = 0, 0, ""
  post = post or args[1] == "post"
  if post then
    wrk.method = "POST"
    wrk.path = "/echo"
    wrk.body = payload
    wrk.headers["Content-Type"] = "text/plain"
  end
end

function response(status, headers, body)
  local good
  if post then
    good = status == 200 and body == payload
  else
    good = status == 200 and string.sub(body, 1, 21) == "hello from generation"
  end
  if good then
    ok = ok + 1
  else
    bad = bad + 1
    last_bad = status .. " " .. string.sub(body or "", 1, 80)
  end
end

function done(summary, latency, requests)
  local o, b, example = 0, 0, ""
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    b = b + t:get("bad")
    if t:get("bad") > 0 then example = t:get("last_bad") end
  end
  io.write(string.format("checked responses: %d ok, %d bad %s\n", o, b, example))
end
