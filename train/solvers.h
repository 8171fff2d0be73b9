// ODE solvers for sampling and likelihood: fixed-step Euler, midpoint, Heun and RK4 (on a step
// count or an explicit time grid) and adaptive Dormand–Prince 5(4) with rtol/atol step control.
// They integrate forwards or backwards in time, run under the caller's grad mode (so gradients
// flow through them when wanted: discretise-then-differentiate) and count function evaluations.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace dualflow {

// v(x, t): the velocity at state x and scalar time t. A field that needs a time tensor builds
// it itself (e.g. full({N}, t)), so the solver never guesses the batch layout.
using VelocityField = std::function<Tensor(const Tensor& x, double t)>;

enum class OdeMethod { Euler, Midpoint, Heun, RK4, Dopri5 };

// "euler", "midpoint", "heun", "rk4", "dopri5", and "rk45", scipy's name for the same
// Dormand-Prince pair (case-sensitive); anything else is refused with the list of known names.
OdeMethod parse_ode_method(const std::string& name);
const char* ode_method_name(OdeMethod method);
// The names parse_ode_method accepts; with `fixed_step_only`, without the adaptive dopri5 (rk45).
std::vector<std::string> ode_method_names(bool fixed_step_only = false);
// Order of accuracy of the method's solution (1, 2, 2, 4, 5).
int ode_method_order(OdeMethod method);

struct OdeOptions {
  OdeMethod method = OdeMethod::Dopri5;

  // ---- fixed-step methods ----
  // Uniform grid of `steps` steps from t0 to t1, unless `time_grid` is given: then it must run
  // strictly monotonically from t0 to t1 (either direction) and `steps` is ignored.
  int64_t steps = 100;
  std::vector<double> time_grid;

  // ---- Dopri5 ----
  double rtol = 1e-5;
  double atol = 1e-5;
  // Initial step magnitude; 0 selects it automatically (Hairer–Wanner, costs one extra NFE).
  double first_step = 0.0;
  double safety = 0.9;
  // Bounds on the factor a step size may change by after one attempt.
  double min_step_factor = 0.2;
  double max_step_factor = 10.0;
  // 0 = no bound. A step that must shrink below dt_min is an error, not a silent acceptance.
  double dt_min = 0.0;
  double dt_max = 0.0;
  // Accepted plus rejected steps before giving up.
  int64_t max_steps = 100000;

  // ---- output ----
  // States wanted at these times (monotone in the direction of integration, within [t0, t1]).
  // Fixed-step methods return grid states exactly and interpolate linearly in between; Dopri5
  // uses its 4th-order dense output, so asking for outputs does not change the steps taken.
  std::vector<double> save_times;
};

struct OdeResult {
  Tensor x;                        // state at t1
  std::vector<Tensor> trajectory;  // one state per save_times entry
  // Function evaluations. Fixed step: Euler 1, midpoint/Heun 2, RK4 4 per step. Dopri5: 1 for
  // f(t0, x0), 1 for the automatic first-step probe, then 6 per attempted step (stages 2..7;
  // stage 7 at the new point is reused as stage 1 of the next step: FSAL).
  int64_t nfe = 0;
  int64_t accepted_steps = 0;
  int64_t rejected_steps = 0;
};

// Integrates dx/dt = f(x, t) from t0 to t1 (t1 < t0 integrates backwards).
OdeResult odeint(const VelocityField& f, const Tensor& x0, double t0, double t1, const OdeOptions& options = {});

// The uniform grid of `steps` steps from t0 to t1, with both ends exact.
std::vector<double> uniform_time_grid(double t0, double t1, int64_t steps);

// The uniform grid with every interior point moved uniformly at random within ±`jitter`/2 of a
// step (jitter in [0, 1); 0 is the uniform grid), ends exact. Training through a fixed-step
// solver on a grid drawn afresh each step keeps a network from fitting the discretisation at
// a few fixed times instead of the ODE (a likelihood that only holds on that grid).
std::vector<double> jittered_time_grid(double t0, double t1, int64_t steps, double jitter, Generator& gen);

}  // namespace dualflow
