#!/usr/bin/env python3
"""Turns the measurements bench/run.sh collects into the markdown report.

Input: one line per measurement, "<name> key=value ...", e.g.
  gswarm.read_raw.100 rps=101207.0 non2xx=0 ... p99_ms=2.296
  redis.write.100 rps=90415.91 p50_ms=0.287 ...
  gswarm.large.268435456 write_Bps=2960120801 read_Bps=2766358867
  iperf3 Bps=3197771757
  env date=2026-11-24T11:47Z
  gswarm_log <a warning line gswarm printed>
"""
import sys

MIB = 1 << 20


def load(path):
    data, env, logs = {}, {}, []
    for line in open(path):
        line = line.rstrip("\n")
        if not line:
            continue
        name, _, rest = line.partition(" ")
        if name == "gswarm_log":
            logs.append(rest)
            continue
        fields = dict(tok.split("=", 1) for tok in rest.split() if "=" in tok)
        if name == "env":
            env.update(fields)
        else:
            data[name] = fields
    return data, env, logs


def num(data, name, field):
    try:
        return float(data[name][field])
    except (KeyError, ValueError):
        return None


def ops(v):
    return "n/a" if v is None else f"{v:,.0f}"


def mbs(v):
    return "n/a" if v is None else f"{v / 1e6:,.0f}"


def ratio(a, b):
    return None if a is None or not b else a / b


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.2f}x"


def met(r, target):
    if r is None:
        return "n/a"
    return "yes" if r >= target else "**no**"


def overhead(data, server):
    """Resident bytes per key beyond the key and its 10-byte value (keys key:0 ...)."""
    keys = num(data, f"overhead.{server}", "keys")
    before = num(data, f"overhead.{server}", "rss_before")
    after = num(data, f"overhead.{server}", "rss_after")
    if None in (keys, before, after) or not keys:
        return None
    key_bytes = sum(len(f"key:{i}") for i in range(int(keys))) / keys
    return (after - before) / keys - key_bytes - 10


def bytes_per(v):
    return "n/a" if v is None else f"{v:,.0f}"


def size_name(n):
    n = int(n)
    if n >= 1024 * MIB and n % (1024 * MIB) == 0:
        return f"{n // (1024 * MIB)} GiB"
    if n >= MIB:
        return f"{n // MIB} MiB"
    if n >= 1024:
        return f"{n // 1024} KiB"
    return f"{n} B"


def main():
    data, env, logs = load(sys.argv[1])
    iperf = num(data, "iperf3", "Bps")
    out = []
    w = out.append

    w("# gswarm benchmark")
    w("")
    w(f"Run {env.get('date', '?')} on {env.get('cores', '?')} cores "
      f"({env.get('cpu', '?').replace('_', ' ')}), gswarm commit {env.get('commit', '?')} (HEAD; the working tree may differ), "
      f"Redis {env.get('redis', '?')}. Client and server share the machine, over loopback. "
      f"Small values: {env.get('duration', '?')} s per load, 50 keep-alive connections, no pipelining, "
      f"keys cycling over {int(env.get('keys', 0)):,} keys (wrk -t{env.get('wrk_threads', '?')} against "
      f"gswarm, redis-benchmark -P 1 against Redis). Large values: one connection, "
      f"bytes / elapsed time of whole requests. MB/s = 10^6 bytes/s.")
    w("")

    # Headline: the targets.
    w("## Targets")
    w("")
    w("| Measure | gswarm | reference | ratio | target | met |")
    w("|---|---:|---:|---:|---:|:---:|")
    g, r = num(data, "gswarm.read_raw.100", "rps"), num(data, "redis.read.100", "rps")
    q = ratio(g, r)
    w(f"| read 100 B, ops/s: gswarm raw `GET /read_extended` vs Redis GET | {ops(g)} | {ops(r)} "
      f"| {fmt_ratio(q)} | >= 1.0x | {met(q, 1.0)} |")
    g, r = num(data, "gswarm.write_raw.100", "rps"), num(data, "redis.write.100", "rps")
    q = ratio(g, r)
    w(f"| write 100 B, ops/s: gswarm raw `POST /write_extended` vs Redis SET | {ops(g)} | {ops(r)} "
      f"| {fmt_ratio(q)} | >= 0.9x | {met(q, 0.9)} |")
    big = str(256 * MIB)
    for op in ("write", "read"):
        g = num(data, f"gswarm.large.{big}", f"{op}_Bps")
        q = ratio(g, iperf)
        w(f"| {op} 256 MiB, MB/s: gswarm vs one iperf3 TCP stream | {mbs(g)} | {mbs(iperf)} "
          f"| {fmt_ratio(q)} | >= 0.8x | {met(q, 0.8)} |")
    gib = str(1 << 30)
    g, d = num(data, f"gswarm.disk.{gib}", "write_Bps"), num(data, f"dd.disk.{gib}", "Bps")
    q = ratio(g, d)
    w(f"| write 1 GiB to `disk`, MB/s: gswarm raw vs `dd bs=1M conv=fsync` on the same file system "
      f"| {mbs(g)} | {mbs(d)} | {fmt_ratio(q)} | >= 0.8x | {met(q, 0.8)} |")
    iperf4 = num(data, "iperf3.P4", "Bps")
    for streams, ref, ref_name in ((1, iperf, "iperf3 -P 1"), (4, iperf4, "iperf3 -P 4")):
        for size in (256 * MIB, 2048 * MIB):
            g = num(data, f"send.dram.{size}.{streams}", "Bps")
            q = ratio(g, ref)
            w(f"| send {size_name(str(size))} dram to dram between two servers, {streams} "
              f"stream{'s' if streams > 1 else ''}, MB/s: gswarm vs {ref_name} | {mbs(g)} | {mbs(ref)} "
              f"| {fmt_ratio(q)} | >= 0.9x | {met(q, 0.9)} |")
    g, r = overhead(data, "gswarm"), overhead(data, "redis")
    w(f"| memory per key beyond key and value, bytes (1M keys of 10 B): gswarm vs Redis "
      f"| {bytes_per(g)} | {bytes_per(r)} | {fmt_ratio(ratio(g, r))} | < 100 B "
      f"| {'n/a' if g is None else ('yes' if g < 100 else '**no**')} |")
    w("")

    # Small values.
    w("## Small values: ops/s, 50 keep-alive connections, no pipelining")
    w("")
    w("gswarm raw = `GET /read_extended/K` with `Accept: application/octet-stream` and "
      "`POST /write_extended?key=K` with an `application/octet-stream` body; "
      "gswarm JSON = `GET /read/K` and `POST /write` with the value as a JSON string. "
      "The targets use the raw paths.")
    w("")
    w("| operation | size | gswarm raw | gswarm JSON | Redis | raw / Redis | JSON / Redis |")
    w("|---|---|---:|---:|---:|---:|---:|")
    for size in ("100", "4096"):
        for op in ("read", "write"):
            graw = num(data, f"gswarm.{op}_raw.{size}", "rps")
            gjson = num(data, f"gswarm.{op}_json.{size}", "rps")
            red = num(data, f"redis.{op}.{size}", "rps")
            label = {"read": "read (Redis GET)", "write": "write (Redis SET)"}[op]
            w(f"| {label} | {size_name(size)} | {ops(graw)} | {ops(gjson)} | {ops(red)} "
              f"| {fmt_ratio(ratio(graw, red))} | {fmt_ratio(ratio(gjson, red))} |")
    w("")
    w("### Latency and errors of the small-value loads")
    w("")
    w("| load | p50 ms | p99 ms | max ms | non-2xx | socket errors (connect/read/write/timeout) |")
    w("|---|---:|---:|---:|---:|---|")
    for size in ("100", "4096"):
        for op in ("read", "write"):
            for kind in ("raw", "json"):
                name = f"gswarm.{op}_{kind}.{size}"
                if name not in data:
                    continue
                d = data[name]
                w(f"| gswarm {op} {kind} {size_name(size)} | {d.get('p50_ms')} | {d.get('p99_ms')} "
                  f"| {d.get('max_ms')} | {d.get('non2xx')} | {d.get('err_connect')}/{d.get('err_read')}/"
                  f"{d.get('err_write')}/{d.get('err_timeout')} |")
            name = f"redis.{op}.{size}"
            if name in data:
                d = data[name]
                w(f"| Redis {'GET' if op == 'read' else 'SET'} {size_name(size)} | {d.get('p50_ms')} "
                  f"| {d.get('p99_ms')} | {d.get('max_ms')} | - | - |")
    w("")

    # Large values.
    w("## Large values: MB/s on one connection")
    w("")
    w("gswarm: raw `POST /write_extended` and `GET /read_extended` (octet-stream); Redis: SET and "
      "GET over RESP; both driven by `gswarm_bench`, which receives into a preallocated buffer. "
      f"Same key overwritten each round; two untimed rounds first (an overwrite holds two blocks), then "
      f"{env.get('large_rounds_1m', '?')} timed rounds (1 MiB) and {env.get('large_rounds_256m', '?')} "
      f"(256 MiB). The first two columns (and the targets) are total bytes / total time "
      f"of the timed rounds; the median-round columns show the steady state without outliers.")
    w("")
    w("| operation | size | gswarm | Redis | gswarm / Redis | gswarm / iperf3 "
      "| gswarm median round | Redis median round |")
    w("|---|---|---:|---:|---:|---:|---:|---:|")
    for size in (str(MIB), big):
        for op in ("write", "read"):
            g = num(data, f"gswarm.large.{size}", f"{op}_Bps")
            red = num(data, f"redis.large.{size}", f"{op}_Bps")
            gm = num(data, f"gswarm.large.{size}", f"{op}_median_Bps")
            rm = num(data, f"redis.large.{size}", f"{op}_median_Bps")
            w(f"| {op} | {size_name(size)} | {mbs(g)} | {mbs(red)} | {fmt_ratio(ratio(g, red))} "
              f"| {fmt_ratio(ratio(g, iperf))} | {mbs(gm)} | {mbs(rm)} |")
    w(f"| one TCP stream (iperf3 -t 5) | - | {mbs(iperf)} | | | 1.00x | | |")
    w("")
    rb_w = num(data, f"redis-benchmark.large.{MIB}", "write_rps")
    rb_r = num(data, f"redis-benchmark.large.{MIB}", "read_rps")
    if rb_w is not None and rb_r is not None:
        w(f"For reference, redis-benchmark (hiredis client, -c 1) on 1 MiB values: "
          f"SET {mbs(rb_w * MIB)} MB/s, GET {mbs(rb_r * MIB)} MB/s.")
        w("")
    # Node-to-node sends.
    if any(name.startswith("send.") for name in data):
        w("## Node-to-node sends: MB/s between two servers on this machine")
        w("")
        w("`POST /send_extended` to a second server on loopback, timed until it answers (the "
          "target has the value: for `disk`, fsynced and renamed into place); the target's copy "
          "is released before each round; one untimed round first. 1 stream: one connection "
          "and `POST /write_extended`; 4 streams: byte ranges over 4 connections "
          "(`/transfers`). Reference: iperf3 over loopback in the same run, and for disk "
          "`dd conv=fsync` of 1 GiB.")
        w("")
        w("| location | size | streams | gswarm | median round | reference | ratio |")
        w("|---|---|---:|---:|---:|---:|---:|")
        dd = num(data, f"dd.disk.{gib}", "Bps")
        for location in ("dram", "disk"):
            for size in (256 * MIB, 2048 * MIB):
                for streams in (1, 4):
                    name = f"send.{location}.{size}.{streams}"
                    if name not in data:
                        continue
                    g, gm = num(data, name, "Bps"), num(data, name, "median_Bps")
                    if location == "dram":
                        ref, ref_name = (iperf, "iperf3 -P 1") if streams == 1 else (iperf4, "iperf3 -P 4")
                    else:
                        ref, ref_name = dd, "dd conv=fsync"
                    w(f"| {location} to {location} | {size_name(str(size))} | {streams} | {mbs(g)} "
                      f"| {mbs(gm)} | {mbs(ref)} ({ref_name}) | {fmt_ratio(ratio(g, ref))} |")
        w("")
    # TLS.
    if any(name.startswith("tls.") for name in data):
        w("## TLS: what it costs, plain and TLS servers in the same run")
        w("")
        w("`bench/tls_bench.cpp` through the C++ client: the main gswarm server of this run "
          "(plain HTTP) and one started with `--tls-cert` (ECDSA P-256 certificate from a private "
          "CA, TLS 1.3). Small: 4 threads, each with its own keep-alive connection, a 100 B raw "
          "write then its read. New connections: `GET /stats` on a fresh connection each time "
          "(TCP, and TLS handshake with certificate checks), one thread. 256 MiB: write and "
          "read on one connection, median of the timed rounds. Send: `POST /send` of the "
          "256 MiB value to a second server of the same kind, 1 stream.")
        w("")
        w("| case | plain | TLS | TLS / plain |")
        w("|---|---:|---:|---:|")
        for name, what, show in (("tls.small_ops", "100 B operations/s, 4 connections", ops),
                                 ("tls.connects", "new connections/s (GET /stats each)", ops),
                                 ("tls.large_write_Bps", "256 MiB write, MB/s", mbs),
                                 ("tls.large_read_Bps", "256 MiB read, MB/s", mbs),
                                 ("tls.send_Bps", "256 MiB send to another server, MB/s", mbs)):
            if name in data:
                p, t = num(data, name, "plain"), num(data, name, "tls")
                w(f"| {what} | {show(p)} | {show(t)} | {fmt_ratio(ratio(t, p))} |")
        w("")
    # Data pool.
    if any(name.startswith("pool.") or name.startswith("gswarm.pool_") for name in data):
        w("## Data pool (`/api/v1/data`)")
        w("")
        w("A server of its own with `--source-root`. Creates from a file: `POST /api/v1/data` "
          "with `\"source\": FILE` (random bytes, read once before, so gswarm and the reference "
          "both read it from the page cache), timed until the answer (for `disk`: written, "
          "fsynced and renamed); one untimed round each, rounds alternating with the reference's, "
          "the chunk deleted between rounds. References: `cp FILE COPY` then fsync of the copy and "
          "of its folder, next to the server's disk directory (`disk`); `cat FILE > /dev/null` "
          "(`dram`). Small operations: 100 B uploads (`POST /api/v1/data?device=dram&format=bytes`, "
          "octet-stream) and infos (`GET /api/v1/data/{id}`), against KV raw writes "
          "(`POST /write_extended`) and `GET /location/K` on the same server, by one Python "
          "client on one keep-alive connection (bounded by that client) and by wrk with "
          "50 connections.")
        w("")
        w("| operation | gswarm | reference | gswarm / reference | gswarm median round "
          "| reference median round |")
        w("|---|---:|---:|---:|---:|---:|")
        for device, ref_name in (("disk", "`cp` + fsync"), ("dram", "`cat > /dev/null`")):
            name = f"pool.create_file.{device}"
            if name not in data:
                continue
            g, r = num(data, name, "Bps"), num(data, name, "peer_Bps")
            size = data[name].get("size", "0")
            w(f"| create a {size_name(size)} chunk from a file, `{device}`, MB/s "
              f"({data[name].get('rounds', '?')} rounds); reference {ref_name} | {mbs(g)} | {mbs(r)} "
              f"| {fmt_ratio(ratio(g, r))} | {mbs(num(data, name, 'median_Bps'))} "
              f"| {mbs(num(data, name, 'peer_median_Bps'))} |")
        for name, what, ref_name in (
                ("pool.small_create", "100 B chunk uploads", "KV `POST /write_extended`"),
                ("pool.small_info", "chunk infos", "KV `GET /location/K`")):
            if name not in data:
                continue
            g, r = num(data, name, "rps"), num(data, name, "peer_rps")
            w(f"| {what}, ops/s, one Python client ({int(num(data, name, 'ops') or 0):,} ops); "
              f"reference {ref_name} | {ops(g)} | {ops(r)} | {fmt_ratio(ratio(g, r))} | | |")
        for name, ref, what, ref_name in (
                ("gswarm.pool_upload.100", "gswarm.pool_kv_write.100", "100 B chunk uploads",
                 "KV `POST /write_extended`"),
                ("gswarm.pool_info", "gswarm.pool_kv_location", "chunk infos", "KV `GET /location/K`")):
            if name not in data:
                continue
            g, r = num(data, name, "rps"), num(data, ref, "rps")
            w(f"| {what}, ops/s, wrk, 50 connections; reference {ref_name} | {ops(g)} | {ops(r)} "
              f"| {fmt_ratio(ratio(g, r))} | | |")
        w("")
        loads = [n for n in ("gswarm.pool_kv_write.100", "gswarm.pool_upload.100",
                             "gswarm.pool_kv_location", "gswarm.pool_info") if n in data]
        if loads:
            w("| wrk load | p50 ms | p99 ms | max ms | non-2xx | socket errors (connect/read/write/timeout) |")
            w("|---|---:|---:|---:|---:|---|")
            for name in loads:
                d = data[name]
                w(f"| {name[len('gswarm.'):]} | {d.get('p50_ms')} | {d.get('p99_ms')} | {d.get('max_ms')} "
                  f"| {d.get('non2xx')} | {d.get('err_connect')}/{d.get('err_read')}/"
                  f"{d.get('err_write')}/{d.get('err_timeout')} |")
            w("")
    # The Python package.
    if any(name.startswith("python.") for name in data):
        w("## Python package (`gswarm.data`)")
        w("")
        w("One Python thread (Debian's python3) against the servers of this run. Small values: "
          "`DataServer.write/read` of 100 random bytes against redis-py `set/get` on the same "
          "Redis, batches of 1,000 alternating. Arrays: a 256 MiB numpy array written and read "
          "over HTTP (bytes straight from and into the array's memory) against one iperf3 "
          "stream; and read with `zero_copy=True` (the server's memory mapped read-only) "
          "against the HTTP read in the same rounds.")
        w("")
        w("| case | gswarm | reference | gswarm / reference |")
        w("|---|---:|---:|---:|")
        for name, what in (("python.small_write", "100 B writes"), ("python.small_read", "100 B reads")):
            if name in data:
                g, r = num(data, name, "rps"), num(data, name, "peer_rps")
                w(f"| {what}, ops/s ({int(num(data, name, 'ops') or 0):,} ops); reference redis-py "
                  f"| {ops(g)} | {ops(r)} | {fmt_ratio(ratio(g, r))} |")
        iperf = num(data, "iperf3", "Bps")
        for name, what in (("python.array_write", "256 MiB numpy write"),
                           ("python.array_read", "256 MiB numpy read")):
            if name in data:
                g = num(data, name, "Bps")
                w(f"| {what}, MB/s ({data[name].get('rounds')} rounds; median round "
                  f"{mbs(num(data, name, 'median_Bps'))}); reference iperf3 -P 1 | {mbs(g)} "
                  f"| {mbs(iperf)} | {fmt_ratio(ratio(g, iperf))} |")
        if "python.zero_copy_read" in data:
            z = num(data, "python.zero_copy_read", "seconds")
            h = num(data, "python.zero_copy_read", "peer_seconds")
            t = num(data, "python.zero_copy_read", "touch_seconds")
            speedup = h / z if z and h else None
            w(f"| 256 MiB read, `zero_copy=True`, ms (median); reference the HTTP read | "
              f"{z * 1000:.3f} | {h * 1000:.1f} | {speedup:,.0f}x faster |" if speedup else "")
            if t is not None:
                w(f"| then summing the mapped array (faults its pages in), ms | {t * 1000:.1f} | | |")
        w("")
    if logs:
        w("## gswarm warnings during the run")
        w("")
        for line in logs:
            w(f"    {line}")
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
