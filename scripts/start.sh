#!/usr/bin/env bash
# Installs dependencies, builds, installs (`gswarm` on the PATH, the Python
# package importable), and starts the server on its defaults
# (0.0.0.0:9015, 16GB DRAM, disk values in /tmp/gswarm_data). Arguments are
# passed to `gswarm data start`, e.g. ./scripts/start.sh --port 9016.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec gswarm data start "$@"
