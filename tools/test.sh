#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): set-up, the build, every CTest entry, then
# the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer (without the e2e runs),
# then the engine's threaded suites under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
tools/build.sh
ctest --test-dir build --output-on-failure -j 2
tools/test_sanitized.sh
tools/test_tsan.sh
