#!/usr/bin/env bash
# Installs dependencies, builds, and installs gswarm: the `gswarm` binary in
# /usr/local/bin and the Python package (gswarm.data) where Debian's python3
# finds it (/usr/local/lib/python3.X/dist-packages). Quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/build.sh
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo cmake --install build > /dev/null
