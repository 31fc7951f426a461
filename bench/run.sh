#!/usr/bin/env bash
# Benchmarks gswarm against Redis and one loopback TCP stream (iperf3) in one run
# and prints a markdown report; see bench/README.md for what each row measures.
#
#   ./bench/run.sh [RESULTS_FILE]          (default bench/results.md)
#
# Environment:
#   GSWARM_BUILD_DIR  build folder holding gswarm and bench/gswarm_bench (default build;
#                     build/ is built with ./scripts/build.sh, any other folder with
#                     cmake for the two targets only)
#   BENCH_SKIP_BUILD  1: use the binaries already in GSWARM_BUILD_DIR
#   BENCH_DURATION    seconds per small-value load (default 10)
#   BENCH_KEYS        keyspace of the small-value loads (default 100000)
#   WRK_THREADS       wrk threads (default 2)
#   GSWARM_ARGS       extra flags for `gswarm data start` (e.g. "--threads 1")
#   BENCH_PARTS       which parts to run, of: large disk send tls keys small pool python
#                     (default: all)
#   BENCH_TLS_SMALL, BENCH_TLS_ROUNDS
#                     the tls part's 100 B operations per thread (4 threads) and 256 MiB
#                     rounds (bench/tls_bench.cpp; defaults 20000, 5)
#   BENCH_POOL_SIZE, BENCH_POOL_ROUNDS, BENCH_POOL_SMALL, BENCH_POOL_DEVICES
#                     the pool part's file size, timed rounds, small-op count and devices
#                     (bench/pool.py; defaults 1073741824, 3, 10000, disk,dram)
set -euo pipefail
results=${1:-}
[ -z "$results" ] || results=$(realpath -m "$results")  # relative to the caller's folder
cd "$(dirname "$0")/.."
root=$PWD
results=${results:-$root/bench/results.md}
build=${GSWARM_BUILD_DIR:-build}
duration=${BENCH_DURATION:-10}
nkeys=${BENCH_KEYS:-100000}
wrk_threads=${WRK_THREADS:-2}
conns=50
large_sizes=(1048576 268435456)
declare -A large_count=([1048576]=500 [268435456]=8)

log() { printf '%s [bench] %s\n' "$(date +%T)" "$*" >&2; }
parts=" ${BENCH_PARTS:-large disk send tls keys small pool python} "
part() { [[ $parts == *" $1 "* ]]; }

# ---- tools and build -------------------------------------------------------
./scripts/deps.sh redis-server redis-tools wrk iperf3 curl python3-redis
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  if [ "$build" = build ]; then
    ./scripts/build.sh
  else
    [ -f "$build/build.ninja" ] || cmake -S . -B "$build" -G Ninja -DGSWARM_BUILD_TESTS=OFF
    cmake --build "$build" -j"$(nproc)" --target gswarm gswarm_bench gswarm_tls_bench
  fi
fi
gswarm_bin=$root/$build/gswarm
bench_bin=$root/$build/bench/gswarm_bench
tls_bench_bin=$root/$build/bench/gswarm_tls_bench
[[ $build = /* ]] && gswarm_bin=$build/gswarm bench_bin=$build/bench/gswarm_bench \
  tls_bench_bin=$build/bench/gswarm_tls_bench
for b in "$gswarm_bin" "$bench_bin" "$tls_bench_bin"; do
  [ -x "$b" ] || { echo "missing $b (build it first)" >&2; exit 1; }
done

# ---- servers -----------------------------------------------------------------
tmp=$(mktemp -d /tmp/gswarm-bench.XXXXXX)
raw=$tmp/raw.txt  # one line per measurement: "<name> key=value ..."
: >"$raw"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() {  # wait_for SECONDS COMMAND...
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.1
  done
}

# ---- iperf3: loopback TCP, one stream and four ------------------------------------
run_iperf() {  # run_iperf STREAMS NAME
  local iport
  iport=$(free_port)
  iperf3 -s -1 -p "$iport" >"$tmp/iperf3-server.log" 2>&1 &
  pids+=($!)
  log "iperf3: $1 TCP stream(s), 5 s"
  # The one-shot server (-1) may not listen yet: a refused client leaves it untouched.
  # (iperf3 3.12 exits 0 with -J even when it cannot connect; the JSON has "error".)
  for _ in $(seq 50); do
    iperf3 -c 127.0.0.1 -p "$iport" -t 5 -P "$1" -J >"$tmp/iperf3.json" 2>/dev/null || true
    grep -q '"error"' "$tmp/iperf3.json" || break
    sleep 0.2
  done
  python3 - "$tmp/iperf3.json" "$2" >>"$raw" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
if "error" in d:
    sys.exit("iperf3: " + d["error"])
print("%s Bps=%.0f" % (sys.argv[2], d["end"]["sum_received"]["bits_per_second"] / 8))
EOF
}
run_iperf 1 iperf3
if part send; then run_iperf 4 iperf3.P4; fi

gport_log=$tmp/gswarm.out
log "starting gswarm and redis-server"
# --port 0: the server picks a free port and prints it on its first stdout line.
# shellcheck disable=SC2086
"$gswarm_bin" data start --host 127.0.0.1 --port 0 --disk-path "$tmp/disk" --max-memory 8GB \
  ${GSWARM_ARGS:-} >"$gport_log" 2>"$tmp/gswarm.err" &
pids+=($!)
wait_for 30 grep -q "listening on" "$gport_log" || { cat "$tmp/gswarm.err" >&2; exit 1; }
gport=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$gport_log")

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --dir "$tmp" >"$tmp/redis.log" 2>&1 &
pids+=($!)
wait_for 30 bash -c "[ \"\$(redis-cli -p $rport ping)\" = PONG ]" || { cat "$tmp/redis.log" >&2; exit 1; }

# ---- large values: one connection ---------------------------------------------
if part large; then
for size in "${large_sizes[@]}"; do
  count=${large_count[$size]}
  for server in gswarm redis; do
    if [ $server = gswarm ]; then port=$gport flag=; else port=$rport flag=--redis; fi
    log "$server: $size B values, write and read x $count on one connection"
    # shellcheck disable=SC2086
    out=$("$bench_bin" throughput --port "$port" $flag --size "$size" --count "$count" --warmup 2 --verify)
    echo "$out" | grep -v '^RESULT' >&2
    echo "$server.large.$size $(echo "$out" | sed -n 's/^RESULT //p')" >>"$raw"
  done
  redis-cli -p "$rport" del bench_large >/dev/null
done
# For reference: redis' own client (hiredis) on 1 MiB values.
log "redis-benchmark: 1 MiB SET/GET, 1 connection"
redis-benchmark -p "$rport" -c 1 -P 1 -n 1000 -d 1048576 -r 16 -t set,get --csv >"$tmp/rb-1m.csv"
python3 - "$tmp/rb-1m.csv" >>"$raw" <<'EOF'
import csv, sys
rows = {r["test"]: r for r in csv.DictReader(open(sys.argv[1]))}
print("redis-benchmark.large.1048576 write_rps=%s read_rps=%s" % (rows["SET"]["rps"], rows["GET"]["rps"]))
EOF
redis-cli -p "$rport" flushall >/dev/null
fi

# ---- disk: 1 GiB raw writes to the disk tier vs dd on the same file system ---------
if part disk; then
disk_size=1073741824
log "gswarm: 1 GiB raw writes to disk x 3 (one untimed first)"
out=$("$bench_bin" throughput --port "$gport" --size "$disk_size" --count 3 --warmup 1 \
  --location disk --write-only --key bench_disk)
echo "$out" | grep -v '^RESULT' >&2
echo "gswarm.disk.$disk_size $(echo "$out" | sed -n 's/^RESULT //p')" >>"$raw"
curl -s -X DELETE "http://127.0.0.1:$gport/release/bench_disk" >/dev/null
log "dd: 1 GiB, bs=1M, conv=fsync x 3, next to gswarm's disk directory"
python3 - "$tmp/dd.bin" "$disk_size" >>"$raw" <<'EOF'
import os, subprocess, sys, time
path, size = sys.argv[1], int(sys.argv[2])
total = 0.0
for _ in range(3):
    start = time.monotonic()
    subprocess.run(["dd", "if=/dev/zero", "of=" + path, "bs=1M", "count=%d" % (size >> 20),
                    "conv=fsync", "status=none"], check=True)
    total += time.monotonic() - start
    os.remove(path)
print("dd.disk.%d Bps=%.0f" % (size, 3 * size / total))
EOF
fi

# ---- node-to-node: sends between two local servers ---------------------------------
if part send; then
  tport_log=$tmp/gswarm-target.out
  "$gswarm_bin" data start --host 127.0.0.1 --port 0 --disk-path "$tmp/disk-target" \
    --max-memory 8GB --node-name bench-target --log-level warn >"$tport_log" 2>>"$tmp/gswarm.err" &
  tpid=$!
  pids+=($tpid)
  wait_for 30 grep -q "listening on" "$tport_log" || { cat "$tmp/gswarm.err" >&2; exit 1; }
  tport=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$tport_log")
  log "sends: 256 MiB and 2 GiB, dram and disk, 1 and 4 streams"
  python3 bench/send.py "$gport" "$tport" >>"$raw"
  kill "$tpid"
fi

# ---- TLS: plain and TLS servers side by side ---------------------------------------
if part tls; then
  certs=$tmp/certs
  mkdir -p "$certs"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 2 -subj /CN=bench-ca -keyout "$certs/ca.key" \
    -out "$certs/ca.pem" 2>/dev/null
  openssl req "${ec[@]}" -subj /CN=localhost -keyout "$certs/server.key" -out "$certs/server.csr" 2>/dev/null
  echo "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$certs/server.ext"
  openssl x509 -req -days 2 -in "$certs/server.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" \
    -CAcreateserial -extfile "$certs/server.ext" -out "$certs/server.pem" 2>/dev/null
  tls_args=(--tls-cert "$certs/server.pem" --tls-key "$certs/server.key" --tls-ca "$certs/ca.pem")
  tls_ports=()
  tls_pids=()
  for name in plain-target tls tls-target; do
    extra=()
    [ "$name" = plain-target ] || extra=("${tls_args[@]}")
    # shellcheck disable=SC2086
    "$gswarm_bin" data start --host 127.0.0.1 --port 0 --disk-path "$tmp/disk-$name" \
      --max-memory 8GB --log-level warn "${extra[@]}" ${GSWARM_ARGS:-} >"$tmp/$name.out" \
      2>>"$tmp/gswarm.err" &
    tls_pids+=($!)
    pids+=($!)
    wait_for 30 grep -q "listening on" "$tmp/$name.out" || { cat "$tmp/gswarm.err" >&2; exit 1; }
    tls_ports+=("$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$tmp/$name.out")")
  done
  log "TLS: small ops, new connections, 256 MiB writes, reads and sends, plain next to TLS"
  "$tls_bench_bin" --plain "127.0.0.1:$gport" --tls "127.0.0.1:${tls_ports[1]}" \
    --plain-target "127.0.0.1:${tls_ports[0]}" --tls-target "127.0.0.1:${tls_ports[2]}" \
    --ca "$certs/ca.pem" --small "${BENCH_TLS_SMALL:-20000}" --rounds "${BENCH_TLS_ROUNDS:-5}" |
    sed -n 's/^RESULT //p' >>"$raw"
  kill "${tls_pids[@]}"
fi

# ---- memory per key: a million keys of 10 B ----------------------------------------
if part keys; then
overhead_keys=${BENCH_OVERHEAD_KEYS:-1000000}
rss_of() { awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"; }
kport_log=$tmp/gswarm-keys.out
"$gswarm_bin" data start --host 127.0.0.1 --port 0 --disk-path "$tmp/disk-keys" --max-memory 8GB \
  --log-level warn >"$kport_log" 2>>"$tmp/gswarm.err" &
kpid=$!
pids+=($kpid)
wait_for 30 grep -q "listening on" "$kport_log" || { cat "$tmp/gswarm.err" >&2; exit 1; }
kport=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$kport_log")
rpid=$(redis-cli -p "$rport" info server | sed -n 's/^process_id:\([0-9]*\).*/\1/p')
for server in gswarm redis; do
  if [ $server = gswarm ]; then port=$kport pid=$kpid flag=; else port=$rport pid=$rpid flag=--redis; fi
  before=$(rss_of "$pid")
  log "$server: $overhead_keys keys of 10 B (key:0 .. key:$((overhead_keys - 1)))"
  # shellcheck disable=SC2086
  "$bench_bin" prefill --port "$port" $flag --size 10 --keys "$overhead_keys" --prefix key: \
    --connections 8 >&2
  sleep 1
  after=$(rss_of "$pid")
  echo "overhead.$server keys=$overhead_keys rss_before=$before rss_after=$after" >>"$raw"
done
kill "$kpid"
redis-cli -p "$rport" flushall >/dev/null
fi

# ---- small values: 50 keep-alive connections ----------------------------------
run_wrk() {  # run_wrk NAME SCRIPT ARGS...
  local name=$1 script=$2; shift 2
  log "wrk: $name (${duration}s, $conns connections, $wrk_threads threads)"
  # wrk_port=PORT run_wrk ...: against another server than the main one.
  wrk -t"$wrk_threads" -c"$conns" -d"${duration}s" -s "bench/wrk/$script" \
    "http://127.0.0.1:${wrk_port:-$gport}" -- "$@" \
    >"$tmp/wrk-$name.log" 2>&1 || { cat "$tmp/wrk-$name.log" >&2; exit 1; }
  local line
  line=$(sed -n 's/^WRK_RESULT //p' "$tmp/wrk-$name.log")
  [ -n "$line" ] || { cat "$tmp/wrk-$name.log" >&2; exit 1; }
  echo "gswarm.$name $line" >>"$raw"
}

run_redis() {  # run_redis set|get SIZE REQUESTS
  local op=$1 size=$2 n=$3
  log "redis-benchmark: $size B ${op^^}, $conns connections, -n $n"
  redis-benchmark -p "$rport" -c "$conns" -P 1 -n "$n" -d "$size" -t "$op" -r "$nkeys" --csv \
    >"$tmp/rb-$op-$size.csv"
  python3 - "$tmp/rb-$op-$size.csv" "$size" >>"$raw" <<'EOF'
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    op = {"SET": "write", "GET": "read"}[r["test"]]
    print("redis.%s.%s rps=%s p50_ms=%s p99_ms=%s max_ms=%s"
          % (op, sys.argv[2], r["rps"], r["p50_latency_ms"], r["p99_latency_ms"], r["max_latency_ms"]))
EOF
}

# Each gswarm load runs right after the Redis load it is compared with, so that
# changes in background load hit both sides alike.
part small && for size in 100 4096; do
  log "prefilling $nkeys keys of $size B: gswarm raw, gswarm JSON, Redis"
  "$bench_bin" prefill --port "$gport" --size "$size" --keys "$nkeys" --prefix "r${size}_" --connections 8 >&2
  "$bench_bin" prefill --port "$gport" --size "$size" --keys "$nkeys" --prefix "j${size}_" --connections 8 --json >&2
  # redis-benchmark -r N uses the keys key:000000000000 .. key:(N-1), 12 digits.
  "$bench_bin" prefill --port "$rport" --redis --size "$size" --keys "$nkeys" --prefix key: --width 12 \
    --connections 8 >&2

  # A short calibration picks -n so each Redis load runs about $duration seconds.
  redis-benchmark -p "$rport" -c "$conns" -P 1 -n 30000 -d "$size" -t set,get -r "$nkeys" --csv \
    >"$tmp/rb-cal-$size.csv"
  n=$(python3 - "$tmp/rb-cal-$size.csv" "$duration" <<'EOF'
import csv, sys
rps = min(float(r["rps"]) for r in csv.DictReader(open(sys.argv[1])))
print(max(30000, int(rps * float(sys.argv[2]))))
EOF
)
  run_redis set "$size" "$n"
  run_wrk "write_raw.$size" write.lua "$size" "$nkeys" "r${size}_" raw
  run_redis get "$size" "$n"
  run_wrk "read_raw.$size" read.lua "$nkeys" "r${size}_" raw
  run_wrk "read_json.$size" read.lua "$nkeys" "j${size}_" json
  run_wrk "write_json.$size" write.lua "$size" "$nkeys" "j${size}_" json
done

# ---- data pool: chunks from a file, small uploads and infos ------------------------
if part pool; then
  mkdir -p "$tmp/pool-src"
  pport_log=$tmp/gswarm-pool.out
  # shellcheck disable=SC2086
  "$gswarm_bin" data start --host 127.0.0.1 --port 0 --disk-path "$tmp/disk-pool" \
    --source-root "$tmp/pool-src" --max-memory 8GB --log-level warn ${GSWARM_ARGS:-} \
    >"$pport_log" 2>>"$tmp/gswarm.err" &
  pool_pid=$!
  pids+=($pool_pid)
  wait_for 30 grep -q "listening on" "$pport_log" || { cat "$tmp/gswarm.err" >&2; exit 1; }
  pport=$(sed -n 's/.*listening on .*:\([0-9]*\)$/\1/p' "$pport_log")
  log "pool: chunks from a $((${BENCH_POOL_SIZE:-1073741824} >> 20)) MiB file (vs cp+fsync, cat)," \
    "${BENCH_POOL_SMALL:-10000} small creates and infos (one Python client)"
  # The cp reference writes its copy next to the server's disk directory.
  python3 bench/pool.py "$pport" "$tmp/pool-src" "$tmp" >>"$raw"
  # The same small operations under 50 connections, each reference right before the
  # load it is compared with. Keys and chunks stay until the server stops below.
  "$bench_bin" prefill --port "$pport" --size 100 --keys "$nkeys" --prefix pool_ --connections 8 >&2
  wrk_port=$pport run_wrk pool_kv_write.100 write.lua 100 "$nkeys" pool_ raw
  wrk_port=$pport run_wrk pool_upload.100 pool_upload.lua 100 dram
  # Infos of as many of those chunks as there are keys (at most 100,000: one listing),
  # against /location of as many keys.
  python3 - "$pport" "$nkeys" "$tmp/pool-info.txt" "$tmp/pool-location.txt" <<'EOF'
import json, sys, urllib.request
port, nkeys = sys.argv[1], int(sys.argv[2])
url = "http://127.0.0.1:%s/api/v1/data?device=dram&limit=%d" % (port, min(nkeys, 100000))
ids = [c["chunk_id"] for c in json.load(urllib.request.urlopen(url, timeout=600))["chunks"]]
if not ids:
    sys.exit("pool: no chunks to ask about")
with open(sys.argv[3], "w") as f:
    f.writelines("/api/v1/data/%s\n" % i for i in ids)
with open(sys.argv[4], "w") as f:
    f.writelines("/location/pool_%d\n" % i for i in range(len(ids)))
EOF
  wrk_port=$pport run_wrk pool_kv_location get_paths.lua "$tmp/pool-location.txt"
  wrk_port=$pport run_wrk pool_info get_paths.lua "$tmp/pool-info.txt"
  kill "$pool_pid"
fi

# ---- report --------------------------------------------------------------------
{
  echo "env date=$(date -u +%Y-%m-%dT%H:%MZ)"
  echo "env cores=$(nproc)"
  echo "env cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1 | tr ' ' '_')"
  echo "env commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "env redis=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
  echo "env wrk_threads=$wrk_threads"
  echo "env duration=$duration"
  echo "env keys=$nkeys"
  echo "env large_rounds_1m=${large_count[1048576]} large_rounds_256m=${large_count[268435456]}"
} >>"$raw"
if part python; then
  # The package from this build tree, with Debian's python3 (numpy, redis-py).
  PYTHONPATH=$root/$build/python /usr/bin/python3 bench/python.py "$gport" "$rport" >>"$raw"
fi

# Anything gswarm logged at warning level or above during the run.
grep -E '\[(warning|error|critical)\]' "$tmp/gswarm.err" | head -20 | sed 's/^/gswarm_log /' >>"$raw" || true
mkdir -p "$(dirname "$results")"
python3 bench/report.py "$raw" | tee "$results"
log "report written to $results"
