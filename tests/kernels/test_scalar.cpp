// The scalar math both backends share: Philox against its published known answers, 16-bit
// conversions on edge cases, and every activation's derivative formula against central
// differences of its value formula.
#include <catch2/catch.hpp>

#include <cmath>

#include "kernels/common/half.h"
#include "kernels/common/philox.h"
#include "kernels/common/scalar_ops.h"

using namespace dualflow;

TEST_CASE("Philox4x32-10 matches the Random123 known-answer vectors", "[kernels][rng]") {
  philox::Block z = philox::block(0, 0);
  REQUIRE(z.v[0] == 0x6627e8d5u);
  REQUIRE(z.v[1] == 0xe169c58du);
  REQUIRE(z.v[2] == 0xbc57ac4cu);
  REQUIRE(z.v[3] == 0x9b00dbd8u);
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
