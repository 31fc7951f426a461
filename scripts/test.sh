#!/usr/bin/env bash
# Installs dependencies, builds and installs, and runs the whole test suite: unit
# and integration tests (GoogleTest), the CLI tests and the Python package's tests
# (pytest, against the installed package), all through ctest.
# Arguments go to ctest, e.g. ./scripts/test.sh -L unit or -R Disk.
set -euo pipefail
cd "$(dirname "$0")/.."
# The membership tests start a real etcd of their own on loopback ports.
./scripts/deps.sh etcd-server
./scripts/install.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
