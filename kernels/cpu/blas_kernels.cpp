// Choosing OpenBLAS's kernels for this CPU where OpenBLAS's own model table falls short (see
// blas_kernels.h).
#include "kernels/cpu/blas_kernels.h"

#include <cblas.h>
#include <dlfcn.h>
#include <strings.h>

#include <array>
#include <cstdlib>
#include <mutex>

namespace dualflow::cpu {
namespace {

// OpenBLAS's x86 kernel sets that use AVX2 or wider (its corename strings).
bool has_wide_kernels(const std::string& core) {
  constexpr std::array<const char*, 6> wide = {"Haswell",        "Zen",      "SkylakeX", "Cooperlake",
                                               "SapphireRapids", "Excavator"};
  for (const char* name : wide)
    if (strcasecmp(core.c_str(), name) == 0) return true;
  return false;
}

BlasKernelChoice choose() {
  BlasKernelChoice c;
  c.detected = c.used = openblas_get_corename();
  if (const char* forced = std::getenv("OPENBLAS_CORETYPE")) {
    c.reason = std::string("OPENBLAS_CORETYPE=") + forced + " is set";
    return c;
  }
#if defined(__x86_64__)
  const char* want = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    want = "SkylakeX";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) want = "Haswell";
  if (!want || has_wide_kernels(c.detected)) {
    c.reason = "OpenBLAS's own choice";
    return c;
  }
  // Only a DYNAMIC_ARCH build can switch, through these two exported functions: the first
  // forgets the kernel table, the second picks one again, reading OPENBLAS_CORETYPE.
  using Hook = void (*)();
  auto quit = reinterpret_cast<Hook>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_quit"));
  auto init = reinterpret_cast<Hook>(dlsym(RTLD_DEFAULT, "gotoblas_dynamic_init"));
  if (!quit || !init) {
    c.reason = "this OpenBLAS was not built with DYNAMIC_ARCH, so its kernels cannot be switched";
    return c;
  }
  setenv("OPENBLAS_CORETYPE", want, 1);
  quit();
  init();
  unsetenv("OPENBLAS_CORETYPE");  // child processes make their own choice
  c.used = openblas_get_corename();
  c.reason = "OpenBLAS did not recognise this CPU and fell back to " + c.detected + "; it supports " +
             (std::string(want) == "SkylakeX" ? "AVX-512" : "AVX2 + FMA");
#else
  c.reason = "OpenBLAS's own choice";
#endif
  return c;
}

}  // namespace

const BlasKernelChoice& choose_blas_kernels() {
  static const BlasKernelChoice choice = choose();
  return choice;
}

}  // namespace dualflow::cpu
