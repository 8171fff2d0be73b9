#!/usr/bin/env bash
# Installs what dualflow needs to build and test, from Debian's packages, and nothing that is
# already there (idempotent). Run as root. The CUDA toolkit is optional: where nvcc exists the
# build compiles the CUDA backend too.
set -euo pipefail

packages=(build-essential cmake ninja-build ccache
          libfmt-dev catch2 libopenblas-dev libcli11-dev nlohmann-json3-dev libstb-dev libtomlplusplus-dev
          clang libclang-rt-dev  # clang and its libFuzzer/sanitizer runtimes: tools/fuzz.sh
          zlib1g-dev dataset-fashion-mnist  # gzipped IDX image data (train/image_data.cpp)
          libopenmpi-dev openmpi-bin  # data-parallel training across processes (train/parallel/)
          procps)  # pgrep: the test that kills one rank of a run (tests/parallel/rank_faults.sh)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all build dependencies are installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages: ${missing[*]}; run this script as root (it uses apt-get)" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
