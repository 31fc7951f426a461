-- Reads of keys <prefix>0 .. <prefix>(nkeys-1), cycling (prefill them first).
--   wrk ... -s read.lua URL -- <nkeys> <prefix> <raw|json>
-- raw:  GET /read_extended/K with Accept: application/octet-stream (raw bytes back)
-- json: GET /read/K (JSON answer)
-- Requests are built once in init, so the client spends no time formatting them.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local reqs, n, next_key

function init(args)
  local nkeys = tonumber(args[1] or "100000")
  local prefix = args[2] or "k"
  local mode = args[3] or "raw"
  local host = wrk.headers["Host"]
  reqs = {}
  for i = 0, nkeys - 1 do
    if mode == "raw" then
      reqs[i] = "GET /read_extended/" .. prefix .. i .. " HTTP/1.1\r\nHost: " .. host ..
                "\r\nAccept: application/octet-stream\r\n\r\n"
    else
      reqs[i] = "GET /read/" .. prefix .. i .. " HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
    end
  end
  next_key = key_cycle(nkeys)
end

function request()
  return reqs[next_key()]
end
