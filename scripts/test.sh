#!/usr/bin/env bash
# Installs dependencies, builds and installs, and runs the whole test suite: unit
# and integration tests (GoogleTest), the CLI tests, the Python package's tests
# (pytest, against the installed package) and the soak test, all through ctest;
# then scripts/sanitize.sh: the suite under ASan+UBSan and TSan (clang builds in
# build-asan/ and build-tsan/) and each fuzz target for a bounded time.
# Arguments go to ctest (e.g. ./scripts/test.sh -L unit, or -R Disk) and skip
# the sanitizer stage, as GSWARM_SKIP_SANITIZERS=1 does.
set -euo pipefail
cd "$(dirname "$0")/.."
# The membership tests start a real etcd of their own on loopback ports.
./scripts/deps.sh etcd-server
./scripts/install.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
if [ $# -eq 0 ] && [ -z "${GSWARM_SKIP_SANITIZERS:-}" ]; then
  ./scripts/sanitize.sh
fi
