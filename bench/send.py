#!/usr/bin/env python3
"""Node-to-node sends between two local gswarm servers, for bench/run.sh.

  send.py SOURCE_PORT TARGET_PORT

For each size (256 MiB, 2 GiB) and location (dram, disk): writes the value to
the source once, then for 1 and 4 streams sends it to the same location on the
target ROUNDS times (the target's copy is released before each round, so every
round is a full send). Prints one line per case:

  send.<location>.<size>.<streams> Bps=<total bytes / total time> median_Bps=... rounds=N

Time is the wall time of POST /send_extended, which answers once the target has
the value (for disk: written, fsynced and renamed into place).
"""
import json
import os
import statistics
import sys
import time
import urllib.request

SIZES = [256 << 20, 2 << 30]
ROUNDS = {256 << 20: 5, 2 << 30: 3}
LOCATIONS = os.environ.get("BENCH_SEND_LOCATIONS", "dram,disk").split(",")


def call(port, method, path, body=None, content_type="application/json"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                 headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=1200) as answer:
        return json.loads(answer.read())


def release(port, key):
    try:
        call(port, "DELETE", f"/release/{key}")
    except urllib.error.HTTPError:
        pass


def main():
    source, target = sys.argv[1], sys.argv[2]
    piece = os.urandom(16 << 20)
    for size in SIZES:
        value = piece * (size // len(piece))
        for location in LOCATIONS:
            call(source, "POST", f"/write_extended?key=bench_send&location={location}", value,
                 "application/octet-stream")
            for streams in (1, 4):
                times = []
                # One untimed round first: the target's first block of a size is
                # fresh memory it has to fault in (bench/README.md, "Cold blocks").
                for _ in range(ROUNDS[size] + 1):
                    release(target, "bench_send")
                    body = json.dumps({"key": "bench_send", "streams": streams,
                                       "target": f"127.0.0.1:{target}:{location}"}).encode()
                    start = time.monotonic()
                    answer = call(source, "POST", "/send_extended", body)
                    times.append(time.monotonic() - start)
                    assert answer["size"] == size and answer["streams"] == streams, answer
                times = times[1:]
                print(f"send.{location}.{size}.{streams} Bps={size * len(times) / sum(times):.0f} "
                      f"median_Bps={size / statistics.median(times):.0f} rounds={len(times)}",
                      flush=True)
                print(f"send {location} {size >> 20} MiB, {streams} streams: "
                      f"{size * len(times) / sum(times) / 1e6:.0f} MB/s", file=sys.stderr)
            release(target, "bench_send")
        release(source, "bench_send")
        del value


if __name__ == "__main__":
    main()
