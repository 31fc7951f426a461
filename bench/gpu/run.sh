#!/usr/bin/env bash
# GPU benchmark: gswarm's moves against raw cudaMemcpyAsync of the same size,
# in one run. Needs a CUDA device; prints a note and exits 0 without one.
#   ./bench/gpu/run.sh [--size BYTES] [--rounds N]
# GSWARM_BUILD_DIR (default build) names the build folder; BENCH_SKIP_BUILD=1
# uses what is there (e.g. binaries carried to a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${GSWARM_BUILD_DIR:-build}
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  ./scripts/build.sh
fi
exec "$build/bench/gswarm_gpu_bench" "$@"
