// OpenBLAS's kernels as the engine chose them for this CPU (kernels/cpu/blas_kernels.h): on a
// CPU with AVX2 + FMA the GEMMs never run on kernels without them, unless the user said so
// through OPENBLAS_CORETYPE, and the switched kernels multiply correctly.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <string>

#include "engine/dualflow.h"
#include "kernels/cpu/blas_kernels.h"

using namespace dualflow;

TEST_CASE("OpenBLAS runs kernels as wide as the CPU allows, and they multiply correctly", "[kernels][blas]") {
  Generator g(5);
  // Shapes off every kernel's block sizes; the first matmul registers the CPU backend.
  const int64_t m = 67, k = 45, n = 33;
  Tensor a = randn({m, k}, g), b = randn({k, n}, g);
  Tensor c = matmul(a, b);
  const std::vector<float> av = a.to_vector<float>(), bv = b.to_vector<float>(), cv = c.to_vector<float>();
  double worst = 0;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double want = 0;
      for (int64_t p = 0; p < k; ++p) want += double(av[size_t(i * k + p)]) * double(bv[size_t(p * n + j)]);
      worst = std::max(worst, std::abs(want - double(cv[size_t(i * n + j)])));
    }
  REQUIRE(worst < 1e-4);

  const cpu::BlasKernelChoice& choice = cpu::choose_blas_kernels();
  INFO("detected " << choice.detected << ", used " << choice.used << ": " << choice.reason);
  REQUIRE(!choice.used.empty());
#if defined(__x86_64__)
  const bool wide_cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (wide_cpu && !std::getenv("OPENBLAS_CORETYPE") && choice.reason.find("DYNAMIC_ARCH") == std::string::npos) {
    const std::string& u = choice.used;
    REQUIRE((u == "Haswell" || u == "Zen" || u == "SkylakeX" || u == "Cooperlake" || u == "SapphireRapids" ||
             u == "Excavator"));
  }
#endif
}
