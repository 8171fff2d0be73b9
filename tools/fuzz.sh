#!/usr/bin/env bash
# Fuzzes one reader of untrusted input with libFuzzer under ASan + UBSan:
#   tools/fuzz.sh safetensors|config|idx [SECONDS | -runs=N] [more libFuzzer flags...]
# (default 60 seconds). Builds build-fuzz/ with clang (-DDUALFLOW_FUZZ=ON, CPU only), grows a
# working corpus in build-fuzz/corpus/TARGET from the seeds in tests/fuzz/corpus/TARGET, and
# writes any crashing input to build-fuzz/artifacts/TARGET/. An allocation above 64 MiB (the
# inputs are at most 16 KiB, so that is a size claim trusted before it was checked), memory above
# 512 MiB or one input running over 10 s counts as a crash. Copy a reproducer into the seed
# folder once it is fixed: the test suite replays that folder.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: tools/fuzz.sh safetensors|config|idx [SECONDS | -runs=N] [libFuzzer flags...]"
target="${1:?$usage}"
shift
case "$target" in
  safetensors | config | idx) ;;
  *) echo "tools/fuzz.sh: unknown target '$target'; $usage" >&2; exit 2 ;;
esac
limit=(-max_total_time=60)
if [ $# -gt 0 ]; then
  case "$1" in
    -runs=*) limit=("$1"); shift ;;
    *[!0-9]*) ;;  # not a number: a libFuzzer flag, keep the default time
    *) limit=(-max_total_time="$1"); shift ;;
  esac
fi

CC="${CC:-clang}" CXX="${CXX:-clang++}" cmake -S . -B build-fuzz -G Ninja -DDUALFLOW_FUZZ=ON -DDUALFLOW_CUDA=OFF \
  -DDUALFLOW_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" >/dev/null
cmake --build build-fuzz --target "fuzz_$target"

corpus="build-fuzz/corpus/$target"
artifacts="build-fuzz/artifacts/$target"
mkdir -p "$corpus" "$artifacts"
# A small quarantine keeps ASan's own memory well below the RSS limit.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:quarantine_size_mb=64}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
exec "build-fuzz/tests/fuzz/fuzz_$target" "${limit[@]}" \
  -dict="tests/fuzz/$target.dict" -max_len=16384 \
  -rss_limit_mb=512 -malloc_limit_mb=64 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$@" "$corpus" "tests/fuzz/corpus/$target"
