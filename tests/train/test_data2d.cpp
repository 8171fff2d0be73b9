// Tests of the 2-D toy datasets: shape, dtype, device, determinism per seed, ranges, and one
// statistic that pins each set's geometry (checkerboard squares, gaussian centres, moon and
// circle radii, spiral symmetry, pinwheel arms); the factory's refusal of unknown names.
#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>
#include <vector>

#include "engine/dualflow.h"
#include "tests/engine/test_util.h"
#include "train/data2d.h"

namespace dualflow::testing {
namespace {

using Catch::Matchers::Contains;

constexpr int64_t kN = 20000;

std::vector<double> draw(const std::string& name, uint64_t seed = 1) {
  Generator g(seed);
  Tensor x = sample_2d(name, kN, g, DType::f64);
  REQUIRE(x.shape() == Shape{kN, 2});
  return x.to_vector<double>();
}

TEST_CASE("data2d: shapes, dtype, determinism, ranges", "[data2d]") {
  for (const auto& name : dataset_2d_names()) {
    INFO(name);
    Generator g(3), h(3);
    Tensor a = sample_2d(name, 257, g), b = sample_2d(name, 257, h);
    REQUIRE(a.shape() == Shape{257, 2});
    REQUIRE(a.dtype() == DType::f32);
    REQUIRE(a.device() == Device::cpu());
    REQUIRE(max_abs_diff(a, b) == 0);  // same seed, same points
    REQUIRE(g.offset() > 0);           // and the generator moved on
    REQUIRE(max_abs_diff(sample_2d(name, 257, g), a) > 0);
    REQUIRE(sample_2d(name, 0, g).shape() == Shape{0, 2});
    for (double v : draw(name)) {
      REQUIRE(std::isfinite(v));
      REQUIRE(std::abs(v) < 6);
    }
  }
  Generator g(4);
  REQUIRE_THROWS_WITH(sample_2d("swissroll", 4, g),
                      Contains("unknown dataset 'swissroll'") &&
                          Contains("checkerboard, moons, 8gaussians, circles, spirals, pinwheel"));
  REQUIRE_THROWS_WITH(checkerboard(-1, g), Contains("given -1"));
}

TEST_CASE("data2d: checkerboard points lie on the black squares", "[data2d]") {
  auto xy = draw("checkerboard");
  std::vector<int> per_cell(64, 0);
  for (int64_t i = 0; i < kN; ++i) {
    const double x = xy[2 * i] / 2, y = xy[2 * i + 1] / 2;
    REQUIRE(x >= -2);
    REQUIRE(x < 2);
    REQUIRE(y >= -2);
    REQUIRE(y < 2);
    const int cx = int(std::floor(x)), cy = int(std::floor(y));
    REQUIRE((cx + cy) % 2 == 0);
    per_cell[(cx + 2) * 4 + (cy + 2)]++;
  }
  // The 8 black cells (of the 4 x 4 grid at scale 1/2) share the points evenly.
  int black = 0;
  for (int c : per_cell) {
    if (c == 0) continue;
    ++black;
    REQUIRE(c == Approx(kN / 8.0).epsilon(0.1));
  }
  REQUIRE(black == 8);
}

TEST_CASE("data2d: 8 gaussians have their means at the 8 centres", "[data2d]") {
  auto xy = draw("8gaussians");
  std::vector<double> sx(8, 0), sy(8, 0), cnt(8, 0);
  const double radius = 4 / 1.414;
  for (int64_t i = 0; i < kN; ++i) {
    const double x = xy[2 * i], y = xy[2 * i + 1];
    int k = int(std::lround(std::atan2(y, x) / (std::numbers::pi / 4)));
    k = (k + 8) % 8;
    sx[k] += x;
    sy[k] += y;
    cnt[k] += 1;
  }
  for (int k = 0; k < 8; ++k) {
    INFO("centre " << k);
    REQUIRE(cnt[k] == Approx(kN / 8.0).epsilon(0.1));
    // Nearest-centre sorting barely truncates: the clusters (std 0.35) sit 2.2 apart.
    REQUIRE(sx[k] / cnt[k] == Approx(radius * std::cos(k * std::numbers::pi / 4)).margin(0.03));
    REQUIRE(sy[k] / cnt[k] == Approx(radius * std::sin(k * std::numbers::pi / 4)).margin(0.03));
  }
}

TEST_CASE("data2d: moons and circles", "[data2d]") {
  SECTION("two moons: mean (0, 0.3) and each point near one of the two unit half circles") {
    auto xy = draw("moons");
    double mx = 0, my = 0, near = 0;
    for (int64_t i = 0; i < kN; ++i) {
      const double x = (xy[2 * i] + 1) / 2, y = (xy[2 * i + 1] + 0.2) / 2;  // undo scale and shift
      mx += xy[2 * i] / kN;
      my += xy[2 * i + 1] / kN;
      const double r_outer = std::hypot(x, y), r_inner = std::hypot(x - 1, y - 0.5);
      near += (std::abs(r_outer - 1) < 0.3 || std::abs(r_inner - 1) < 0.3) ? 1.0 / kN : 0.0;
    }
    // Outer moon's mean (0, 2/pi), inner (1, 1/2 - 2/pi): together (1/2, 1/4) -> (0, 0.3).
    REQUIRE(mx == Approx(0).margin(0.03));
    REQUIRE(my == Approx(0.3).margin(0.03));
    REQUIRE(near > 0.99);
  }
  SECTION("circles: radii 3 and 1.5 in equal shares") {
    auto xy = draw("circles");
    double outer = 0, inner = 0;
    for (int64_t i = 0; i < kN; ++i) {
      const double r = std::hypot(xy[2 * i], xy[2 * i + 1]);
      outer += std::abs(r - 3) < 0.75 ? 1.0 / kN : 0.0;
      inner += std::abs(r - 1.5) < 0.75 ? 1.0 / kN : 0.0;
    }
    REQUIRE(outer == Approx(0.5).margin(0.02));
    REQUIRE(inner == Approx(0.5).margin(0.02));
    REQUIRE(outer + inner > 0.999);
  }
}

TEST_CASE("data2d: spirals are point-symmetric and reach radius about pi", "[data2d]") {
  auto xy = draw("spirals");
  double mx = 0, my = 0, rmax = 0;
  for (int64_t i = 0; i < kN; ++i) {
    mx += xy[2 * i] / kN;
    my += xy[2 * i + 1] / kN;
    rmax = std::max(rmax, std::hypot(xy[2 * i], xy[2 * i + 1]));
  }
  REQUIRE(std::abs(mx) < 0.05);
  REQUIRE(std::abs(my) < 0.05);
  REQUIRE(rmax > 3.0);
  REQUIRE(rmax < 3.8);  // 3 pi / 3 plus the jitter and noise
}

TEST_CASE("data2d: pinwheel has five arms around radius 2", "[data2d]") {
  auto xy = draw("pinwheel");
  double mean_r = 0;
  std::vector<double> sector(5, 0);
  for (int64_t i = 0; i < kN; ++i) {
    const double x = xy[2 * i], y = xy[2 * i + 1];
    mean_r += std::hypot(x, y) / kN;
    // Undo the twist at the arm's typical radius (f0 = 1: 0.25 e) to find the arm.
    double a = std::atan2(y, x) - 0.25 * std::exp(std::hypot(x, y) / 2);
    const double step = 2 * std::numbers::pi / 5;
    int k = int(std::lround(a / step));
    sector[((k % 5) + 5) % 5] += 1.0 / kN;
  }
  REQUIRE(mean_r == Approx(2.0 * 1.0).margin(0.1));
  for (double s : sector) REQUIRE(s == Approx(0.2).margin(0.02));
}

TEST_CASE("data2d: the same points on CUDA", "[data2d][cuda]") {
  if (!cuda_available()) return;  // run with --cuda-only "[cuda]", which reports a skip without a GPU
  for (const auto& name : dataset_2d_names()) {
    Generator g(5), h(5);
    Tensor a = sample_2d(name, 100, g), b = sample_2d(name, 100, h, Device::cuda());
    REQUIRE(b.device() == Device::cuda());
    REQUIRE(max_abs_diff(b.to(Device::cpu()), a) == 0);
  }
}

}  // namespace
}  // namespace dualflow::testing
