#!/usr/bin/env bash
# Runs each libFuzzer target of build-asan/ (scripts/sanitize.sh builds them) on
# its seed corpus in fuzz/corpus/<target>/ for FUZZ_SECONDS (default 15) each.
# New inputs go to a scratch corpus, not into the repository; a crash is saved
# as build-asan/fuzz-findings/<target>-crash-* and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-15}"
findings=build-asan/fuzz-findings
mkdir -p "$findings"
status=0
for target in fuzz_request fuzz_handlers fuzz_parsers fuzz_disk_header; do
  scratch=$(mktemp -d)
  log="$findings/$target.log"
  if ! build-asan/fuzz/$target -max_total_time="$seconds" -max_len=4096 -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$findings/$target-" \
      "$scratch" "fuzz/corpus/$target" > "$log" 2>&1; then
    echo "fuzz: $target FOUND A PROBLEM (input saved in $findings/):"
    tail -n 40 "$log"
    status=1
  else
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    echo "fuzz: $target: $execs runs in ${seconds}s, $cov, no findings"
  fi
  rm -rf "$scratch"
done
exit $status
