#!/usr/bin/env bash
# Configures (once) and builds gswarm into build/. Extra arguments go to CMake's
# configure step, e.g. -DGSWARM_SANITIZE=ON.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
if [ ! -f build/build.ninja ] || [ $# -gt 0 ]; then
  cmake -S . -B build -G Ninja "$@"
fi
cmake --build build -j"$(nproc)"
