#!/usr/bin/env python3
"""The Python package against its peers, for bench/run.sh.

  python.py GSWARM_PORT REDIS_PORT

Both servers run on this machine. gswarm.data comes from the build tree
(run.sh sets PYTHONPATH) or the installed package. Each case prints one line
"<name> key=value ...", gswarm's number and its reference's measured in the same
loop (batches alternate between the two, so background load hits both alike):

  python.small_write  DataServer.write(key, 100 random bytes) from one Python
                      thread, COUNT keys. Reference: redis-py (Debian's
                      python3-redis) r.set(key, value) on the same thread.
  python.small_read   DataServer.read(key) of those keys. Reference: r.get(key).
      rps=... peer_rps=... ops=... size=100 peer=redis-py
  python.array_write  DataServer.write(key, numpy array of 256 MiB): the array's
                      memory goes to the socket as it is (an npy header in front).
  python.array_read   DataServer.read(key) of it over HTTP: a numpy array over the
                      received bytes.
      Bps=<bytes * rounds / total> median_Bps=... size=... rounds=...
      Reference: iperf3 with one stream (run.sh measures it; report.py divides).
  python.zero_copy_read  DataServer.read(key, zero_copy=True) of that array: the
                      server lends the value's memory (a read pointer), mapped
                      read-only. Reference: DataServer.read(key) over HTTP, the
                      line above, in the same rounds.
      seconds=<median per read> peer_seconds=<median HTTP read> touch_seconds=
      <median to sum the mapped array, which faults its pages in> rounds=...

Environment: BENCH_PY_SMALL (small ops, default 20000), BENCH_PY_ROUNDS (timed
rounds of the large cases, default 5).
"""
import os
import statistics
import sys
import time

import numpy as np
import redis

from gswarm.data import DataServer

SMALL = int(os.environ.get("BENCH_PY_SMALL", "20000"))
ROUNDS = int(os.environ.get("BENCH_PY_ROUNDS", "5"))
BATCH = 1000
SIZE = 100
LARGE = 256 << 20


def log(text):
    print(text, file=sys.stderr, flush=True)


def alternate(count, ours, theirs):
    """Runs ours(i) and theirs(i) for i < count, a batch of each in turn;
    returns the seconds each took in all."""
    spent = [0.0, 0.0]
    for start in range(0, count, BATCH):
        batch = range(start, min(start + BATCH, count))
        for side, op in enumerate((ours, theirs)):
            began = time.perf_counter()
            for i in batch:
                op(i)
            spent[side] += time.perf_counter() - began
    return spent


def small(client, r):
    value = os.urandom(SIZE)
    keys = [f"pybench:{i}" for i in range(SMALL)]
    # Untimed warm-up of both: connections open, code paths hot.
    alternate(min(SMALL, BATCH), lambda i: client.write(keys[i], value),
              lambda i: r.set(keys[i], value))
    w, rw = alternate(SMALL, lambda i: client.write(keys[i], value),
                      lambda i: r.set(keys[i], value))
    print(f"python.small_write rps={SMALL / w:.0f} peer_rps={SMALL / rw:.0f} ops={SMALL} "
          f"size={SIZE} peer=redis-py")

    def check(got):
        if got != value:
            sys.exit("python bench: a read did not return the written value")

    rd, rr = alternate(SMALL, lambda i: check(client.read(keys[i])),
                       lambda i: check(r.get(keys[i])))
    print(f"python.small_read rps={SMALL / rd:.0f} peer_rps={SMALL / rr:.0f} ops={SMALL} "
          f"size={SIZE} peer=redis-py")
    for start in range(0, SMALL, BATCH):
        r.delete(*keys[start:start + BATCH])
        for key in keys[start:start + BATCH]:
            client.release(key)


def timed(rounds, op):
    """Seconds of each of `rounds` calls of op()."""
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        op()
        times.append(time.perf_counter() - began)
    return times


def large(client):
    array = np.random.default_rng(0).integers(0, 255, LARGE, dtype=np.uint8)
    expected = int(array.sum(dtype=np.uint64))
    # Each case in a loop of its own: a value that was lent zero-copy is never
    # reused for the next write (doc/read-pointers.md), so mixing the cases would
    # make every write fill fresh memory.
    client.write("pybench:large", array)  # untimed first round of each
    writes = timed(ROUNDS, lambda: client.write("pybench:large", array))
    client.read("pybench:large")
    reads = timed(ROUNDS, lambda: client.read("pybench:large"))
    back = client.read("pybench:large")
    if int(back.sum(dtype=np.uint64)) != expected:
        sys.exit("python bench: the array read back differs")
    del back
    mapped, touches = [], []
    for _ in range(ROUNDS):
        began = time.perf_counter()
        view = client.read("pybench:large", zero_copy=True)
        mapped.append(time.perf_counter() - began)
        began = time.perf_counter()
        total = int(view.sum(dtype=np.uint64))
        touches.append(time.perf_counter() - began)
        if total != expected:
            sys.exit("python bench: the mapped array differs")
        del view
    for name, times in (("python.array_write", writes), ("python.array_read", reads)):
        print(f"{name} Bps={LARGE * ROUNDS / sum(times):.0f} "
              f"median_Bps={LARGE / statistics.median(times):.0f} size={LARGE} rounds={ROUNDS}")
    print(f"python.zero_copy_read seconds={statistics.median(mapped):.6f} "
          f"peer_seconds={statistics.median(reads):.6f} "
          f"touch_seconds={statistics.median(touches):.6f} size={LARGE} rounds={ROUNDS}")
    client.release("pybench:large")


def main():
    gswarm_port, redis_port = sys.argv[1], sys.argv[2]
    client = DataServer(f"127.0.0.1:{gswarm_port}")
    r = redis.Redis(host="127.0.0.1", port=int(redis_port))
    log(f"python: {SMALL} writes and reads of {SIZE} B from one thread (DataServer vs redis-py)")
    small(client, r)
    log(f"python: {LARGE >> 20} MiB numpy array written and read x {ROUNDS}, and read zero-copy")
    large(client)


if __name__ == "__main__":
    main()
