"""Soak test: two real servers under 64 concurrent keep-alive clients.

Two `gswarm data start` processes, A and B, run with small limits (see LIMITS).
B is started first so that A can name it as a peer (`--peer b=127.0.0.1:PORT`).
64 threads, each with its own persistent connection to A and one to B, run a
mix of operations for GSWARM_SOAK_SECONDS (default 60):

- JSON values: POST /write, GET /read/{key}, GET /read_extended/{key} (JSON form);
- raw values of 1 KiB to 8 MiB (POST /write_extended?key=&location=&format=,
  application/octet-stream) into dram, pinned_dram and disk, read back with
  GET /read_extended/{key} (Accept: application/octet-stream) when in dram and
  checked with GET /location/{key} elsewhere (a read outside dram is 409);
- moves between the tiers (POST /move, waiting and with "wait": false and
  GET /operations/{id}), a value outside dram being moved back before its bytes
  are read;
- releases (DELETE /release/{key}, then GET /location is 404);
- sends from A to B (POST /send_extended) by node name (`b`, `b:disk`...) and by
  host:port (with and without a location), some with delete_source; the bytes
  are read back from B (moved to B's dram first when they landed elsewhere);
- data pool chunks: upload (POST /api/v1/data, octet-stream body), GET, read of
  the bytes, move to another tier (POST .../move and its operation), transfer to
  B (POST .../transfer), DELETE on both.

Every thread owns its keys (prefixed with its number) and knows what each must
hold: contents are derived from (key, version), so every read is compared,
through a hash, with the last acknowledged write byte for byte.

The test fails on any unexpected status, mismatch or broken connection. The
only refusals tolerated (retried, counted and reported) are documented
backpressure: 507 over_limit on a write into a tier, 429 and 503 busy answers.
The workload is sized so that they do not normally happen: a ledger shared by
the threads keeps the bytes live in each tier of each server at most a fraction
of its limit (BUDGET_FRACTION, see `budgets`), and uploads that go through the
server's stream buffers (disk) are limited in number (DISK_STREAMS) so that
their 2 x 4 MiB buffers stay well under --max-buffer-memory. The test asserts
that backpressure stayed under 1% of the operations.

It also checks, for both servers:
- resident memory (VmRSS sampled every 50 ms, and VmHWM at the end) stays
  under --max-memory + --max-pinned + --max-buffer-memory + RSS_OVERHEAD;
  RSS_OVERHEAD (256 MiB) covers what no limit governs: the binary and its
  libraries (~20 MiB), the stacks of the network, io and mover threads, the
  allocator's per-thread caches and freed-but-not-returned heap, the index of
  keys, ~24 KiB per open connection (130 here), the movers' 8 MiB staging
  buffers and the sender's 4 MiB pieces (4 move threads), and slack for the
  2 MiB slabs of small pinned values. Page cache of disk values is not part of
  RSS (disk values are written and read with pwrite/pread, never mapped);
- no descriptor growth: /proc/PID/fd after start-up and after the load (all
  keys released, every client connection closed, up to SETTLE_SECONDS of
  polling) differ by at most FD_SLACK, not counting the shared segments
  (memfds) the server's caches keep by design, which are accounted for
  instead: the unlocked ones must add up to /stats host_cache_bytes (freed DRAM
  blocks kept within the room --max-memory leaves), and the rest, freed pinned
  segments kept locked while no pinned key is left, must fit in --max-pinned;
- no leftovers: /stats shows no keys, no buffer memory, no incoming transfer,
  and the pool lists no chunk;
- both still answer GET /health afterwards and exit 0 on SIGTERM.

The pinned tier is left out of the workload (and said so in the summary) when
the servers could not lock --max-pinned: without CAP_IPC_LOCK and with a small
`ulimit -l`.

A summary paragraph is printed at the end (run pytest with -s to see it).
"""

import collections
import hashlib
import http.client
import json
import os
import random
import re
import threading
import time
import urllib.parse

import numpy as np

from gswarm_server import Server

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

SOAK_SECONDS = float(os.environ.get("GSWARM_SOAK_SECONDS", "60"))
THREADS = 64
LIMITS = {"memory": 512 * MiB, "pinned": 128 * MiB, "disk": 2 * GiB, "buffer": 256 * MiB}
SERVER_ARGS = ["--max-memory", "512MB", "--max-pinned", "128MB", "--max-disk", "2GB",
               "--max-buffer-memory", "256MB"]
# What a server may hold beyond its three memory limits: code, thread stacks,
# allocator caches, connections, copy buffers, pinned slabs (see the docstring).
RSS_OVERHEAD = 256 * MiB
RSS_BOUND = LIMITS["memory"] + LIMITS["pinned"] + LIMITS["buffer"] + RSS_OVERHEAD
FD_SLACK = 8
SETTLE_SECONDS = 5
# Part of each tier's limit the workload may fill (on each server).
BUDGET_FRACTION = {"dram": 0.375, "pinned_dram": 0.375, "disk": 0.375}
# Raw uploads to disk streamed at once into one server (2 x 4 MiB of buffer each:
# 8 x 8 MiB = 64 MiB, a quarter of --max-buffer-memory).
DISK_STREAMS = 8
MAX_VALUE = 8 * MiB
MIN_VALUE = 1 * KiB
RAW_SLOTS = 6      # raw keys a thread keeps on A
JSON_SLOTS = 3     # JSON keys a thread keeps on A
B_KEYS = 2         # keys a thread keeps on B
REQUEST_TIMEOUT = 120
OPERATION_TIMEOUT = 120
RETRIES = 8
TIERS = ("dram", "pinned_dram", "disk")
CHUNK_ID = re.compile(r"^chunk_[0-9a-f]{16}$")
CHECKSUM = re.compile(r"^xxh3:[0-9a-f]{16}$")


def content(key, version, size):
    """The bytes of version `version` of `key`: deterministic, incompressible."""
    seed = int.from_bytes(hashlib.blake2b(f"{key}\0{version}".encode(), digest_size=8).digest(),
                          "little")
    return np.random.Generator(np.random.PCG64(seed)).bytes(size)


def digest(data):
    return hashlib.blake2b(data, digest_size=16).digest()


def quote(key):
    return urllib.parse.quote(key, safe="")


def cost(size):
    """What the ledger charges for a value: its bytes and a page of bookkeeping
    (slab slot rounding, key metadata)."""
    return size + 4 * KiB


def can_lock_pinned():
    """Whether the servers (children of this process) can lock --max-pinned bytes
    twice over (slabs and segments): CAP_IPC_LOCK, or a large enough memlock limit."""
    import resource

    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapEff:"):
                if int(line.split()[1], 16) & (1 << 14):  # CAP_IPC_LOCK
                    return True
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    return soft == resource.RLIM_INFINITY or soft >= 2 * LIMITS["pinned"] + 256 * MiB


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                fields[name] = int(rest.split()[0]) * KiB
    return fields


def fd_kinds(pid):
    """The descriptors of `pid` by kind (socket, memfd, file, pipe, anon, other)."""
    kinds = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            kinds["socket"] += 1
        elif target.startswith("/memfd:"):
            kinds["memfd"] += 1
        elif target.startswith("pipe:"):
            kinds["pipe"] += 1
        elif target.startswith("anon_inode:"):
            kinds["anon"] += 1
        elif target.startswith("/"):
            kinds["file"] += 1
        else:
            kinds["other"] += 1
    return kinds


def memfd_usage(pid):
    """The shared-memory segments (memfds) `pid` holds: descriptors, their bytes,
    and the bytes of their mappings that are resident and locked (pinned)."""
    count = size = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:"):
                count += 1
                size += os.stat(f"/proc/{pid}/fd/{fd}").st_size
        except OSError:
            continue
    rss = locked = 0
    in_memfd = False
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            first = line.split(None, 1)[0]
            if not first.endswith(":"):  # a mapping's header line
                in_memfd = "/memfd:" in line
            elif in_memfd and first == "Rss:":
                rss += int(line.split()[1]) * KiB
            elif in_memfd and first == "Locked:":
                locked += int(line.split()[1]) * KiB
    return {"memfds": count, "memfd_bytes": size, "memfd_rss": rss, "memfd_locked": locked}


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


class Ledger:
    """Bytes the workload holds in each (server, tier), kept under a budget so
    that the servers' limits are not normally reached."""

    def __init__(self, budgets):
        self.budgets = dict(budgets)
        self.used = collections.Counter()
        self.peak = collections.Counter()
        self.lock = threading.Lock()

    def reserve(self, server, tier, size):
        with self.lock:
            place = (server, tier)
            if self.used[place] + cost(size) > self.budgets.get(place, 0):
                return False
            self.used[place] += cost(size)
            self.peak[place] = max(self.peak[place], self.used[place])
            return True

    def free(self, server, tier, size):
        with self.lock:
            self.used[(server, tier)] -= cost(size)


class Connection(http.client.HTTPConnection):
    """A keep-alive connection that counts how often it (re)connects."""

    def __init__(self, host, port):
        super().__init__(host, port, timeout=REQUEST_TIMEOUT)
        self.connects = 0

    def connect(self):
        super().connect()
        self.connects += 1


class Failure(Exception):
    """An operation went wrong; already recorded."""


class NoRoom(Exception):
    """The ledger has no room for an operation: it is skipped (not an error)."""


class Value:
    __slots__ = ("version", "size", "tier", "fmt", "digest", "obj")

    def __init__(self, version, size, tier, fmt, digest_, obj=None):
        self.version, self.size, self.tier, self.fmt = version, size, tier, fmt
        self.digest, self.obj = digest_, obj


class Soak:
    """What the threads share: servers, ledger, counters, errors."""

    def __init__(self, a, b, pinned):
        self.a, self.b = a, b
        self.tiers = TIERS if pinned else ("dram", "disk")
        budgets = {}
        limit_of = {"dram": LIMITS["memory"], "pinned_dram": LIMITS["pinned"], "disk": LIMITS["disk"]}
        for server in ("a", "b"):
            for tier in self.tiers:
                budgets[(server, tier)] = int(limit_of[tier] * BUDGET_FRACTION[tier])
        self.ledger = Ledger(budgets)
        self.disk_streams = {"a": threading.BoundedSemaphore(DISK_STREAMS),
                             "b": threading.BoundedSemaphore(DISK_STREAMS)}
        self.lock = threading.Lock()
        self.errors = []
        self.ops = collections.Counter()
        self.requests = collections.Counter()
        self.backpressure = collections.Counter()
        self.bytes = collections.Counter()
        self.skipped = collections.Counter()
        self.connects = collections.Counter()
        self.stop = threading.Event()

    def error(self, text):
        with self.lock:
            self.errors.append(text)

    def merge(self, worker):
        with self.lock:
            self.ops.update(worker.ops)
            self.requests.update(worker.requests)
            self.backpressure.update(worker.backpressure)
            self.bytes.update(worker.bytes)
            self.skipped.update(worker.skipped)


class Worker:
    """One of the 64 clients: its own connections, keys and expectations."""

    def __init__(self, soak, index, deadline):
        self.soak = soak
        self.index = index
        self.deadline = deadline
        self.rng = random.Random(1000 + index)
        self.conns = {"a": Connection("127.0.0.1", soak.a.port),
                      "b": Connection("127.0.0.1", soak.b.port)}
        self.closes_announced = collections.Counter()  # answers with Connection: close
        self.failed_requests = collections.Counter()   # exceptions, which close the connection
        self.version = 0
        self.kv = {}        # key on A -> Value
        self.on_b = {}      # key on B -> Value (in insertion order, oldest first)
        self.ops = collections.Counter()
        self.requests = collections.Counter()
        self.backpressure = collections.Counter()
        self.bytes = collections.Counter()
        self.skipped = collections.Counter()
        self.json_keys = [f"soak/t{index:02d}/json{n}" for n in range(JSON_SLOTS)]
        self.raw_keys = [f"soak/t{index:02d}/raw{n}" for n in range(RAW_SLOTS)]

    # ---- plumbing ----

    def fail(self, what):
        self.soak.error(f"thread {self.index}: {what}")
        raise Failure(what)

    def request(self, server, method, path, body=None, headers=None):
        """One request on this thread's connection to `server`: (status,
        headers, body bytes). A broken connection is an error."""
        conn = self.conns[server]
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        self.requests[server] += 1
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            self.failed_requests[server] += 1
            self.fail(f"{method} {path} on {server}: connection failed: {type(e).__name__}: {e}")
        if resp.getheader("Connection", "").lower() == "close":
            self.closes_announced[server] += 1
        return resp.status, resp, data

    def call(self, server, method, path, body=None, headers=None, ok=(200,), what=None,
             retry_507=False):
        """A request that must answer one of `ok`; documented backpressure
        (429, 503, and 507 over_limit where `retry_507`) is retried."""
        for attempt in range(RETRIES):
            status, resp, data = self.request(server, method, path, body, headers)
            if status in ok:
                return status, resp, data
            code = ""
            try:
                code = json.loads(data).get("code", "")
            except (ValueError, AttributeError):
                pass
            if status in (429, 503) or (status == 507 and code == "over_limit" and retry_507):
                self.backpressure[f"{status} {code}"] += 1
                time.sleep(0.05 * (2 ** attempt) * (1 + self.rng.random()))
                continue
            self.fail(f"{what or method + ' ' + path} on {server}: expected {ok}, got {status} "
                      f"{data[:400]!r}")
        self.fail(f"{what or method + ' ' + path} on {server}: still refused after {RETRIES} "
                  f"tries: {status} {data[:400]!r}")

    def call_json(self, *args, **kwargs):
        status, resp, data = self.call(*args, **kwargs)
        try:
            return status, json.loads(data)
        except ValueError:
            self.fail(f"{args[1]} {args[2]} on {args[0]}: answer is not JSON: {data[:200]!r}")

    def check(self, condition, what):
        if not condition:
            self.fail(what)

    def next_version(self):
        self.version += 1
        return self.version

    def pick_size(self, top=MAX_VALUE):
        r = self.rng.random()
        if r < 0.04:
            return min(top, MAX_VALUE)
        if r < 0.08:
            return MIN_VALUE
        if r < 0.16:  # the edges of the tiers' small-value paths
            return min(top, self.rng.choice([64 * KiB - 1, 64 * KiB, 64 * KiB + 1,
                                             1 * MiB - 1, 1 * MiB, 1 * MiB + 1, 2 * MiB + 1]))
        return int(2 ** self.rng.uniform(10, np.log2(top)))

    def reserve(self, server, tier, size):
        """Reserves room for `size` bytes (or less: halves the size until it
        fits); the size reserved, or None."""
        while size >= MIN_VALUE:
            if self.soak.ledger.reserve(server, tier, size):
                return size
            size //= 2
        return None

    def stream_slot(self, server, tier):
        """The disk-stream semaphore an upload into `tier` of `server` takes."""
        if tier == "disk":
            return self.soak.disk_streams[server]
        return None

    def wait_operation(self, server, task_id, what):
        deadline = time.monotonic() + OPERATION_TIMEOUT
        delay = 0.005
        while True:
            _, op = self.call_json(server, "GET", f"/operations/{task_id}", what=what)
            if op.get("state") == "done":
                return op
            if op.get("state") == "failed":
                self.fail(f"{what}: operation {task_id} failed: {op}")
            if time.monotonic() > deadline:
                self.fail(f"{what}: operation {task_id} not done after {OPERATION_TIMEOUT}s: {op}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def read_raw(self, server, key, expected, what):
        """Reads `key` from dram as raw bytes and compares them with `expected`."""
        _, resp, data = self.call(server, "GET", f"/read_extended/{quote(key)}",
                                  headers={"Accept": "application/octet-stream"}, what=what)
        self.bytes["read"] += len(data)
        fmt = resp.getheader("X-Gswarm-Format")
        self.check(resp.getheader("Content-Type", "").startswith("application/octet-stream"),
                   f"{what}: Content-Type {resp.getheader('Content-Type')!r}")
        self.check(fmt == expected.fmt, f"{what}: format {fmt!r}, expected {expected.fmt!r}")
        if len(data) != expected.size or digest(data) != expected.digest:
            want = content(key, expected.version, expected.size)
            n = min(len(data), len(want))
            differ = np.flatnonzero(np.frombuffer(data, np.uint8, n) != np.frombuffer(want, np.uint8, n))
            first = int(differ[0]) if len(differ) else n
            self.fail(f"{what}: {key!r} read {len(data)} bytes, expected {expected.size} "
                      f"(version {expected.version}); first difference at byte {first}")

    def check_location(self, server, key, expected, what):
        _, loc = self.call_json(server, "GET", f"/location/{quote(key)}", what=what)
        self.check(loc.get("location") == expected.tier,
                   f"{what}: {key!r} is in {loc.get('location')!r}, expected {expected.tier!r}: {loc}")
        replicas = loc.get("locations") or []
        self.check(len(replicas) == 1 and replicas[0].get("size") == expected.size
                   and replicas[0].get("copy_status") == "complete",
                   f"{what}: {key!r} replicas {replicas}, expected one complete of "
                   f"{expected.size} bytes")

    def expect_gone(self, server, key, what):
        status, _, data = self.request(server, "GET", f"/location/{quote(key)}")
        self.check(status == 404 and b"not_found" in data,
                   f"{what}: {key!r} should be gone, GET /location answered {status} {data[:200]!r}")

    # ---- operations ----

    def op_write_json(self):
        key = self.rng.choice(self.json_keys)
        version = self.next_version()
        obj = {"thread": self.index, "key": key, "version": version,
               "text": "s" * self.rng.randrange(0, 2000) + "\u00e9\u4e2d",
               "list": list(range(self.rng.randrange(0, 50))), "nested": {"ok": True, "n": None}}
        size = len(json.dumps(obj))
        if not self.soak.ledger.reserve("a", "dram", size):
            self.skipped["write_json"] += 1
            return
        _, ans = self.call_json("a", "POST", "/write", {"key": key, "value": obj},
                                what="write json", retry_507=True)
        self.check(ans.get("status") == "success" and ans.get("key") == key
                   and ans.get("location") == "dram", f"write json {key!r}: answer {ans}")
        self.drop_local(key)
        self.kv[key] = Value(version, size, "dram", "json", None, obj)
        self.bytes["written"] += size
        self.ops["write_json"] += 1

    def op_read_json(self):
        keys = [k for k in self.json_keys if k in self.kv]
        if not keys:
            return self.op_write_json()
        key = self.rng.choice(keys)
        value = self.kv[key]
        if self.rng.random() < 0.25:
            _, ans = self.call_json("a", "GET", f"/read_extended/{quote(key)}", what="read_extended json")
            self.check(ans.get("serialized_value") == {"type": "json", "data": value.obj}
                       and ans.get("found") is True,
                       f"read_extended json {key!r}: got {str(ans)[:300]}, expected version {value.version}")
        else:
            _, ans = self.call_json("a", "GET", f"/read/{quote(key)}", what="read json")
            self.check(ans.get("value") == value.obj and ans.get("key") == key
                       and ans.get("found") is True,
                       f"read json {key!r}: got {str(ans)[:300]}, expected version {value.version}")
        self.ops["read_json"] += 1

    def op_write_raw(self):
        key = self.rng.choice(self.raw_keys)
        weights = {"dram": 5, "pinned_dram": 2, "disk": 3}
        tier = self.rng.choices(self.soak.tiers, [weights[t] for t in self.soak.tiers])[0]
        size = self.reserve("a", tier, self.pick_size())
        if size is None:
            self.skipped["write_raw"] += 1
            return
        fmt = self.rng.choice(["bytes", "numpy", "tensor.v1", "x-soak+raw"])
        version = self.next_version()
        data = content(key, version, size)
        slot = self.stream_slot("a", tier)
        try:
            if slot:
                slot.acquire()
            try:
                query = urllib.parse.urlencode({"key": key, "location": tier, "format": fmt})
                _, ans = self.call_json("a", "POST", f"/write_extended?{query}", data,
                                        {"Content-Type": "application/octet-stream"},
                                        what=f"write_extended {tier} {size}", retry_507=True)
            finally:
                if slot:
                    slot.release()
        except Failure:
            self.soak.ledger.free("a", tier, size)
            raise
        self.check(ans.get("status") == "success" and ans.get("key") == key
                   and ans.get("location") == tier and ans.get("size") == size
                   and ans.get("format") == fmt, f"write_extended {key!r}: answer {ans}")
        self.drop_local(key)
        self.kv[key] = Value(version, size, tier, fmt, digest(data))
        self.bytes["written"] += size
        self.ops[f"write_raw_{tier}"] += 1

    def raw_on_a(self):
        return [k for k in self.raw_keys if k in self.kv]

    def op_read_raw(self):
        keys = self.raw_on_a()
        if not keys:
            return self.op_write_raw()
        key = self.rng.choice(keys)
        value = self.kv[key]
        if value.tier == "dram":
            self.read_raw("a", key, value, f"read_extended {key!r}")
            self.ops["read_raw"] += 1
            return
        self.check_location("a", key, value, "location")
        self.ops["location"] += 1
        if self.rng.random() < 0.2:
            # Documented: only dram is read; elsewhere the answer names the location.
            status, _, data = self.request("a", "GET", f"/read_extended/{quote(key)}",
                                           headers={"Accept": "application/octet-stream"})
            self.check(status == 409 and b"wrong_location" in data,
                       f"read_extended of {key!r} in {value.tier}: expected 409 wrong_location, "
                       f"got {status} {data[:200]!r}")
            self.ops["read_not_dram_409"] += 1
        if self.rng.random() < 0.5:
            self.move("a", key, value, "dram")
            self.read_raw("a", key, value, f"read_extended after move of {key!r}")
            self.ops["read_raw"] += 1

    def move(self, server, key, value, dest):
        """Moves `key` (held as `value` on `server`) to `dest`, keeping the ledger."""
        src = value.tier
        if dest == src:
            return
        if not self.soak.ledger.reserve(server, dest, value.size):
            self.skipped["move"] += 1
            raise NoRoom()
        try:
            if self.rng.random() < 0.25:
                status, ans = self.call_json(server, "POST", "/move",
                                             {"key": key, "destination": dest, "wait": False},
                                             ok=(202,), what=f"async move {src}->{dest}",
                                             retry_507=True)
                self.check(ans.get("status") == "accepted" and ans.get("key") == key
                           and ans.get("destination") == dest, f"async move {key!r}: answer {ans}")
                op = self.wait_operation(server, ans.get("operation_id"), f"async move {key!r}")
                self.check(op.get("kind") == "move" and op.get("source") == src
                           and op.get("bytes_total") == value.size,
                           f"async move {key!r} {src}->{dest}: operation {op}")
                self.ops["move_async"] += 1
            else:
                _, ans = self.call_json(server, "POST", "/move", {"key": key, "destination": dest},
                                        what=f"move {src}->{dest}", retry_507=True)
                self.check(ans.get("status") == "success" and ans.get("source") == src
                           and ans.get("destination") == dest and ans.get("size") == value.size,
                           f"move {key!r} {src}->{dest} ({value.size} bytes): answer {ans}")
                self.ops["move"] += 1
        except Failure:
            self.soak.ledger.free(server, dest, value.size)
            raise
        self.soak.ledger.free(server, src, value.size)
        value.tier = dest
        self.bytes["moved"] += value.size

    def op_move(self):
        keys = self.raw_on_a()
        if not keys:
            return self.op_write_raw()
        key = self.rng.choice(keys)
        value = self.kv[key]
        dest = self.rng.choice([t for t in self.soak.tiers if t != value.tier])
        self.move("a", key, value, dest)
        if self.rng.random() < 0.5:
            if dest == "dram":
                self.read_raw("a", key, value, f"read after move of {key!r}")
                self.ops["read_raw"] += 1
            else:
                self.check_location("a", key, value, "location after move")
                self.ops["location"] += 1

    def drop_local(self, key):
        """Forgets `key` on A (overwritten or gone), giving its room back."""
        old = self.kv.pop(key, None)
        if old is not None:
            self.soak.ledger.free("a", old.tier, old.size)

    def op_release(self):
        keys = list(self.kv)
        if not keys:
            return self.op_write_raw()
        key = self.rng.choice(keys)
        self.release("a", key)

    def release(self, server, key):
        _, ans = self.call_json(server, "DELETE", f"/release/{quote(key)}", what="release")
        self.check(ans.get("status") == "success" and ans.get("key") == key,
                   f"release {key!r}: answer {ans}")
        if server == "a":
            self.drop_local(key)
        else:
            old = self.on_b.pop(key)
            self.soak.ledger.free("b", old.tier, old.size)
        if self.rng.random() < 0.3:
            self.expect_gone(server, key, "after release")
        self.ops["release"] += 1

    def op_send(self):
        keys = self.raw_on_a()
        if not keys:
            return self.op_write_raw()
        key = self.rng.choice(keys)
        value = self.kv[key]
        tier = self.rng.choice(self.soak.tiers)
        if not self.soak.ledger.reserve("b", tier, value.size):
            self.skipped["send"] += 1
            return
        if tier == "dram" and self.rng.random() < 0.5:
            target = self.rng.choice(["b", f"127.0.0.1:{self.soak.b.port}"])
        else:
            target = self.rng.choice([f"b:{tier}", f"127.0.0.1:{self.soak.b.port}:{tier}"])
        delete_source = self.rng.random() < 0.1
        slot = self.stream_slot("b", tier)
        try:
            if slot:
                slot.acquire()
            try:
                _, ans = self.call_json("a", "POST", "/send_extended",
                                        {"key": key, "target": target, "delete_source": delete_source},
                                        what=f"send to {target}", retry_507=True)
            finally:
                if slot:
                    slot.release()
        except Failure:
            self.soak.ledger.free("b", tier, value.size)
            raise
        self.check(ans.get("success") is True and ans.get("key") == key
                   and ans.get("size") == value.size and ans.get("source") == value.tier
                   and ans.get("source_deleted") is delete_source and ans.get("format") == value.fmt,
                   f"send {key!r} ({value.size} bytes from {value.tier}) to {target}: answer {ans}")
        self.bytes["sent"] += value.size
        self.ops["send_by_name" if target.startswith("b") else "send_by_address"] += 1
        old = self.on_b.pop(key, None)
        if old is not None:
            self.soak.ledger.free("b", old.tier, old.size)
        copy = Value(value.version, value.size, tier, value.fmt, value.digest)
        self.on_b[key] = copy
        if delete_source:
            self.drop_local(key)
            self.expect_gone("a", key, "after send with delete_source")
            self.ops["send_delete_source"] += 1
        # The bytes on B.
        if tier != "dram":
            self.check_location("b", key, copy, f"location on B after send to {target}")
            try:
                self.move("b", key, copy, "dram")
            except NoRoom:
                pass
        if copy.tier == "dram":
            self.read_raw("b", key, copy, f"read on B of {key!r} sent to {target}")
            self.ops["read_raw_b"] += 1
        while len(self.on_b) > B_KEYS:
            self.release("b", next(iter(self.on_b)))

    def op_pool(self):
        devices = [t for t in self.soak.tiers]
        device = self.rng.choice(devices)
        size = self.reserve("a", device, self.pick_size(4 * MiB))
        if size is None:
            self.skipped["pool"] += 1
            return
        version = self.next_version()
        name = f"soak/t{self.index:02d}/chunk{version}"
        data = content(name, version, size)
        fmt = self.rng.choice(["bytes", "tensor"])
        query = urllib.parse.urlencode({"device": device, "type": "intermediate", "format": fmt,
                                        "source": name})
        slot = self.stream_slot("a", device)
        try:
            if slot:
                slot.acquire()
            try:
                _, ans = self.call_json("a", "POST", f"/api/v1/data?{query}", data,
                                        {"Content-Type": "application/octet-stream"},
                                        what=f"pool upload {device} {size}", retry_507=True)
            finally:
                if slot:
                    slot.release()
        except Failure:
            self.soak.ledger.free("a", device, size)
            raise
        chunk_id = ans.get("chunk_id", "")
        self.check(ans.get("status") == "success" and CHUNK_ID.match(chunk_id)
                   and ans.get("size") == size and ans.get("device") == device
                   and ans.get("format") == fmt and ans.get("chunk_type") == "intermediate"
                   and CHECKSUM.match(ans.get("checksum", "")), f"pool upload: answer {ans}")
        self.bytes["written"] += size
        self.ops["pool_upload"] += 1
        checksum = ans["checksum"]
        value = Value(version, size, device, fmt, digest(data))
        try:
            self.pool_cycle(chunk_id, name, value, checksum)
        finally:
            self.soak.ledger.free("a", value.tier, size)

    def chunk_info(self, server, chunk_id, value, checksum, what):
        _, chunk = self.call_json(server, "GET", f"/api/v1/data/{chunk_id}", what=what)
        self.check(chunk.get("chunk_id") == chunk_id and chunk.get("size") == value.size
                   and chunk.get("checksum") == checksum and chunk.get("format") == value.fmt
                   and chunk.get("chunk_type") == "intermediate",
                   f"{what}: chunk {chunk_id} is {str(chunk)[:400]}")
        locations = chunk.get("locations") or []
        self.check([(loc.get("device"), loc.get("status")) for loc in locations]
                   == [(value.tier, "complete")],
                   f"{what}: chunk {chunk_id} locations {locations}, expected {value.tier} complete")
        self.ops["pool_get"] += 1

    def pool_cycle(self, chunk_id, name, value, checksum):
        self.chunk_info("a", chunk_id, value, checksum, "pool get")
        # The chunk's bytes, read as a key (dram only).
        value_as_key = Value(value.version, value.size, value.tier, value.fmt, value.digest)

        def read_chunk(server, what):
            self.read_raw(server, chunk_id, value_as_key, what)
            self.ops["pool_read"] += 1

        if value.tier == "dram":
            read_chunk("a", f"read of chunk {chunk_id}")
        # A move to another tier, then (sometimes) back to dram to read it.
        targets = [t for t in self.soak.tiers if t != value.tier]
        if self.rng.random() < 0.3 and value.tier != "dram":
            targets = ["dram"]
        dest = self.rng.choice(targets)
        if self.soak.ledger.reserve("a", dest, value.size):
            try:
                _, ans = self.call_json("a", "POST", f"/api/v1/data/{chunk_id}/move",
                                        {"target_device": dest,
                                         "priority": self.rng.choice(["high", "normal", "low"])},
                                        what=f"pool move {value.tier}->{dest}", retry_507=True)
                self.check(ans.get("status") == "success" and ans.get("chunk_id") == chunk_id
                           and ans.get("target_device") == dest and ans.get("task_id") is not None,
                           f"pool move {chunk_id}: answer {ans}")
                self.wait_operation("a", ans["task_id"], f"pool move {chunk_id} -> {dest}")
            except Failure:
                self.soak.ledger.free("a", dest, value.size)
                raise
            self.soak.ledger.free("a", value.tier, value.size)
            value.tier = value_as_key.tier = dest
            self.bytes["moved"] += value.size
            self.ops["pool_move"] += 1
            self.chunk_info("a", chunk_id, value, checksum, "pool get after move")
            if dest == "dram":
                read_chunk("a", f"read of chunk {chunk_id} after move")
        else:
            self.skipped["pool_move"] += 1
        # A transfer to B, now and then.
        if self.rng.random() < 0.25 and self.soak.ledger.reserve("b", "dram", value.size):
            try:
                _, ans = self.call_json("a", "POST", f"/api/v1/data/{chunk_id}/transfer",
                                        {"target_node": "b", "target_device": "dram"},
                                        what="pool transfer", retry_507=True)
                self.check(ans.get("status") == "success" and ans.get("task_id") is not None,
                           f"pool transfer {chunk_id}: answer {ans}")
                self.wait_operation("a", ans["task_id"], f"pool transfer {chunk_id} to b")
                self.bytes["sent"] += value.size
                on_b = Value(value.version, value.size, "dram", value.fmt, value.digest)
                self.chunk_info("b", chunk_id, on_b, checksum, "pool get on B after transfer")
                read_chunk("b", f"read on B of chunk {chunk_id}")
                _, ans = self.call_json("b", "DELETE", f"/api/v1/data/{chunk_id}",
                                        what="pool delete on B")
                self.check(ans.get("deleted") is True, f"pool delete {chunk_id} on B: {ans}")
                self.ops["pool_transfer"] += 1
            finally:
                self.soak.ledger.free("b", "dram", value.size)
        _, ans = self.call_json("a", "DELETE", f"/api/v1/data/{chunk_id}", what="pool delete")
        self.check(ans.get("status") == "success" and ans.get("deleted") is True
                   and ans.get("chunk_id") == chunk_id, f"pool delete {chunk_id}: {ans}")
        status, _, data = self.request("a", "GET", f"/api/v1/data/{chunk_id}")
        self.check(status == 404, f"pool get after delete of {chunk_id}: {status} {data[:200]!r}")
        self.ops["pool_delete"] += 1

    def op_stats(self):
        server = self.rng.choice(["a", "b"])
        _, ans = self.call_json(server, "GET", "/stats", what="stats")
        stats = ans.get("stats", {})
        self.check(stats.get("buffer_memory", -1) <= stats.get("max_buffer_memory", 0)
                   and stats.get("current_pinned_size", -1) <= stats.get("max_pinned_size", 0),
                   f"stats on {server} over a limit: {stats}")
        self.ops["stats"] += 1

    OPS = [("op_write_json", 10), ("op_read_json", 12), ("op_write_raw", 20), ("op_read_raw", 18),
           ("op_move", 10), ("op_release", 7), ("op_send", 8), ("op_pool", 5), ("op_stats", 1)]

    def run(self):
        names = [n for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        try:
            while time.monotonic() < self.deadline and not self.soak.stop.is_set():
                op = self.rng.choices(names, weights)[0]
                try:
                    getattr(self, op)()
                except NoRoom:
                    continue
                except Failure:
                    if len(self.soak.errors) > 50:
                        self.soak.stop.set()
                    # An error leaves this thread's view of its keys uncertain:
                    # it stops here; the others go on.
                    return
            self.cleanup()
        except Failure:
            pass  # recorded
        except Exception as e:  # a bug of the test itself: report it as an error
            self.soak.error(f"thread {self.index}: {type(e).__name__}: {e}")
        finally:
            for server, conn in self.conns.items():
                conn.close()
                self.soak.connects[server] += conn.connects
                unexplained = conn.connects - 1 - self.closes_announced[server] \
                    - self.failed_requests[server]
                if unexplained > 0:
                    self.soak.error(f"thread {self.index}: the keep-alive connection to {server} "
                                    f"was reconnected {unexplained} times without the server "
                                    f"saying Connection: close")
            self.soak.merge(self)

    def cleanup(self):
        """Releases everything this thread holds, on both servers."""
        for key in list(self.kv):
            self.release("a", key)
        for key in list(self.on_b):
            self.release("b", key)


def sample_memory(soak, servers, peaks, done):
    while not done.wait(0.05):
        for name, srv in servers.items():
            try:
                fields = proc_status(srv.proc.pid)
            except OSError:
                continue
            locked = max(fields.get("VmLck", 0), peaks[name].get("peak_VmLck", 0))
            if fields.get("VmRSS", 0) > peaks[name].get("VmRSS", 0):
                peaks[name] = fields
            peaks[name]["peak_VmLck"] = locked


def log_excerpt(path, lines=30):
    try:
        with open(path, errors="replace") as log:
            text = log.readlines()
    except OSError:
        return "(no log)"
    interesting = [line for line in text if re.search(r"error|warn|critical|abort", line, re.I)]
    return "".join((interesting or text)[-lines:])


def descriptors(pid):
    """(descriptors that are not shared segments, segment usage): the first are
    connections, files, pipes, event fds; the segments are values' memory."""
    segments = memfd_usage(pid)
    return fd_count(pid) - segments["memfds"], segments


def settled_descriptors(pid, start):
    """Polls for up to SETTLE_SECONDS until the descriptors that are not shared
    segments are back within FD_SLACK of `start`; the last `descriptors`."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        others, segments = descriptors(pid)
        if others <= start + FD_SLACK or time.monotonic() > deadline:
            return others, segments
        time.sleep(0.1)


def get_json(srv, path):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None
    finally:
        conn.close()


def describe_fds(name, start, end):
    if end is None:
        return f"descriptors of {name}: {start} at start"
    others, segments, host_cache = end
    return (f"descriptors of {name}: {start} after start-up, {others} after the load (slack "
            f"{FD_SLACK}) plus {segments['memfds']} cached segments ("
            f"{host_cache / MiB:.0f} MiB DRAM cache, {segments['memfd_locked'] / MiB:.0f} MiB "
            f"locked pinned cache)")


def test_soak(tmp_path):
    failures = []
    pinned = can_lock_pinned()
    soak = None
    elapsed = 0.0
    total_ops = 0
    fds_start, fds_end, rss, codes = {}, {}, {}, {}
    peaks = {"a": {}, "b": {}}
    b = Server(tmp_path / "b-disk", tmp_path / "b.log", *SERVER_ARGS, "--node-name", "b")
    servers = {"b": b}
    try:
        a = Server(tmp_path / "a-disk", tmp_path / "a.log", *SERVER_ARGS, "--node-name", "a",
                   "--peer", f"b=127.0.0.1:{b.port}")
        servers["a"] = a
        for name, srv in servers.items():
            status, _ = get_json(srv, "/health")
            assert status == 200, f"server {name} not healthy at start"
        status, nodes = get_json(a, "/nodes")
        assert status == 200 and any(n["name"] == "b" and n["alive"] for n in nodes["nodes"]), nodes
        time.sleep(0.5)
        fds_start = {name: descriptors(srv.proc.pid)[0] for name, srv in servers.items()}
        kinds_start = {name: fd_kinds(srv.proc.pid) for name, srv in servers.items()}

        soak = Soak(a, b, pinned)
        done = threading.Event()
        sampler = threading.Thread(target=sample_memory, args=(soak, servers, peaks, done),
                                   daemon=True)
        sampler.start()
        began = time.monotonic()
        deadline = began + SOAK_SECONDS
        workers = [Worker(soak, i, deadline) for i in range(THREADS)]
        threads = [threading.Thread(target=w.run, name=f"soak-{i}") for i, w in enumerate(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=SOAK_SECONDS + 300)
        hung = [t.name for t in threads if t.is_alive()]
        elapsed = time.monotonic() - began
        done.set()
        sampler.join()
        if hung:
            failures.append(f"{len(hung)} client threads did not finish: {hung[:5]}")
        if soak.errors:
            failures.append(f"{len(soak.errors)} errors during the soak; the first ones:\n  "
                            + "\n  ".join(soak.errors[:10]))
        total_ops = sum(soak.ops.values())
        pressure = sum(soak.backpressure.values())
        if pressure > max(5, total_ops // 100):
            failures.append(f"backpressure refusals {dict(soak.backpressure)} are more than 1% of "
                            f"{total_ops} operations: the workload should stay under the limits")
        if total_ops < THREADS:
            failures.append(f"only {total_ops} operations in {elapsed:.0f}s")

        # Nothing left behind once every thread released its keys.
        leftovers = {}
        if not soak.errors:
            for name, srv in servers.items():
                status, stats = get_json(srv, "/stats")
                s = stats["stats"]
                leftovers[name] = s
                for field in ("total_keys", "buffer_memory", "incoming_transfers",
                              "current_pinned_size", "dram_value_size", "disk_usage",
                              "active_moves", "queued_moves"):
                    if s.get(field, 0) != 0:
                        failures.append(f"server {name}: /stats {field} is {s.get(field)} after "
                                        f"every key was released")
                if s.get("total_keys", 0):
                    _, page = get_json(srv, "/locations?limit=10")
                    failures.append(f"server {name}: keys left: {page}")
                status, listing = get_json(srv, "/api/v1/data")
                if status != 200 or listing.get("count") != 0:
                    failures.append(f"server {name}: pool still lists {listing}")

        # Descriptors: back to where they were. The only descriptors a server may
        # keep beyond those of start-up are the shared segments (memfds) of its
        # caches, each accounted for: freed DRAM blocks kept for reuse (/stats
        # host_cache_bytes, within the room --max-memory leaves) and freed pinned
        # segments (locked; with no pinned key left they must fit in --max-pinned).
        for name, srv in servers.items():
            others, segments = settled_descriptors(srv.proc.pid, fds_start[name])
            _, stats = get_json(srv, "/stats")
            host_cache = stats["stats"].get("host_cache_bytes", 0)
            unlocked = segments["memfd_bytes"] - segments["memfd_locked"]
            fds_end[name] = (others, segments, host_cache)
            where = (f"{others + segments['memfds']} descriptors after the load: "
                     f"{dict(fd_kinds(srv.proc.pid))}, {fds_start[name]} after start-up: "
                     f"{dict(kinds_start[name])}; shared segments {segments['memfds']}, "
                     f"{segments['memfd_bytes'] / MiB:.1f} MiB of which "
                     f"{segments['memfd_locked'] / MiB:.1f} MiB locked; /stats host_cache_bytes "
                     f"{host_cache / MiB:.1f} MiB, total_keys {stats['stats'].get('total_keys')}")
            if others > fds_start[name] + FD_SLACK:
                failures.append(f"server {name}: {others} descriptors other than shared segments "
                                f"after the load, {fds_start[name]} after start-up (slack "
                                f"{FD_SLACK}): {where}")
            if soak.errors:
                continue
            # Segments beyond the DRAM cache are pinned ones (no key is left).
            pinned_cache = segments["memfd_bytes"] - host_cache
            if pinned_cache < 0:
                failures.append(f"server {name}: /stats host_cache_bytes says "
                                f"{host_cache / MiB:.1f} MiB of DRAM blocks are kept, but only "
                                f"{segments['memfd_bytes'] / MiB:.1f} MiB of segments are open: "
                                f"{where}")
            elif not stats["stats"].get("gpu_stats") and pinned_cache != segments["memfd_locked"]:
                # Without a GPU driver, pinned means mlock'ed: every segment that
                # is not DRAM cache must be locked, else it is a leaked value.
                failures.append(f"server {name}: {unlocked / MiB:.1f} MiB of unlocked shared "
                                f"segments stay open with no key left, but the DRAM cache "
                                f"holds {host_cache / MiB:.1f} MiB: {where}")
            if pinned_cache > LIMITS["pinned"]:
                failures.append(f"server {name}: {pinned_cache / MiB:.1f} MiB of pinned segments "
                                f"stay locked with no key left (a cache of freed pinned "
                                f"segments), more than --max-pinned "
                                f"({LIMITS['pinned'] / MiB:.0f} MiB): {where}")

        # Memory: the sampled peak and the kernel's high-water mark.
        for name, srv in servers.items():
            hwm = proc_status(srv.proc.pid).get("VmHWM", 0)
            rss[name] = (peaks[name].get("VmRSS", 0), hwm)
            if max(rss[name]) > RSS_BOUND:
                p = peaks[name]
                failures.append(
                    f"server {name}: resident memory {max(rss[name]) / MiB:.0f} MiB (sampled peak "
                    f"{rss[name][0] / MiB:.0f} MiB: anon {p.get('RssAnon', 0) / MiB:.0f}, file "
                    f"{p.get('RssFile', 0) / MiB:.0f}, shmem {p.get('RssShmem', 0) / MiB:.0f}, "
                    f"locked {p.get('VmLck', 0) / MiB:.0f}; VmHWM {hwm / MiB:.0f} MiB) is over "
                    f"{RSS_BOUND / MiB:.0f} MiB = max-memory + max-pinned + max-buffer-memory + "
                    f"{RSS_OVERHEAD / MiB:.0f} MiB")

        # Still serving.
        for name, srv in servers.items():
            status, ans = get_json(srv, "/health")
            if status != 200 or ans.get("status") != "ok":
                failures.append(f"server {name}: GET /health after the load answered {status} {ans}")
    finally:
        codes = {name: srv.stop() for name, srv in servers.items()}
    for name, code in codes.items():
        if code != 0:
            failures.append(f"server {name} exited {code} on SIGTERM")

    if soak is None:
        raise AssertionError("\n".join(failures) or "the servers did not start")
    b_moved = soak.bytes
    ops_text = ", ".join(f"{k} {v}" for k, v in sorted(soak.ops.items()))
    summary = (
        f"soak: {THREADS} threads for {elapsed:.1f}s ({SOAK_SECONDS:.0f}s of load, tiers "
        f"{', '.join(soak.tiers)}): {total_ops} operations ({total_ops / max(elapsed, 1e-9):.0f}/s; {ops_text}); "
        f"{soak.requests['a']} requests to A and {soak.requests['b']} to B over "
        f"{soak.connects['a']} + {soak.connects['b']} connections; bytes written "
        f"{b_moved['written'] / MiB:.0f} MiB, read {b_moved['read'] / MiB:.0f} MiB, moved between "
        f"tiers {b_moved['moved'] / MiB:.0f} MiB, sent A->B {b_moved['sent'] / MiB:.0f} MiB; "
        f"ledger peak {', '.join(f'{s}/{t} {v / MiB:.0f} MiB' for (s, t), v in sorted(soak.ledger.peak.items()))}; "
        f"skipped for room {dict(soak.skipped)}; backpressure {dict(soak.backpressure) or 'none'}; "
        f"errors {len(soak.errors)}; peak RSS A {max(rss.get('a', (0, 0))) / MiB:.0f} MiB, "
        f"B {max(rss.get('b', (0, 0))) / MiB:.0f} MiB (bound {RSS_BOUND / MiB:.0f} MiB), peak "
        f"locked (VmLck) A {peaks['a'].get('peak_VmLck', 0) / MiB:.0f} MiB, B "
        f"{peaks['b'].get('peak_VmLck', 0) / MiB:.0f} MiB; "
        f"{describe_fds('A', fds_start.get('a'), fds_end.get('a'))}; "
        f"{describe_fds('B', fds_start.get('b'), fds_end.get('b'))}; exit codes {codes}."
    )
    print("\n" + summary)
    if failures:
        logs = "\n".join(f"--- server {name} log ({servers[name].log_path}):\n"
                         f"{log_excerpt(servers[name].log_path)}" for name in servers)
        raise AssertionError("\n".join(failures) + "\n" + logs)
