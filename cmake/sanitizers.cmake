# Sanitized builds, each in a build directory of its own:
#   DUALFLOW_SANITIZE  the whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer
#                      (ON; tools/test_sanitized.sh, build-asan/) or under ThreadSanitizer
#                      (=thread; tools/test_tsan.sh, build-tsan/);
#   DUALFLOW_FUZZ      only the libFuzzer harnesses of tests/fuzz and the engine/train code they
#                      reach, under the same sanitizers (tools/fuzz.sh, build-fuzz/; needs clang).
# All are CPU only: the CUDA runtime reserves address ranges that the sanitizers' shadow memory
# needs, and no sanitizer sees inside device code anyway.
if(DUALFLOW_SANITIZE AND DUALFLOW_FUZZ)
  message(FATAL_ERROR "DUALFLOW_SANITIZE and DUALFLOW_FUZZ are separate builds; turn one of them off")
endif()
if(NOT (DUALFLOW_SANITIZE OR DUALFLOW_FUZZ))
  return()
endif()

set(DUALFLOW_CUDA OFF)  # shadows the cache entry for this configuration
if(DUALFLOW_SANITIZE STREQUAL "thread")
  set(DUALFLOW_SANITIZER_LINK -fsanitize=thread)
  set(DUALFLOW_SANITIZER_FLAGS -fsanitize=thread -fno-omit-frame-pointer)
else()
  # Undefined behaviour stops the program (and so fails the test) instead of printing and going on.
  set(DUALFLOW_SANITIZER_LINK -fsanitize=address,undefined)
  set(DUALFLOW_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
endif()
if(DUALFLOW_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "DUALFLOW_FUZZ needs clang's libFuzzer; configure with -DCMAKE_CXX_COMPILER=clang++ "
                        "(got ${CMAKE_CXX_COMPILER_ID})")
  endif()
  # Coverage feedback for every object; the harness executables add -fsanitize=fuzzer to link
  # libFuzzer's main.
  list(APPEND DUALFLOW_SANITIZER_FLAGS -fsanitize=fuzzer-no-link)
  # With the instrumentation clang cannot vectorise the kernels' "omp simd" loops and says so
  # once per loop; speed does not matter here.
  list(APPEND DUALFLOW_SANITIZER_FLAGS -Wno-pass-failed)
endif()
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # GCC's flow analysis sees through the instrumentation poorly and warns of uninitialised
  # reads inside libstdc++ (std::regex, std::function) that ASan itself would report if real.
  list(APPEND DUALFLOW_SANITIZER_FLAGS -Wno-maybe-uninitialized)
endif()
add_compile_options(${DUALFLOW_SANITIZER_FLAGS})
add_link_options(${DUALFLOW_SANITIZER_LINK})
message(STATUS "dualflow: sanitizers on (${DUALFLOW_SANITIZER_FLAGS}); CUDA off")
