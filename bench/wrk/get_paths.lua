-- GETs of the request paths listed in a file, one per line, cycling.
--   wrk ... -s get_paths.lua URL -- <file>
-- e.g. /api/v1/data/<chunk_id> or /location/<key>. Requests are built once in init.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local reqs, next_key

function init(args)
  local host = wrk.headers["Host"]
  local n = 0
  reqs = {}
  for path in io.lines(args[1]) do
    reqs[n] = "GET " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
    n = n + 1
  end
  next_key = key_cycle(n)
end

function request()
  return reqs[next_key()]
end
