#!/usr/bin/env bash
# Builds the CPU test suite with ThreadSanitizer into build-tsan/ and runs the suites that
# exercise the engine's threads: test_kernels (the thread pool's own tests), test_engine (every
# op through the pool, 2 threads) and test_models. test_train, the e2e, golden, mpi and lifecycle
# entries are left out to keep CI within its time (they drive the same pool through the same
# ops, 5-15x slower under TSan). OpenBLAS is not instrumented: the engine runs it on one thread
# inside the pool's chunks (kernels/cpu/gemm.cpp), and OPENBLAS_NUM_THREADS=1 keeps its own pool
# from starting, so no suppressions are needed. A report fails the test that triggered it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
cmake -S . -B build-tsan -G Ninja -DDUALFLOW_SANITIZE=thread -DDUALFLOW_CUDA=OFF -DDUALFLOW_MPI=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1"
cmake --build build-tsan -j "$(nproc)" --target test_kernels test_engine test_models
export OPENBLAS_NUM_THREADS=1
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
ctest --test-dir build-tsan --output-on-failure -j 2 -R '^test_(kernels|engine|models)$'
