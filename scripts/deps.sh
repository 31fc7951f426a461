#!/usr/bin/env bash
# Installs the Debian 12 packages gswarm builds and tests with; a no-op when all
# are present. Pass extra package names to install them too (bench/run.sh does).
set -euo pipefail
packages=(g++ cmake ninja-build pkg-config
  libboost1.81-dev nlohmann-json3-dev libsimdjson-dev libcli11-dev libspdlog-dev libfmt-dev libexpected-dev
  libxxhash-dev libjemalloc-dev libssl-dev openssl libgtest-dev libgmock-dev libbenchmark-dev python3 python3-dev python3-pybind11 pybind11-dev python3-pytest python3-requests python3-numpy
  python3-torch "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
