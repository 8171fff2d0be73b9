// ODE solvers: fixed-step Runge–Kutta (Euler, midpoint, Heun, RK4) and adaptive Dormand–Prince
// 5(4) with Hairer–Wanner's first step, mixed rtol/atol RMS error norm, FSAL and dense output.
#include "train/solvers.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <utility>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace dualflow {
namespace {

// x + h * sum_i c_i k_i, skipping zero coefficients (they would cost a multiply and an add).
Tensor axpy_sum(const Tensor& x, double h, std::initializer_list<std::pair<double, const Tensor*>> terms) {
  Tensor acc;
  for (const auto& [c, k] : terms) {
    if (c == 0.0) continue;
    acc = acc.defined() ? add(acc, mul(*k, c)) : mul(*k, c);
  }
  return acc.defined() ? add(x, mul(acc, h)) : x;
}

// Root mean square over all elements; the norm that rtol/atol are measured in.
double rms(const Tensor& x) {
  if (x.numel() == 0) return 0.0;
  return std::sqrt(mean(square(x)).item());
}

void check_finite_time(const char* what, double t) {
  DF_CHECK(std::isfinite(t), "odeint: {} must be finite, got {}", what, t);
}

// Save times must lie in [t0, t1] and run in the direction of integration.
void validate_save_times(const std::vector<double>& save, double t0, double t1) {
  const double dir = t1 > t0 ? 1.0 : -1.0;
  const double slack = 1e-12 * std::max({1.0, std::abs(t0), std::abs(t1)});
  for (size_t i = 0; i < save.size(); ++i) {
    check_finite_time("save time", save[i]);
    DF_CHECK(dir * (save[i] - t0) >= -slack && dir * (t1 - save[i]) >= -slack,
             "odeint: save_times[{}] = {} lies outside the integration interval [{}, {}]", i, save[i], std::min(t0, t1),
             std::max(t0, t1));
    if (i > 0)
      DF_CHECK(dir * (save[i] - save[i - 1]) >= 0,
               "odeint: save_times must be monotone in the direction of integration ({} to {}), got {} after {}", t0,
               t1, save[i], save[i - 1]);
  }
}

// Hands out the requested outputs in order as the integration passes them.
struct SaveCursor {
  const std::vector<double>& times;
  std::vector<Tensor>& out;
  size_t next = 0;
  bool done() const { return next >= times.size(); }
  double time() const { return times[next]; }
  void put(Tensor x) { out.push_back(std::move(x)), ++next; }
};

// One step of a fixed-step method from (x, t) with signed step h.
Tensor fixed_step(OdeMethod method, const VelocityField& f, const Tensor& x, double t, double h, int64_t& nfe) {
  switch (method) {
    case OdeMethod::Euler: {
      Tensor k1 = f(x, t);
      nfe += 1;
      return add(x, mul(k1, h));
    }
    case OdeMethod::Midpoint: {
      Tensor k1 = f(x, t);
      Tensor k2 = f(add(x, mul(k1, 0.5 * h)), t + 0.5 * h);
      nfe += 2;
      return add(x, mul(k2, h));
    }
    case OdeMethod::Heun: {
      Tensor k1 = f(x, t);
      Tensor k2 = f(add(x, mul(k1, h)), t + h);
      nfe += 2;
      return add(x, mul(add(k1, k2), 0.5 * h));
    }
    case OdeMethod::RK4: {
      Tensor k1 = f(x, t);
      Tensor k2 = f(add(x, mul(k1, 0.5 * h)), t + 0.5 * h);
      Tensor k3 = f(add(x, mul(k2, 0.5 * h)), t + 0.5 * h);
      Tensor k4 = f(add(x, mul(k3, h)), t + h);
      nfe += 4;
      return axpy_sum(x, h / 6.0, {{1.0, &k1}, {2.0, &k2}, {2.0, &k3}, {1.0, &k4}});
    }
    case OdeMethod::Dopri5: break;
  }
  fail("odeint: {} is not a fixed-step method", ode_method_name(method));
}

OdeResult integrate_fixed(const VelocityField& f, const Tensor& x0, double t0, double t1, const OdeOptions& o) {
  std::vector<double> grid;
  if (o.time_grid.empty()) {
    grid = uniform_time_grid(t0, t1, o.steps);
  } else {
    grid = o.time_grid;
    DF_CHECK(grid.size() >= 2, "odeint: time_grid needs at least 2 points, got {}", grid.size());
    DF_CHECK(grid.front() == t0 && grid.back() == t1,
             "odeint: time_grid must start at t0 = {} and end at t1 = {}, got {} ... {}", t0, t1, grid.front(),
             grid.back());
    const double dir = t1 > t0 ? 1.0 : -1.0;
    for (size_t i = 1; i < grid.size(); ++i) {
      check_finite_time("time_grid point", grid[i]);
      DF_CHECK(dir * (grid[i] - grid[i - 1]) > 0,
               "odeint: time_grid must be strictly monotone from {} to {}, got {} after {} at index {}", t0, t1,
               grid[i], grid[i - 1], i);
    }
  }
  OdeResult res;
  SaveCursor save{o.save_times, res.trajectory};
  const double scale = std::max({1.0, std::abs(t0), std::abs(t1)});
  auto at = [&](double a, double b) { return std::abs(a - b) <= 1e-12 * scale; };

  Tensor x = x0;
  while (!save.done() && at(save.time(), grid[0])) save.put(x);
  for (size_t i = 0; i + 1 < grid.size(); ++i) {
    const double ta = grid[i], tb = grid[i + 1], h = tb - ta;
    Tensor next = fixed_step(o.method, f, x, ta, h, res.nfe);
    ++res.accepted_steps;
    // Between grid points the method has no better information than the two end states.
    while (!save.done() && !at(save.time(), tb) && (save.time() - ta) / h < 1.0) {
      const double theta = (save.time() - ta) / h;
      save.put(at(save.time(), ta) ? x : add(x, mul(sub(next, x), theta)));
    }
    while (!save.done() && at(save.time(), tb)) save.put(next);
    x = std::move(next);
  }
  while (!save.done()) save.put(x);  // a save time a rounding error beyond t1
  res.x = x;
  return res;
}

// ---- Dormand–Prince 5(4) ----
// Nodes, stage coefficients, 5th-order weights (equal to the last stage row: FSAL) and the
// difference of the 5th- and 4th-order weights that estimates the local error.
constexpr double kC2 = 1.0 / 5, kC3 = 3.0 / 10, kC4 = 4.0 / 5, kC5 = 8.0 / 9;
constexpr double kA21 = 1.0 / 5;
constexpr double kA31 = 3.0 / 40, kA32 = 9.0 / 40;
constexpr double kA41 = 44.0 / 45, kA42 = -56.0 / 15, kA43 = 32.0 / 9;
constexpr double kA51 = 19372.0 / 6561, kA52 = -25360.0 / 2187, kA53 = 64448.0 / 6561, kA54 = -212.0 / 729;
constexpr double kA61 = 9017.0 / 3168, kA62 = -355.0 / 33, kA63 = 46732.0 / 5247, kA64 = 49.0 / 176,
                 kA65 = -5103.0 / 18656;
constexpr double kB1 = 35.0 / 384, kB3 = 500.0 / 1113, kB4 = 125.0 / 192, kB5 = -2187.0 / 6784, kB6 = 11.0 / 84;
constexpr double kE1 = kB1 - 5179.0 / 57600, kE3 = kB3 - 7571.0 / 16695, kE4 = kB4 - 393.0 / 640,
                 kE5 = kB5 - -92097.0 / 339200, kE6 = kB6 - 187.0 / 2100, kE7 = -1.0 / 40;
// Weights giving the solution at the step's midpoint (Shampine's dense output), from which a
// quartic through y0, y_mid, y1 with slopes f0, f1 interpolates the whole step.
constexpr double kM1 = 6025192743.0 / 30085553152 / 2, kM3 = 51252292925.0 / 65400821598 / 2,
                 kM4 = -2691868925.0 / 45128329728 / 2, kM5 = 187940372067.0 / 1594534317056 / 2,
                 kM6 = -1776094331.0 / 19743644256 / 2, kM7 = 11237099.0 / 235043384 / 2;
constexpr int kDopriOrder = 5;
// The order of the embedded error estimate (4): the step-size law scales with its power
// 1 / (4 + 1), as Hairer & Wanner, scipy's RK45 and torchdiffeq all use.
constexpr int kDopriErrorOrder = 4;

// Hairer & Wanner, Solving ODEs I, II.4: a step whose explicit Euler change is ~1% of the
// state's scale, refined by a finite-difference estimate of the second derivative.
double initial_step(const VelocityField& f, const Tensor& y0, const Tensor& f0, double t0, double dir,
                    const OdeOptions& o, int64_t& nfe) {
  NoGradGuard no_grad;
  Tensor scale = add(mul(abs(y0), o.rtol), o.atol);
  const double d0 = rms(div(y0, scale)), d1 = rms(div(f0, scale));
  const double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
  Tensor f1 = f(add(y0, mul(f0, dir * h0)), t0 + dir * h0).detach();
  ++nfe;
  const double d2 = rms(div(sub(f1, f0), scale)) / h0;
  const double dmax = std::max(d1, d2);
  const double h1 = dmax <= 1e-15 ? std::max(1e-6, h0 * 1e-3) : std::pow(0.01 / dmax, 1.0 / (kDopriErrorOrder + 1));
  return std::min(100 * h0, h1);
}

OdeResult integrate_dopri5(const VelocityField& f, const Tensor& x0, double t0, double t1, const OdeOptions& o) {
  OdeResult res;
  SaveCursor save{o.save_times, res.trajectory};
  const double dir = t1 > t0 ? 1.0 : -1.0;
  const double span = std::abs(t1 - t0);
  const double scale_t = std::max({1.0, std::abs(t0), std::abs(t1)});
  auto at = [&](double a, double b) { return std::abs(a - b) <= 1e-12 * scale_t; };

  Tensor y = x0;
  while (!save.done() && at(save.time(), t0)) save.put(y);
  Tensor k1 = f(y, t0);
  res.nfe = 1;
  double h = o.first_step > 0 ? o.first_step : initial_step(f, y.detach(), k1.detach(), t0, dir, o, res.nfe);
  h = std::min(h, span);
  if (o.dt_max > 0) h = std::min(h, o.dt_max);
  if (o.dt_min > 0) h = std::max(h, o.dt_min);

  double t = t0;
  bool rejected_here = false;  // a rejection since the last accepted step
  while (dir * (t1 - t) > 0) {
    if (res.accepted_steps + res.rejected_steps >= o.max_steps)
      fail(
          "odeint: dopri5 gave up after max_steps = {} steps ({} accepted, {} rejected) at t = {} of [{}, {}] with "
          "step {}; "
          "raise max_steps or loosen rtol/atol (rtol = {}, atol = {})",
          o.max_steps, res.accepted_steps, res.rejected_steps, t, t0, t1, h, o.rtol, o.atol);
    // The last step lands exactly on t1, absorbing a remainder too small to be worth a step.
    const double remaining = std::abs(t1 - t);
    const bool last = h >= remaining * (1 - 1e-10);
    const double hs = last ? remaining : h;
    const double dt = dir * hs;
    const double t_new = last ? t1 : t + dt;
    DF_CHECK(t_new != t, "odeint: dopri5 step size {} underflows at t = {}", hs, t);

    Tensor k2 = f(axpy_sum(y, dt, {{kA21, &k1}}), t + kC2 * dt);
    Tensor k3 = f(axpy_sum(y, dt, {{kA31, &k1}, {kA32, &k2}}), t + kC3 * dt);
    Tensor k4 = f(axpy_sum(y, dt, {{kA41, &k1}, {kA42, &k2}, {kA43, &k3}}), t + kC4 * dt);
    Tensor k5 = f(axpy_sum(y, dt, {{kA51, &k1}, {kA52, &k2}, {kA53, &k3}, {kA54, &k4}}), t + kC5 * dt);
    Tensor k6 = f(axpy_sum(y, dt, {{kA61, &k1}, {kA62, &k2}, {kA63, &k3}, {kA64, &k4}, {kA65, &k5}}), t + dt);
    Tensor y_new = axpy_sum(y, dt, {{kB1, &k1}, {kB3, &k3}, {kB4, &k4}, {kB5, &k5}, {kB6, &k6}});
    Tensor k7 = f(y_new, t_new);
    res.nfe += 6;

    // Step control is not differentiated: it only decides which discretisation is used.
    double error_ratio;
    {
      NoGradGuard no_grad;
      Tensor d1 = k1.detach(), d3 = k3.detach(), d4 = k4.detach(), d5 = k5.detach(), d6 = k6.detach(), d7 = k7.detach();
      Tensor err =
          axpy_sum(zeros_like(d1), dt, {{kE1, &d1}, {kE3, &d3}, {kE4, &d4}, {kE5, &d5}, {kE6, &d6}, {kE7, &d7}});
      Tensor tol = add(mul(maximum(abs(y.detach()), abs(y_new.detach())), o.rtol), o.atol);
      error_ratio = rms(div(err, tol));
    }
    DF_CHECK(std::isfinite(error_ratio),
             "odeint: dopri5 error estimate is not finite at t = {} (step {}); the field "
             "returned inf or nan",
             t, hs);

    const bool accept = error_ratio < 1.0;
    if (accept) {
      ++res.accepted_steps;
      if (!save.done() && dir * (save.time() - t_new) <= 1e-12 * scale_t) {
        Tensor y_mid = axpy_sum(y, dt, {{kM1, &k1}, {kM3, &k3}, {kM4, &k4}, {kM5, &k5}, {kM6, &k6}, {kM7, &k7}});
        // p(θ) = a θ⁴ + b θ³ + c θ² + d θ + e with p(0)=y, p(½)=y_mid, p(1)=y_new, p'(0)=dt k1, p'(1)=dt k7.
        Tensor a = add(mul(sub(k7, k1), 2 * dt), add(mul(add(y_new, y), -8.0), mul(y_mid, 16.0)));
        Tensor b =
            add(mul(sub(mul(k1, 5.0), mul(k7, 3.0)), dt), add(add(mul(y, 18.0), mul(y_new, 14.0)), mul(y_mid, -32.0)));
        Tensor c = add(mul(sub(k7, mul(k1, 4.0)), dt), add(add(mul(y, -11.0), mul(y_new, -5.0)), mul(y_mid, 16.0)));
        Tensor d = mul(k1, dt);
        while (!save.done() && dir * (save.time() - t_new) <= 1e-12 * scale_t) {
          if (at(save.time(), t_new)) {
            save.put(y_new);
            continue;
          }
          const double th = (save.time() - t) / dt;
          save.put(add(y, mul(add(d, mul(add(c, mul(add(b, mul(a, th)), th)), th)), th)));
        }
      }
      t = t_new;
      y = std::move(y_new);
      k1 = std::move(k7);
      if (last) break;
    } else {
      ++res.rejected_steps;
    }

    // The next step from this one's error (scipy's RK45 controller): an accepted step sets the
    // next size by the error it made, shrinking it when that error came close to the tolerance
    // (keeping the size, as torchdiffeq does, spends a rejected attempt of 6 evaluations next);
    // after a rejection the accepted step does not grow the next; a rejected one shrinks.
    double factor;
    if (error_ratio == 0.0) {
      factor = o.max_step_factor;
    } else {
      factor = o.safety * std::pow(error_ratio, -1.0 / (kDopriErrorOrder + 1));
      factor = std::clamp(factor, o.min_step_factor, o.max_step_factor);
    }
    if (accept && rejected_here) factor = std::min(factor, 1.0);
    if (!accept) factor = std::min(factor, 1.0);
    rejected_here = !accept;
    h = hs * factor;
    if (o.dt_max > 0) h = std::min(h, o.dt_max);
    if (o.dt_min > 0 && h < o.dt_min) {
      if (!accept)
        fail(
            "odeint: dopri5 needs a step of {} at t = {}, below dt_min = {} (error ratio {}); lower dt_min or loosen "
            "rtol/atol",
            h, t, o.dt_min, error_ratio);
      h = o.dt_min;
    }
  }
  // Anything left (a save time a hair beyond t1 after rounding) is the final state.
  while (!save.done()) save.put(y);
  res.x = y;
  return res;
}

void validate(const Tensor& x0, double t0, double t1, const OdeOptions& o) {
  DF_CHECK(x0.defined(), "odeint: the initial state is undefined");
  check_finite_time("t0", t0);
  check_finite_time("t1", t1);
  DF_CHECK(t0 != t1, "odeint: t0 and t1 must differ, got t0 = t1 = {}", t0);
  if (o.method == OdeMethod::Dopri5) {
    DF_CHECK(o.rtol > 0, "odeint: rtol must be > 0, got {}", o.rtol);
    DF_CHECK(o.atol > 0, "odeint: atol must be > 0, got {}", o.atol);
    DF_CHECK(o.safety > 0 && o.safety < 1, "odeint: safety must be in (0, 1), got {}", o.safety);
    DF_CHECK(o.min_step_factor > 0 && o.min_step_factor < 1, "odeint: min_step_factor must be in (0, 1), got {}",
             o.min_step_factor);
    DF_CHECK(o.max_step_factor > 1, "odeint: max_step_factor must be > 1, got {}", o.max_step_factor);
    DF_CHECK(o.first_step >= 0, "odeint: first_step must be >= 0 (0 = automatic), got {}", o.first_step);
    DF_CHECK(o.dt_min >= 0, "odeint: dt_min must be >= 0 (0 = none), got {}", o.dt_min);
    DF_CHECK(o.dt_max >= 0, "odeint: dt_max must be >= 0 (0 = none), got {}", o.dt_max);
    DF_CHECK(o.dt_max == 0 || o.dt_min <= o.dt_max, "odeint: dt_min = {} exceeds dt_max = {}", o.dt_min, o.dt_max);
    DF_CHECK(o.max_steps >= 1, "odeint: max_steps must be >= 1, got {}", o.max_steps);
  } else if (o.time_grid.empty()) {
    DF_CHECK(o.steps >= 1, "odeint: steps must be >= 1, got {}", o.steps);
  }
  validate_save_times(o.save_times, t0, t1);
}

}  // namespace

namespace {
constexpr OdeMethod kOdeMethods[] = {OdeMethod::Euler, OdeMethod::Midpoint, OdeMethod::Heun, OdeMethod::RK4,
                                     OdeMethod::Dopri5};
}  // namespace

// scipy (and the notes) call the Dormand-Prince pair RK45.
constexpr const char* kDopri5Alias = "rk45";

std::vector<std::string> ode_method_names(bool fixed_step_only) {
  std::vector<std::string> names;
  for (OdeMethod m : kOdeMethods)
    if (!fixed_step_only || m != OdeMethod::Dopri5) names.push_back(ode_method_name(m));
  if (!fixed_step_only) names.push_back(kDopri5Alias);
  return names;
}

OdeMethod parse_ode_method(const std::string& name) {
  for (OdeMethod m : kOdeMethods)
    if (name == ode_method_name(m)) return m;
  if (name == kDopri5Alias) return OdeMethod::Dopri5;
  fail("unknown ODE method '{}'; expected one of: euler, midpoint, heun, rk4, dopri5 (or rk45)", name);
}

const char* ode_method_name(OdeMethod method) {
  switch (method) {
    case OdeMethod::Euler: return "euler";
    case OdeMethod::Midpoint: return "midpoint";
    case OdeMethod::Heun: return "heun";
    case OdeMethod::RK4: return "rk4";
    case OdeMethod::Dopri5: return "dopri5";
  }
  return "?";
}

int ode_method_order(OdeMethod method) {
  switch (method) {
    case OdeMethod::Euler: return 1;
    case OdeMethod::Midpoint: return 2;
    case OdeMethod::Heun: return 2;
    case OdeMethod::RK4: return 4;
    case OdeMethod::Dopri5: return 5;
  }
  return 0;
}

std::vector<double> uniform_time_grid(double t0, double t1, int64_t steps) {
  DF_CHECK(steps >= 1, "uniform_time_grid: steps must be >= 1, got {}", steps);
  std::vector<double> grid(size_t(steps) + 1);
  for (int64_t i = 0; i <= steps; ++i) grid[size_t(i)] = t0 + (t1 - t0) * (double(i) / double(steps));
  grid.back() = t1;
  return grid;
}

OdeResult odeint(const VelocityField& f, const Tensor& x0, double t0, double t1, const OdeOptions& options) {
  DF_CHECK(bool(f), "odeint: the velocity field is empty");
  validate(x0, t0, t1, options);
  if (options.method == OdeMethod::Dopri5) return integrate_dopri5(f, x0, t0, t1, options);
  return integrate_fixed(f, x0, t0, t1, options);
}

std::vector<double> jittered_time_grid(double t0, double t1, int64_t steps, double jitter, Generator& gen) {
  DF_CHECK(jitter >= 0 && jitter < 1, "jittered_time_grid: jitter must lie in [0, 1), given {}", jitter);
  std::vector<double> grid = uniform_time_grid(t0, t1, steps);
  if (jitter == 0 || steps < 2) return grid;
  // Each interior point stays inside its own half-cells, so the grid remains strictly monotone.
  std::vector<double> u = rand({steps - 1}, gen, TensorOptions(DType::f64)).to_vector<double>();
  const double h = (t1 - t0) / double(steps);
  for (int64_t i = 1; i < steps; ++i) grid[size_t(i)] += (u[size_t(i - 1)] - 0.5) * jitter * h;
  return grid;
}

}  // namespace dualflow
