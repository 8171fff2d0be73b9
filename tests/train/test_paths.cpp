// Tests of the probability paths in f64: endpoints, u_t = d/dt x_t by forward-mode jvp along t
// and by central differences, the prediction conversions' round trips, the curved user path,
// and the config factory's refusals.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "engine/dualflow.h"
#include "tests/engine/test_util.h"
#include "train/paths.h"

namespace dualflow::testing {
namespace {

using Catch::Matchers::Contains;

struct Batch {
  Tensor x0, x1, t;
};

// x: [N, 3, 2] so that t [N] has to broadcast over more than one sample dim.
Batch make_batch(uint64_t seed, double t_lo = 0.05, double t_hi = 0.95) {
  Generator g(seed);
  return {randn({5, 3, 2}, g, DType::f64), randn({5, 3, 2}, g, DType::f64) * 2.0 + 0.5,
          uniform({5}, t_lo, t_hi, g, DType::f64)};
}

std::vector<std::pair<std::string, PathParams>> all_schedulers() {
  return {{"condot", {}},
          {"condot", {{"sigma_min", 0.01}}},
          {"vp", {}},
          {"ve", {{"sigma_min", 0.01}, {"sigma_max", 5.0}}},
          {"cosine", {}},
          {"polynomial", {{"n", 1.0}}},
          {"polynomial", {{"n", 3.0}}}};
}

std::string label(const std::pair<std::string, PathParams>& s) {
  std::string out = s.first;
  for (const auto& [k, v] : s.second) out += " " + k + "=" + std::to_string(v);
  return out;
}

// d/dt x_t along t, by jvp and by central differences, against the path's own u_t.
void check_velocity(const ProbabilityPath& path, const Batch& b, const std::string& what) {
  INFO(what);
  PathSample s = path.sample(b.x0, b.x1, b.t);
  auto f = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{path.sample(b.x0, b.x1, in[0]).x_t}; };
  JvpResult r = jvp(f, {b.t}, {ones_like(b.t)});
  require_close(r.outputs[0], s.x_t, 1e-14, 1e-14, "jvp primal = x_t");
  require_close(r.tangents[0], s.u_t, 1e-10, 1e-10, "jvp along t = u_t");

  const double h = 1e-6;
  Tensor fd = (path.sample(b.x0, b.x1, b.t + h).x_t - path.sample(b.x0, b.x1, b.t - h).x_t) / (2 * h);
  require_close(fd, s.u_t, 1e-6, 1e-6, "central difference = u_t");
}

TEST_CASE("affine paths: u_t is d/dt x_t (jvp and finite differences)", "[paths]") {
  Batch b = make_batch(1);
  for (const auto& sch : all_schedulers()) check_velocity(*make_affine_path(sch.first, sch.second), b, label(sch));
}

TEST_CASE("affine paths: endpoints", "[paths]") {
  Batch b = make_batch(2);
  Tensor zero = zeros({5}, DType::f64), one = ones({5}, DType::f64);
  auto at = [&](const AffinePath& p, const Tensor& t) { return p.sample(b.x0, b.x1, t).x_t; };

  SECTION("exact endpoints") {
    for (const char* name : {"condot", "cosine", "polynomial"}) {
      INFO(name);
      auto p = make_affine_path(name);
      require_close(at(*p, zero), b.x0, 0, 1e-15, "t = 0 gives x_0");
      require_close(at(*p, one), b.x1, 0, 1e-15, "t = 1 gives x_1");
    }
  }
  SECTION("condot with sigma_min") {
    auto p = make_affine_path("condot", {{"sigma_min", 0.05}});
    require_close(at(*p, zero), b.x0, 0, 1e-15, "t = 0 gives x_0");
    require_close(at(*p, one), b.x1 + b.x0 * 0.05, 0, 1e-15, "t = 1 gives x_1 + sigma_min x_0");
  }
  SECTION("vp: x_1 at t = 1, x_0 up to alpha_0 = exp(-T(1)/2) at t = 0") {
    auto p = make_affine_path("vp");
    require_close(at(*p, one), b.x1, 0, 1e-15, "t = 1");
    const double alpha0 = std::exp(-0.5 * (0.1 + 0.5 * (20.0 - 0.1)));
    SchedulerValues v = p->scheduler()(zero);
    require_close(v.alpha, full_like(zero, alpha0), 1e-14, 0, "alpha_0");
    REQUIRE(max_abs_diff(at(*p, zero), b.x0) < 0.05);
  }
  SECTION("ve: x_1 + sigma_max x_0 at t = 0, x_1 + sigma_min x_0 at t = 1") {
    auto p = make_affine_path("ve", {{"sigma_min", 0.01}, {"sigma_max", 50.0}});
    require_close(at(*p, zero), b.x1 + b.x0 * 50.0, 1e-14, 1e-13, "t = 0");
    require_close(at(*p, one), b.x1 + b.x0 * 0.01, 1e-14, 1e-14, "t = 1");
  }
}

TEST_CASE("affine paths: scheduler values match their closed forms", "[paths]") {
  Tensor t = from_vector(std::vector<double>{0.1, 0.5, 0.8}, {3}, DType::f64);
  auto vp = make_scheduler("vp", {{"beta_min", 0.2}, {"beta_max", 10.0}});
  SchedulerValues v = (*vp)(t);
  auto tv = t.to_vector<double>();
  auto a = v.alpha.to_vector<double>(), s = v.sigma.to_vector<double>();
  for (size_t i = 0; i < tv.size(); ++i) {
    double u = 1 - tv[i];
    double big_t = u * 0.2 + u * u / 2 * (10.0 - 0.2);
    REQUIRE(a[i] == Approx(std::exp(-big_t / 2)).epsilon(1e-14));
    REQUIRE(a[i] * a[i] + s[i] * s[i] == Approx(1.0).epsilon(1e-14));  // variance preserving
  }
  SchedulerValues c = CosineScheduler()(t);
  require_close(square(c.alpha) + square(c.sigma), ones_like(t), 1e-15, 0, "cosine is variance preserving");
}

TEST_CASE("affine paths: prediction conversions round-trip", "[paths]") {
  Batch b = make_batch(3, 0.1, 0.9);
  for (const auto& sch : all_schedulers()) {
    INFO(label(sch));
    auto p = make_affine_path(sch.first, sch.second);
    PathSample s = p->sample(b.x0, b.x1, b.t);
    require_close(p->velocity_to_target(s.u_t, s.x_t, b.t), b.x1, 1e-9, 1e-9, "velocity -> x_1");
    require_close(p->velocity_to_epsilon(s.u_t, s.x_t, b.t), b.x0, 1e-9, 1e-9, "velocity -> x_0");
    require_close(p->target_to_velocity(b.x1, s.x_t, b.t), s.u_t, 1e-9, 1e-9, "x_1 -> velocity");
    require_close(p->epsilon_to_velocity(b.x0, s.x_t, b.t), s.u_t, 1e-9, 1e-9, "x_0 -> velocity");
    require_close(p->target_to_epsilon(b.x1, s.x_t, b.t), b.x0, 1e-9, 1e-9, "x_1 -> x_0");
    require_close(p->epsilon_to_target(b.x0, s.x_t, b.t), b.x1, 1e-9, 1e-9, "x_0 -> x_1");
    // A prediction that is off lands off again after the round trip through another form.
    Tensor v2 = s.u_t + 0.3;
    require_close(p->target_to_velocity(p->velocity_to_target(v2, s.x_t, b.t), s.x_t, b.t), v2, 1e-9, 1e-9,
                  "velocity -> x_1 -> velocity");
    require_close(p->epsilon_to_velocity(p->velocity_to_epsilon(v2, s.x_t, b.t), s.x_t, b.t), v2, 1e-9, 1e-9,
                  "velocity -> x_0 -> velocity");
  }
}

TEST_CASE("curved 2-D path: a user-defined path through the same interface", "[paths]") {
  Generator g(4);
  Batch b{randn({6, 2}, g, DType::f64), randn({6, 2}, g, DType::f64) + 1.0, uniform({6}, 0.05, 0.95, g, DType::f64)};
  CurvedPath2D curved(0.7);
  const ProbabilityPath& path = curved;
  check_velocity(path, b, "curved");
  Tensor zero = zeros({6}, DType::f64), one = ones({6}, DType::f64), half = full({6}, 0.5, DType::f64);
  require_close(path.sample(b.x0, b.x1, zero).x_t, b.x0, 0, 1e-15, "t = 0");
  require_close(path.sample(b.x0, b.x1, one).x_t, b.x1, 0, 1e-15, "t = 1");
  // At t = 1/2 the point sits a / 4 off the chord's midpoint, perpendicular to the chord, to its left.
  Tensor off = path.sample(b.x0, b.x1, half).x_t - (b.x0 + b.x1) * 0.5;
  Tensor d = b.x1 - b.x0;
  require_close(sqrt(sum(square(off), {1})), full({6}, 0.7 / 4, DType::f64), 1e-12, 0, "bend size");
  require_close(sum(off * d, {1}), zeros({6}, DType::f64), 0, 1e-12, "bend is normal to the chord");
  Tensor cross = d.select(1, 0) * off.select(1, 1) - d.select(1, 1) * off.select(1, 0);
  REQUIRE(amin(cross).item() > 0);
  // Coincident endpoints: no direction, no bend, nothing undefined.
  PathSample same = path.sample(b.x0, b.x0, half);
  require_close(same.x_t, b.x0, 0, 1e-15, "x_1 = x_0");
  require_close(same.u_t, zeros_like(b.x0), 0, 1e-15, "x_1 = x_0: velocity");
  REQUIRE_THROWS_WITH(path.sample(zeros({6, 3}, DType::f64), zeros({6, 3}, DType::f64), half),
                      Contains("[N, 2]") && Contains("[6,3]"));
}

TEST_CASE("paths: factory and input checks", "[paths]") {
  REQUIRE(make_affine_path("condot")->name() == "affine(condot)");
  REQUIRE_THROWS_WITH(make_scheduler("linear"),
                      Contains("unknown scheduler 'linear'") && Contains("condot, vp, ve, cosine, polynomial"));
  REQUIRE_THROWS_WITH(make_scheduler("vp", {{"sigma_min", 0.1}}),
                      Contains("beta_min, beta_max") && Contains("'sigma_min'"));
  REQUIRE_THROWS_WITH(make_scheduler("ve", {{"sigma_min", 2.0}, {"sigma_max", 1.0}}), Contains("sigma_min=2"));
  auto p = make_affine_path("cosine");
  Tensor x = zeros({4, 2}, DType::f64);
  REQUIRE_THROWS_WITH(p->sample(x, x, zeros({3}, DType::f64)), Contains("t must be [N] = [4]") && Contains("[3]"));
  REQUIRE_THROWS_WITH(p->sample(x, x, zeros({4})), Contains("share a dtype"));
  REQUIRE_THROWS_WITH(p->sample(x, zeros({4, 3}, DType::f64), zeros({4}, DType::f64)), Contains("[4,2] and [4,3]"));
  // f32 works the same way (the training dtype).
  PathSample s = p->sample(zeros({4, 2}), ones({4, 2}), full({4}, 1.0));
  REQUIRE(s.x_t.dtype() == DType::f32);
  REQUIRE(max_abs_diff(s.x_t, ones({4, 2})) < 1e-6);
}

}  // namespace
}  // namespace dualflow::testing
