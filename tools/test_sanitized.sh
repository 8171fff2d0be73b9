#!/usr/bin/env bash
# Builds the test suite with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/
# (CPU only, -O1 with line tables so reports name file and line) and runs it, leaving out the
# minutes-long e2e and golden runs, the install test (its outside program is not sanitized), the
# 200-process lifecycle test and the
# CUDA entries. It is built without MPI (Open MPI's own allocations would read as leaks), so the
# data-parallel tests (label mpi) run in the plain suite only. A sanitizer report aborts the test process, so
# it fails the CTest entry that triggered it.
set -euo pipefail
cd "$(dirname "$0")/.."
# ccache keys on paths relative to the checkout, so a fresh clone (CI) reuses earlier builds.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
cmake -S . -B build-asan -G Ninja -DDUALFLOW_SANITIZE=ON -DDUALFLOW_CUDA=OFF -DDUALFLOW_MPI=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1"
cmake --build build-asan -j "$(nproc)"
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
ctest --test-dir build-asan --output-on-failure -j 2 -LE 'e2e|golden|install|lifecycle|cuda'
