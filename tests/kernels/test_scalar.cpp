// The scalar math both backends share: Philox against its published known answers, 16-bit
// conversions on edge cases, and every activation's derivative formula against central
// differences of its value formula; the branch-free f32 exp, tanh, sin and cos against the library,
// and the CPU kernels' sin and cos beyond the fast range.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "engine/dualflow.h"

#include "kernels/common/backend.h"
#include "kernels/common/half.h"
#include "kernels/common/philox.h"
#include "kernels/common/scalar_ops.h"
#include "kernels/cpu/parallel.h"

using namespace dualflow;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors", "[kernels][rng]") {
  philox::Block z = philox::block(0, 0);
  REQUIRE(z.v[0] == 0x6627e8d5u);
  REQUIRE(z.v[1] == 0xe169c58du);
  REQUIRE(z.v[2] == 0xbc57ac4cu);
  REQUIRE(z.v[3] == 0x9b00dbd8u);
}

TEST_CASE("the CPU random fill gives philox::sample's values bit for bit, whole blocks or not", "[kernels][rng]") {
  // The fill walks whole Philox blocks and shares each normal pair's logarithm; element i must
  // still be sample(..., i, ...), the formula the CUDA kernel evaluates one element at a time.
  const Backend& cpu_backend = backend_for(Device::cpu());
  const int before = cpu::num_threads();
  for (int threads : {1, 2, 3}) {
    cpu::set_num_threads(threads);
    for (auto dist : {philox::Dist::Uniform, philox::Dist::Normal, philox::Dist::RandInt, philox::Dist::Bernoulli}) {
      for (DType t : {DType::f32, DType::f64}) {
        const bool f64 = t == DType::f64;
        const double a = dist == philox::Dist::Bernoulli ? 0.3 : dist == philox::Dist::RandInt ? -5.0 : 0.25;
        const double b = dist == philox::Dist::RandInt ? 17.0 : 1.75;
        for (int64_t n : {1, 3, 5, 1001, 4099}) {  // partial last blocks, and enough to split
          std::vector<double> got(static_cast<size_t>(n));
          std::vector<float> got32(static_cast<size_t>(n));
          cpu_backend.random(0, dist, t, f64 ? static_cast<void*>(got.data()) : static_cast<void*>(got32.data()), n,
                             0x1234567890abcdefULL, 77, a, b);
          for (int64_t i = 0; i < n; ++i) {
            const double want = philox::sample(dist, f64, 0x1234567890abcdefULL, 77, uint64_t(i), a, b);
            INFO("dist " << int(dist) << " f64 " << f64 << " n " << n << " i " << i << " threads " << threads);
            if (f64) REQUIRE(got[size_t(i)] == want);
            else REQUIRE(got32[size_t(i)] == float(want));
          }
        }
      }
    }
  }
  cpu::set_num_threads(before);
}

TEST_CASE("f16 and bf16 conversions", "[kernels][half]") {
  REQUIRE(float(f16_t(1.0f)) == 1.0f);
  REQUIRE(f16_t(1.0f).bits == 0x3c00);
  REQUIRE(f16_t(65504.0f).bits == 0x7bff);
  REQUIRE(f16_t(65520.0f).bits == 0x7c00);                // rounds to inf
  REQUIRE(f16_t(5.960464477539063e-08f).bits == 0x0001);  // smallest subnormal
  REQUIRE(f16_t(-0.0f).bits == 0x8000);
  REQUIRE(std::isnan(float(f16_t(NAN))));
  REQUIRE(f16_t(1.0f + 1.0f / 2048).bits == 0x3c00);  // tie rounds to even
  REQUIRE(f16_t(1.0f + 3.0f / 2048).bits == 0x3c02);
  for (uint32_t b = 0; b < 0x7c00; ++b) REQUIRE(f16_t(float(f16_t::from_bits(uint16_t(b)))).bits == b);
  REQUIRE(bf16_t(1.0f).bits == 0x3f80);
  REQUIRE(float(bf16_t(3.0f)) == 3.0f);
  REQUIRE(bf16_t(1.00390625f).bits == 0x3f80);  // tie to even
  REQUIRE(std::isnan(float(bf16_t(NAN))));
}

TEST_CASE("each unary derivative formula matches central differences of the value formula", "[kernels][math]") {
  for (int k = 0; k < int(UnaryOp::kCount); ++k) {
    UnaryOp op = UnaryOp(k);
    if (op == UnaryOp::LogicalNot || op == UnaryOp::Sign) continue;
    for (double x : {-1.7, -0.3, 0.4, 1.3, 2.2}) {
      double a = 0.7, b = 1.5;
      if (op == UnaryOp::PowScalar) a = 2.5;
      bool positive_only =
          op == UnaryOp::Log || op == UnaryOp::Sqrt || op == UnaryOp::Rsqrt || op == UnaryOp::PowScalar;
      if (positive_only && x <= 0) continue;
      if (op == UnaryOp::Log1p && x <= -1) continue;
      const double h = 1e-6;
      double fd = (scalar::unary<double>(op, x + h, a, b) - scalar::unary<double>(op, x - h, a, b)) / (2 * h);
      INFO("op " << k << " at x = " << x);
      REQUIRE(scalar::unary_derivative<double>(op, x, a, b) == Approx(fd).epsilon(1e-6).margin(1e-7));
    }
  }
}

TEST_CASE("exp_f32 stays within a few ulp of the library exp and saturates like it", "[kernels][math]") {
  float worst = 0;
  for (float x = -87.0f; x < 88.7f; x += 0.0137f) {
    float ref = std::exp(x), got = scalar::exp_f32(x);
    worst = std::max(worst, std::abs(got - ref) / ref);
  }
  INFO("worst relative error " << worst);
  REQUIRE(worst < 4e-7f);
  REQUIRE(std::isinf(scalar::exp_f32(100.0f)));
  REQUIRE(scalar::exp_f32(-200.0f) == 0.0f);
  REQUIRE(std::isnan(scalar::exp_f32(NAN)));
  REQUIRE(scalar::exp_f32(0.0f) == 1.0f);
}

TEST_CASE("tanh_f32 stays within 2 ulp of the library tanh and keeps its edge values", "[kernels][math]") {
  float worst_ulp = 0;
  for (float x = -12.0f; x < 12.0f; x += 0.00073f) {
    const float ref = std::tanh(x), got = scalar::tanh_f32(x);
    const float ulp = std::nextafter(std::abs(ref), 2.0f) - std::abs(ref);
    worst_ulp = std::max(worst_ulp, std::abs(got - ref) / ulp);
  }
  INFO("worst error " << worst_ulp << " ulp");
  REQUIRE(worst_ulp <= 2.0f);
  for (float x : {1e-30f, -1e-8f}) REQUIRE(scalar::tanh_f32(x) == std::tanh(x));  // tanh x = x in f32
  REQUIRE(std::signbit(scalar::tanh_f32(-0.0f)));
  REQUIRE(scalar::tanh_f32(100.0f) == 1.0f);
  REQUIRE(scalar::tanh_f32(-INFINITY) == -1.0f);
  REQUIRE(std::isnan(scalar::tanh_f32(NAN)));
}

namespace {

// |got - exact| in units of the f32 spacing at the exact value (computed in f64).
float ulp_error(float got, double exact) {
  const float rounded = float(exact);
  const float ulp = std::nextafter(std::abs(rounded), INFINITY) - std::abs(rounded);
  return float(std::abs(double(got) - exact) / double(ulp));
}

}  // namespace

TEST_CASE("sin_cos_f32 stays within 2 ulp of the exact sin and cos up to kTrigFastLimit", "[kernels][math]") {
  std::vector<float> xs;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> magnitude_log(-30.0f, std::log10(scalar::kTrigFastLimit));
  for (int i = 0; i < 400000; ++i) {
    const float x = std::pow(10.0f, magnitude_log(rng));
    xs.push_back(i % 2 ? x : -x);
  }
  // Next to multiples of pi/2, where the reduced argument is smallest and cancels most.
  for (int k = 1; k < 41000; k += 7)
    for (float x = std::nextafter(float(k * 1.5707963267948966), 0.0f), j = 0; j < 3;
         ++j, x = std::nextafter(x, INFINITY))
      xs.push_back(x);
  float worst_sin = 0, worst_cos = 0;
  for (float x : xs) {
    worst_sin = std::max(worst_sin, ulp_error(scalar::sin_cos_f32(x, 0), std::sin(double(x))));
    worst_cos = std::max(worst_cos, ulp_error(scalar::sin_cos_f32(x, 1), std::cos(double(x))));
  }
  INFO("worst errors: sin " << worst_sin << " ulp, cos " << worst_cos << " ulp over " << xs.size() << " points");
  REQUIRE(worst_sin <= 2.0f);
  REQUIRE(worst_cos <= 2.0f);
  REQUIRE(scalar::sin_cos_f32(0.0f, 1) == 1.0f);
  REQUIRE(scalar::sin_cos_f32(0.0f, 0) == 0.0f);
  REQUIRE(std::signbit(scalar::sin_cos_f32(-0.0f, 0)));
  for (float x : {1e-30f, -3e-5f}) REQUIRE(scalar::sin_cos_f32(x, 0) == x);  // sin x = x in f32
}

TEST_CASE("f32 sin and cos kernels: the library beyond the fast range, nan for inf, and their derivatives",
          "[kernels][math]") {
  const std::vector<float> xs = {0.5f,  -3.0f,  65536.0f, 65537.0f,  -1e5f, 3.5e7f,
                                 1e30f, -1e38f, INFINITY, -INFINITY, NAN};
  const Tensor x = from_vector(xs, {int64_t(xs.size())});
  const std::vector<float> s = sin(x).to_vector<float>(), c = cos(x).to_vector<float>();
  // Reverse mode runs the fused g * f'(x) kernel: with g = 1 it is f'(x) itself.
  const Tensor xg = x.clone();
  xg.set_requires_grad();
  const std::vector<float> ds = grad({sum(sin(xg))}, {xg})[0].to_vector<float>();
  const std::vector<float> dc = grad({sum(cos(xg))}, {xg})[0].to_vector<float>();
  for (size_t i = 0; i < xs.size(); ++i) {
    CAPTURE(xs[i]);
    if (std::isfinite(xs[i])) {
      CHECK(ulp_error(s[i], std::sin(double(xs[i]))) <= 2.0f);
      CHECK(ulp_error(c[i], std::cos(double(xs[i]))) <= 2.0f);
      CHECK(ulp_error(ds[i], std::cos(double(xs[i]))) <= 2.0f);
      CHECK(ulp_error(dc[i], -std::sin(double(xs[i]))) <= 2.0f);
    } else {
      CHECK((std::isnan(s[i]) && std::isnan(c[i]) && std::isnan(ds[i]) && std::isnan(dc[i])));
    }
  }
}
