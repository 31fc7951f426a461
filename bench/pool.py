#!/usr/bin/env python3
"""Data pool (/api/v1/data) creates and infos, for bench/run.sh.

  pool.py PORT SOURCE_DIR COPY_DIR

PORT: a gswarm server started with --source-root SOURCE_DIR. COPY_DIR: a folder
on the same file system as the server's --disk-path (run.sh passes the folder
that holds it), where the `cp` reference writes its copy.

Cases, each printed as one line "<name> key=value ...", with the reference it is
compared with measured in the same loop (rounds or batches alternate between the
two, so that changes in background load hit both alike):

  pool.create_file.disk  POST /api/v1/data {"source": FILE, "device": "disk"}: a
                         chunk from a file of random bytes; answers once the chunk
                         is written, fsynced and renamed into place.
                         Reference: `cp FILE COPY_DIR/pool-copy.bin`, then fsync of
                         the copy and of COPY_DIR.
  pool.create_file.dram  the same with "device": "dram".
                         Reference: `cat FILE > /dev/null`.
      Bps=<size * rounds / total time> median_Bps=... peer_Bps=... peer_median_Bps=...
      size=... rounds=... peer=...
      One untimed round of each first; the chunk (the copy) is deleted after each
      round, untimed. FILE is read once before the case, so that gswarm and the
      reference both read it from the page cache.
  pool.small_create      POST /api/v1/data?device=dram&type=input&format=bytes with a
                         100-byte application/octet-stream body, COUNT times on one
                         keep-alive connection. Reference: KV raw writes,
                         POST /write_extended?key=K&format=bytes with the same body.
  pool.small_info        GET /api/v1/data/{chunk_id} of those chunks. Reference:
                         GET /location/K of those keys (the KV metadata answer).
      rps=<ops / total time> peer_rps=... ops=... size=... peer=...
      One Python client thread: its own time per request is part of every number.

Environment: BENCH_POOL_SIZE (bytes of the file, default 1 GiB), BENCH_POOL_ROUNDS
(timed rounds per device, default 3), BENCH_POOL_DEVICES (default "disk,dram"),
BENCH_POOL_SMALL (small creates and infos, default 10000; 0 skips them).
Files and chunks it made are removed at the end, also on failure.
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

SIZE = int(os.environ.get("BENCH_POOL_SIZE", str(1 << 30)))
ROUNDS = int(os.environ.get("BENCH_POOL_ROUNDS", "3"))
DEVICES = [d for d in os.environ.get("BENCH_POOL_DEVICES", "disk,dram").split(",") if d]
SMALL = int(os.environ.get("BENCH_POOL_SMALL", "10000"))
SMALL_SIZE = 100
BATCH = 1000  # small ops alternate between gswarm's pool and the KV reference every BATCH
PIECE = 64 << 20


def log(text):
    print(text, file=sys.stderr, flush=True)


def call(port, method, path, body=None, content_type="application/json"):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                 headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=1200) as answer:
        return json.loads(answer.read())


def delete_chunk(port, chunk_id):
    try:
        call(port, "DELETE", f"/api/v1/data/{chunk_id}")
    except urllib.error.HTTPError:
        pass


def make_file(path, size):
    """size random bytes in path, fsynced, so that no dirty page of it is left to
    be written out while something else is timed."""
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(PIECE, left)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def read_through(path):
    """Reads the file once so that it sits in the page cache (untimed)."""
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 << 20)
        while f.readinto(buf):
            pass


def fsync_path(path, flags=os.O_RDONLY):
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_file_case(port, device, source, copy_dir):
    copy = os.path.join(copy_dir, "pool-copy.bin")
    if device == "disk":
        peer = "cp_fsync"

        def reference():
            subprocess.run(["cp", source, copy], check=True)
            fsync_path(copy)
            fsync_path(copy_dir, os.O_RDONLY | os.O_DIRECTORY)

        def undo_reference():
            os.remove(copy)
    else:
        peer = "cat"

        def reference():
            subprocess.run(f"cat '{source}' > /dev/null", shell=True, check=True)

        def undo_reference():
            pass

    body = json.dumps({"source": source, "device": device, "type": "input",
                       "format": "tensor"}).encode()
    read_through(source)
    times, peer_times = [], []
    try:
        # One untimed round of each first: a fresh server faults in the memory of a
        # chunk's first block of a size (bench/README.md, "Cold 256 MiB blocks").
        for _ in range(ROUNDS + 1):
            start = time.monotonic()
            answer = call(port, "POST", "/api/v1/data", body)
            times.append(time.monotonic() - start)
            assert answer.get("status") == "success" and answer.get("size") == SIZE, answer
            delete_chunk(port, answer["chunk_id"])

            start = time.monotonic()
            reference()
            peer_times.append(time.monotonic() - start)
            undo_reference()
    finally:
        if os.path.exists(copy):
            os.remove(copy)
    times, peer_times = times[1:], peer_times[1:]
    bps, peer_bps = SIZE * len(times) / sum(times), SIZE * len(peer_times) / sum(peer_times)
    print(f"pool.create_file.{device} Bps={bps:.0f} median_Bps={SIZE / statistics.median(times):.0f} "
          f"peer_Bps={peer_bps:.0f} peer_median_Bps={SIZE / statistics.median(peer_times):.0f} "
          f"size={SIZE} rounds={len(times)} peer={peer}", flush=True)
    log(f"pool create from a {SIZE >> 20} MiB file to {device}: {bps / 1e6:.0f} MB/s; "
        f"{peer}: {peer_bps / 1e6:.0f} MB/s")


class Client:
    """One keep-alive connection; every answer is read whole and checked."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method, path, body=None, content_type=None):
        headers = {"Content-Type": content_type} if content_type else {}
        self.conn.request(method, path, body=body, headers=headers)
        answer = self.conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{method} {path}: {answer.status} {data[:200]!r}")
        return data

    def close(self):
        self.conn.close()


def small_cases(port):
    client = Client(port)
    value = bytes(range(SMALL_SIZE))
    chunks, keys = [], []
    octet = "application/octet-stream"
    pool_path = "/api/v1/data?device=dram&type=input&format=bytes"

    def create(n, times):
        start = time.monotonic()
        for _ in range(n):
            answer = json.loads(client.request("POST", pool_path, value, octet))
            chunks.append(answer["chunk_id"])
        times.append(time.monotonic() - start)

    def write(n, times):
        start = time.monotonic()
        for _ in range(n):
            key = f"pool_kv_{len(keys)}"
            json.loads(client.request("POST", f"/write_extended?key={key}&format=bytes", value, octet))
            keys.append(key)
        times.append(time.monotonic() - start)

    def info(ids, times):
        start = time.monotonic()
        for chunk_id in ids:
            json.loads(client.request("GET", f"/api/v1/data/{chunk_id}"))
        times.append(time.monotonic() - start)

    def location(names, times):
        start = time.monotonic()
        for key in names:
            json.loads(client.request("GET", f"/location/{key}"))
        times.append(time.monotonic() - start)

    try:
        warm = min(100, SMALL)
        create(warm, [])
        write(warm, [])
        info(chunks, [])
        location(keys, [])
        for chunk_id in chunks:
            client.request("DELETE", f"/api/v1/data/{chunk_id}")
        for key in keys:
            client.request("DELETE", f"/release/{key}")
        chunks.clear()
        keys.clear()

        c_times, w_times = [], []
        done = 0
        while done < SMALL:
            n = min(BATCH, SMALL - done)
            create(n, c_times)
            write(n, w_times)
            done += n
        i_times, l_times = [], []
        for first in range(0, SMALL, BATCH):
            info(chunks[first:first + BATCH], i_times)
            location(keys[first:first + BATCH], l_times)
    finally:
        try:
            for chunk_id in chunks:
                client.request("DELETE", f"/api/v1/data/{chunk_id}")
            for key in keys:
                client.request("DELETE", f"/release/{key}")
        except Exception as e:  # keep the first error; run.sh stops the server anyway
            log(f"pool: cleanup failed: {e}")
        client.close()

    for name, peer, times, peer_times in (
            ("pool.small_create", "kv_write_extended", c_times, w_times),
            ("pool.small_info", "kv_location", i_times, l_times)):
        rps, peer_rps = SMALL / sum(times), SMALL / sum(peer_times)
        print(f"{name} rps={rps:.1f} peer_rps={peer_rps:.1f} ops={SMALL} size={SMALL_SIZE} "
              f"peer={peer}", flush=True)
        log(f"{name}: {rps:,.0f} ops/s; {peer}: {peer_rps:,.0f} ops/s (one Python client)")


def main():
    port, source_dir, copy_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    source = os.path.join(os.path.realpath(source_dir), "pool-source.bin")
    copy_dir = os.path.realpath(copy_dir)
    try:
        if DEVICES and ROUNDS > 0:
            log(f"pool: writing a {SIZE >> 20} MiB file of random bytes to {source}")
            make_file(source, SIZE)
            for device in DEVICES:
                create_file_case(port, device, source, copy_dir)
    finally:
        if os.path.exists(source):
            os.remove(source)
    if SMALL > 0:
        small_cases(port)


if __name__ == "__main__":
    main()
