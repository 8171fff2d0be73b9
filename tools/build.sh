#!/usr/bin/env bash
# Configures and builds dualflow into build/ (CUDA backend when nvcc is found, one GPU
# architecture, sm_90, unless CMAKE_CUDA_ARCHITECTURES is set in the environment).
set -euo pipefail
cd "$(dirname "$0")/.."
# ccache keys on paths relative to the checkout, so a fresh clone (CI) reuses earlier builds.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DDUALFLOW_CUDA="${DUALFLOW_CUDA:-AUTO}" \
  -DCMAKE_CUDA_ARCHITECTURES="${CMAKE_CUDA_ARCHITECTURES:-90}"
cmake --build build -j "$(nproc)"
