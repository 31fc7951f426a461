-- Writes of a fixed-size value to keys <prefix>0 .. <prefix>(nkeys-1), cycling.
--   wrk ... -s write.lua URL -- <size> <nkeys> <prefix> <raw|json>
-- raw:  POST /write_extended?key=K, Content-Type: application/octet-stream, <size> bytes
-- json: POST /write, {"key": K, "value": "<size characters>"}
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local size, mode, prefix, next_key, host, payload

function init(args)
  size = tonumber(args[1] or "100")
  local nkeys = tonumber(args[2] or "100000")
  prefix = args[3] or "k"
  mode = args[4] or "raw"
  next_key = key_cycle(nkeys)
  host = wrk.headers["Host"]
  payload = string.rep("x", size)
end

function request()
  local key = prefix .. next_key()
  if mode == "raw" then
    return "POST /write_extended?key=" .. key .. " HTTP/1.1\r\nHost: " .. host ..
           "\r\nContent-Type: application/octet-stream\r\nContent-Length: " .. size ..
           "\r\n\r\n" .. payload
  end
  local body = '{"key":"' .. key .. '","value":"' .. payload .. '"}'
  return "POST /write HTTP/1.1\r\nHost: " .. host ..
         "\r\nContent-Type: application/json\r\nContent-Length: " .. #body ..
         "\r\n\r\n" .. body
end
