// Tests of the ODE solvers in f64: convergence order of the fixed-step methods on a linear
// system with a known solution, Dopri5 accuracy, work and step rejection, reverse time,
// trajectory output, exact NFE accounting and option validation.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "engine/dualflow.h"
#include "tests/engine/test_util.h"
#include "tests/train/dense_matrix.h"
#include "train/solvers.h"

namespace dualflow::testing {
namespace {

using Catch::Matchers::Contains;
// dx/dt = A x on a batch of row vectors: x' = x Aᵀ, solved by x(t) = x(0) exp(tA)ᵀ.
const Mat kA = {{-0.4, 1.3, 0.2}, {-0.9, -0.1, 0.5}, {0.3, -0.6, -0.7}};

struct LinearProblem {
  Tensor a = to_tensor(kA);
  Tensor x0 = uniform_f64({4, 3}, -1, 1, 11);
  int64_t calls = 0;
  VelocityField field() {
    return [this](const Tensor& x, double) {
      ++calls;
      return dualflow::matmul(x, a.t());
    };
  }
  Tensor exact(double t0, double t1) const { return dualflow::matmul(x0, to_tensor(expm(kA, t1 - t0)).t()); }
};

double error_at(OdeMethod method, int64_t steps) {
  LinearProblem p;
  OdeOptions o;
  o.method = method;
  o.steps = steps;
  return max_abs_diff(odeint(p.field(), p.x0, 0.0, 1.5, o).x, p.exact(0.0, 1.5));
}

// Least-squares slope of log(error) against log(steps).
double convergence_slope(OdeMethod method, const std::vector<int64_t>& steps) {
  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  const double n = double(steps.size());
  for (int64_t s : steps) {
    const double x = std::log(double(s)), y = std::log(error_at(method, s));
    sx += x, sy += y, sxx += x * x, sxy += x * y;
  }
  return (n * sxy - sx * sy) / (n * sxx - sx * sx);
}

TEST_CASE("fixed-step solvers converge at their order", "[solvers]") {
  for (OdeMethod m : {OdeMethod::Euler, OdeMethod::Midpoint, OdeMethod::Heun, OdeMethod::RK4}) {
    const double slope = convergence_slope(m, {16, 32, 64, 128});
    INFO(ode_method_name(m) << ": error ~ steps^" << slope);
    REQUIRE(std::abs(-slope - ode_method_order(m)) < 0.15);
  }
  // RK4 with 128 steps is already near the exact solution.
  REQUIRE(error_at(OdeMethod::RK4, 128) < 1e-9);
}

TEST_CASE("fixed-step solvers count exactly their evaluations and accept every step", "[solvers]") {
  const std::vector<std::pair<OdeMethod, int64_t>> per_step = {
      {OdeMethod::Euler, 1}, {OdeMethod::Midpoint, 2}, {OdeMethod::Heun, 2}, {OdeMethod::RK4, 4}};
  for (auto [m, k] : per_step) {
    LinearProblem p;
    OdeOptions o;
    o.method = m;
    o.steps = 7;
    OdeResult r = odeint(p.field(), p.x0, 0.0, 1.0, o);
    INFO(ode_method_name(m));
    REQUIRE(r.nfe == 7 * k);
    REQUIRE(p.calls == r.nfe);
    REQUIRE(r.accepted_steps == 7);
    REQUIRE(r.rejected_steps == 0);
  }
}

TEST_CASE("fixed-step solvers on an explicit, non-uniform and reversed grid", "[solvers]") {
  LinearProblem p;
  OdeOptions o;
  o.method = OdeMethod::RK4;
  // Finer near the start; 1.2 down to 0.
  for (int i = 0; i <= 40; ++i) o.time_grid.push_back(1.2 * (1 - std::pow(i / 40.0, 1.5)));
  o.save_times = {1.2, o.time_grid[10], 0.5, 0.0};
  OdeResult r = odeint(p.field(), p.x0, 1.2, 0.0, o);
  REQUIRE(r.nfe == 4 * 40);
  require_close(r.x, p.exact(1.2, 0.0), 0, 1e-6, "rk4 on a reversed grid");
  REQUIRE(r.trajectory.size() == 4);
  REQUIRE(max_abs_diff(r.trajectory[0], p.x0) == 0.0);
  require_close(r.trajectory[1], p.exact(1.2, o.time_grid[10]), 0, 1e-7, "state at a grid point");
  // 0.5 lies between grid points: linear interpolation of two accurate states.
  require_close(r.trajectory[2], p.exact(1.2, 0.5), 0, 2e-3, "interpolated state");
  REQUIRE(max_abs_diff(r.trajectory[3], r.x) == 0.0);

  // The same grid run piecewise reaches the same point: saving changes nothing.
  OdeOptions first = o;
  first.save_times = {};
  first.time_grid.assign(o.time_grid.begin(), o.time_grid.begin() + 11);
  OdeResult part = odeint(p.field(), p.x0, 1.2, o.time_grid[10], first);
  REQUIRE(max_abs_diff(part.x, r.trajectory[1]) == 0.0);
}

TEST_CASE("dopri5 reaches its tolerance with less work when looser", "[solvers]") {
  int64_t previous_nfe = 0;
  for (double tol : {1e-10, 1e-7, 1e-4}) {
    LinearProblem p;
    OdeOptions o;
    o.rtol = o.atol = tol;
    OdeResult r = odeint(p.field(), p.x0, 0.0, 1.5, o);
    const double err = max_abs_diff(r.x, p.exact(0.0, 1.5));
    INFO("tol " << tol << ": error " << err << ", nfe " << r.nfe << ", accepted " << r.accepted_steps << ", rejected "
                << r.rejected_steps);
    REQUIRE(err < 10 * tol);
    // 1 NFE for f(t0, x0), 1 for the first-step probe, 6 per attempted step (FSAL).
    REQUIRE(r.nfe == 2 + 6 * (r.accepted_steps + r.rejected_steps));
    REQUIRE(p.calls == r.nfe);
    if (previous_nfe) REQUIRE(r.nfe < previous_nfe);
    previous_nfe = r.nfe;
  }
}

TEST_CASE("dopri5 on a time-dependent field, forwards and backwards", "[solvers]") {
  // dx/dt = cos(t) x  =>  x(t) = x(t0) exp(sin t − sin t0).
  VelocityField f = [](const Tensor& x, double t) { return mul(x, std::cos(t)); };
  Tensor x0 = uniform_f64({5, 2}, -2, 2, 3);
  OdeOptions o;
  o.rtol = o.atol = 1e-8;
  o.save_times = {0.0, 0.7, 2.0, 3.3, 4.0};
  OdeResult fwd = odeint(f, x0, 0.0, 4.0, o);
  require_close(fwd.x, mul(x0, std::exp(std::sin(4.0))), 1e-6, 1e-7, "dopri5 forwards");
  REQUIRE(fwd.trajectory.size() == 5);
  for (size_t i = 0; i < o.save_times.size(); ++i) {
    INFO("dense output at t = " << o.save_times[i]);
    require_close(fwd.trajectory[i], mul(x0, std::exp(std::sin(o.save_times[i]))), 1e-6, 1e-6, "dense output");
  }
  // Asking for outputs does not change the steps taken.
  OdeOptions plain = o;
  plain.save_times = {};
  OdeResult fwd_plain = odeint(f, x0, 0.0, 4.0, plain);
  REQUIRE(fwd_plain.nfe == fwd.nfe);
  REQUIRE(max_abs_diff(fwd_plain.x, fwd.x) == 0.0);

  OdeOptions back = plain;
  OdeResult bwd = odeint(f, fwd.x, 4.0, 0.0, back);
  require_close(bwd.x, x0, 1e-6, 1e-6, "dopri5 back to the start");
  REQUIRE(bwd.nfe == 2 + 6 * (bwd.accepted_steps + bwd.rejected_steps));
}

TEST_CASE("dopri5 rejects steps on a stiff-ish start and still meets its tolerance", "[solvers]") {
  // A fast transient onto the slow manifold x = sin t: x(t) = sin-like + exp(-60 t) term.
  // Exact: x(t) = c e^{-λt} + λ(λ sin t − cos t)/(λ² + 1), c = x0 + λ/(λ² + 1).
  const double lambda = 60;
  VelocityField f = [&](const Tensor& x, double t) { return mul(add(x, -std::sin(t)), -lambda); };
  Tensor x0 = from_vector(std::vector<double>{1.0, -0.5}, {2, 1}, DType::f64);
  OdeOptions o;
  o.rtol = o.atol = 1e-6;
  o.first_step = 0.5;  // far too large for the transient: the controller must back off
  OdeResult r = odeint(f, x0, 0.0, 2.0, o);
  INFO("accepted " << r.accepted_steps << ", rejected " << r.rejected_steps << ", nfe " << r.nfe);
  REQUIRE(r.rejected_steps > 0);
  // With a given first step there is no probe: 1 + 6 per attempted step.
  REQUIRE(r.nfe == 1 + 6 * (r.accepted_steps + r.rejected_steps));
  const double k = lambda / (lambda * lambda + 1);
  std::vector<double> want;
  for (double v : {1.0, -0.5})
    want.push_back((v + k) * std::exp(-lambda * 2.0) + k * (lambda * std::sin(2.0) - std::cos(2.0)));
  require_close(r.x, from_vector(want, {2, 1}, DType::f64), 1e-4, 1e-5, "stiff-ish solution");
}

TEST_CASE("dopri5 step limits: max_steps and dt_min fail clearly, dt_max bounds the steps", "[solvers]") {
  LinearProblem p;
  OdeOptions o;
  o.rtol = o.atol = 1e-12;
  o.max_steps = 3;
  REQUIRE_THROWS_WITH(odeint(p.field(), p.x0, 0.0, 1.0, o), Contains("max_steps = 3"));
  o.max_steps = 100000;
  o.dt_min = 0.2;
  REQUIRE_THROWS_WITH(odeint(p.field(), p.x0, 0.0, 1.0, o), Contains("below dt_min = 0.2"));
  OdeOptions bounded;
  bounded.dt_max = 0.05;
  OdeResult r = odeint(p.field(), p.x0, 0.0, 1.0, bounded);
  REQUIRE(r.accepted_steps >= 20);
}

TEST_CASE("solvers run under the caller's grad mode", "[solvers]") {
  Tensor a = to_tensor(kA);
  a.set_requires_grad();
  Tensor x0 = uniform_f64({2, 3}, -1, 1, 5);
  VelocityField f = [&](const Tensor& x, double) { return dualflow::matmul(x, a.t()); };
  for (OdeMethod m : {OdeMethod::Heun, OdeMethod::Dopri5}) {
    OdeOptions o;
    o.method = m;
    o.steps = 5;
    REQUIRE(odeint(f, x0, 0.0, 1.0, o).x.requires_grad());
    NoGradGuard no_grad;
    REQUIRE_FALSE(odeint(f, x0, 0.0, 1.0, o).x.requires_grad());
  }
}

TEST_CASE("odeint validates its options and names what it expected", "[solvers]") {
  LinearProblem p;
  auto f = p.field();
  OdeOptions o;
  o.method = OdeMethod::Euler;
  o.steps = 0;
  REQUIRE_THROWS_WITH(odeint(f, p.x0, 0.0, 1.0, o), Contains("steps must be >= 1, got 0"));
  o.steps = 4;
  REQUIRE_THROWS_WITH(odeint(f, p.x0, 0.5, 0.5, o), Contains("t0 and t1 must differ"));
  o.time_grid = {0.0, 0.6, 0.4, 1.0};
  REQUIRE_THROWS_WITH(odeint(f, p.x0, 0.0, 1.0, o), Contains("strictly monotone"));
  o.time_grid = {0.0, 0.5, 0.9};
  REQUIRE_THROWS_WITH(odeint(f, p.x0, 0.0, 1.0, o), Contains("end at t1 = 1"));
  o.time_grid = {};
  o.save_times = {0.5, 0.2};
  REQUIRE_THROWS_WITH(odeint(f, p.x0, 0.0, 1.0, o), Contains("monotone in the direction"));
  o.save_times = {1.5};
  REQUIRE_THROWS_WITH(odeint(f, p.x0, 0.0, 1.0, o), Contains("outside the integration interval"));
  OdeOptions d;
  d.rtol = 0;
  REQUIRE_THROWS_WITH(odeint(f, p.x0, 0.0, 1.0, d), Contains("rtol must be > 0, got 0"));
  d.rtol = 1e-5;
  d.atol = -1;
  REQUIRE_THROWS_WITH(odeint(f, p.x0, 0.0, 1.0, d), Contains("atol must be > 0, got -1"));
  REQUIRE(parse_ode_method("rk4") == OdeMethod::RK4);
  REQUIRE(parse_ode_method("dopri5") == OdeMethod::Dopri5);
  REQUIRE(parse_ode_method("rk45") == OdeMethod::Dopri5);  // scipy's name for the same pair
  REQUIRE_THROWS_WITH(parse_ode_method("RK45"), Contains("expected one of: euler, midpoint, heun, rk4, dopri5"));
  REQUIRE(ode_method_names() == std::vector<std::string>{"euler", "midpoint", "heun", "rk4", "dopri5", "rk45"});
  REQUIRE(ode_method_names(true) == std::vector<std::string>{"euler", "midpoint", "heun", "rk4"});
}

}  // namespace
}  // namespace dualflow::testing

namespace dualflow::testing {

TEST_CASE("jittered time grids stay monotone, keep their ends and move between draws", "[solvers]") {
  Generator gen(9);
  const std::vector<double> uniform = uniform_time_grid(1.0, 0.0, 10);
  REQUIRE(jittered_time_grid(1.0, 0.0, 10, 0.0, gen) == uniform);
  const std::vector<double> a = jittered_time_grid(1.0, 0.0, 10, 0.9, gen),
                            b = jittered_time_grid(1.0, 0.0, 10, 0.9, gen);
  REQUIRE(a.size() == 11);
  REQUIRE((a.front() == 1.0 && a.back() == 0.0));
  REQUIRE(a != b);
  for (size_t i = 1; i < a.size(); ++i) {
    REQUIRE(a[i] < a[i - 1]);
    REQUIRE(std::abs(a[i] - uniform[i]) <= 0.45 * 0.1 + 1e-15);
  }
  // odeint accepts it, and a linear ODE is integrated exactly enough by RK4 on it.
  OdeOptions o;
  o.method = OdeMethod::RK4;
  o.time_grid = a;
  Tensor y = odeint([](const Tensor& x, double) { return x * -1.0; }, full({1}, 1.0, DType::f64), 1.0, 0.0, o).x;
  REQUIRE(y.item() == Approx(std::exp(1.0)).epsilon(1e-5));
  REQUIRE_THROWS_WITH(jittered_time_grid(0.0, 1.0, 4, 1.0, gen), Catch::Contains("jitter"));
}

}  // namespace dualflow::testing

namespace dualflow::testing {

TEST_CASE("dopri5 against scipy's RK45 (the same pair) on van der Pol: no more evaluations, as accurate",
          "[solvers]") {
  // tools/reference/scipy_rk45_nfe.py printed these with scipy 1.17.1: solve_ivp(method="RK45",
  // rtol = atol = tol)'s nfev and largest endpoint error, against DOP853 at rtol = atol = 1e-13.
  const std::vector<double> reference = {-1.85158414160432, 0.63458421353673,  0.140722611087999, 2.09820586515685,
                                         0.992884806622552, -1.40634410070505, -1.16730142690357, -0.490417463295976};
  struct Scipy {
    double tol;
    int64_t nfe;
    double error;
  };
  VelocityField van_der_pol = [](const Tensor& x, double) {
    const Tensor p = x.select(1, 0), q = x.select(1, 1);
    return stack({q, -p + (1.0 - square(p)) * q * 0.5}, 1);
  };
  const Tensor x0 = from_vector(std::vector<double>{2.0, 0.0, 0.5, -1.0, -1.5, 1.0, 0.1, 0.1}, {4, 2}, DType::f64);
  const Tensor want = from_vector(reference, {4, 2}, DType::f64);
  for (const Scipy& s : {Scipy{1e-3, 122, 6.857e-2}, Scipy{1e-5, 272, 3.710e-4}, Scipy{1e-7, 584, 7.874e-7}}) {
    OdeOptions o;
    o.rtol = o.atol = s.tol;
    const OdeResult r = odeint(van_der_pol, x0, 0.0, 10.0, o);
    const double error = max_abs_diff(r.x, want);
    INFO("tol " << s.tol << ": nfe " << r.nfe << " (scipy " << s.nfe << "), accepted " << r.accepted_steps
                << ", rejected " << r.rejected_steps << ", error " << error << " (scipy " << s.error << ")");
    CHECK(double(r.nfe) <= 1.05 * double(s.nfe));
    CHECK(error <= 2 * s.error);
  }
}

}  // namespace dualflow::testing
