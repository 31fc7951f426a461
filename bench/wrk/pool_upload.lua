-- Data pool uploads: each request creates a new chunk of <size> bytes.
--   wrk ... -s pool_upload.lua URL -- <size> [device]
-- POST /api/v1/data?device=D&type=input&format=bytes, Content-Type:
-- application/octet-stream. The request never changes, so it is built once.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local req

function init(args)
  local size = tonumber(args[1] or "100")
  local device = args[2] or "dram"
  req = "POST /api/v1/data?device=" .. device .. "&type=input&format=bytes HTTP/1.1\r\nHost: " ..
        wrk.headers["Host"] .. "\r\nContent-Type: application/octet-stream\r\nContent-Length: " ..
        size .. "\r\n\r\n" .. string.rep("x", size)
end

function request()
  return req
end
