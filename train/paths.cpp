// Schedulers, affine and curved probability paths, and their config factory (see paths.h).
#include "train/paths.h"

#include <fmt/format.h>

#include <cmath>
#include <numbers>

#include "engine/ops.h"

namespace dualflow {

namespace {

// Refuses parameters a scheduler does not take, listing the ones it does.
void check_params(const std::string& scheduler, const PathParams& params, const std::vector<std::string>& known) {
  for (const auto& [key, value] : params) {
    bool ok = false;
    for (const auto& k : known) ok |= (k == key);
    if (!ok) {
      fail("make_scheduler: '{}' takes parameters [{}], given unknown parameter '{}'", scheduler,
           fmt::join(known, ", "), key);
    }
  }
}

double param_or(const PathParams& params, const char* key, double fallback) {
  auto it = params.find(key);
  return it == params.end() ? fallback : it->second;
}

}  // namespace

// ---- schedulers -----------------------------------------------------------------------------

CondOTScheduler::CondOTScheduler(double sigma_min) : sigma_min_(sigma_min) {
  DF_CHECK(sigma_min >= 0 && sigma_min < 1, "CondOTScheduler: sigma_min must lie in [0, 1), given {}", sigma_min);
}

SchedulerValues CondOTScheduler::operator()(const Tensor& t) const {
  const double slope = 1.0 - sigma_min_;
  return {alias(t), 1.0 - t * slope, ones_like(t), full_like(t, -slope)};
}

VPScheduler::VPScheduler(double beta_min, double beta_max) : beta_min_(beta_min), beta_max_(beta_max) {
  DF_CHECK(beta_min > 0 && beta_max > beta_min,
           "VPScheduler: need 0 < beta_min < beta_max, given beta_min={} beta_max={}", beta_min, beta_max);
}

SchedulerValues VPScheduler::operator()(const Tensor& t) const {
  // The paper's diffusion time runs the other way: s = 1 - t.
  Tensor s = 1.0 - t;
  Tensor big_t = s * beta_min_ + square(s) * (0.5 * (beta_max_ - beta_min_));
  Tensor beta = s * (beta_max_ - beta_min_) + beta_min_;
  Tensor alpha = exp(big_t * -0.5);
  Tensor sigma = sqrt(1.0 - square(alpha));
  // d/dt T(1 - t) = -beta(1 - t), hence d_alpha = alpha beta / 2; sigma^2 = 1 - alpha^2 gives
  // d_sigma = -alpha d_alpha / sigma.
  Tensor d_alpha = alpha * beta * 0.5;
  Tensor d_sigma = -(alpha * d_alpha) / sigma;
  return {alpha, sigma, d_alpha, d_sigma};
}

VEScheduler::VEScheduler(double sigma_min, double sigma_max) : sigma_min_(sigma_min), sigma_max_(sigma_max) {
  DF_CHECK(sigma_min > 0 && sigma_max > sigma_min,
           "VEScheduler: need 0 < sigma_min < sigma_max, given sigma_min={} sigma_max={}", sigma_min, sigma_max);
}

SchedulerValues VEScheduler::operator()(const Tensor& t) const {
  // sigma_min (sigma_max / sigma_min)^(1 - t) = sigma_max exp(t log(sigma_min / sigma_max)).
  const double rate = std::log(sigma_min_ / sigma_max_);
  Tensor sigma = exp(t * rate) * sigma_max_;
  return {ones_like(t), sigma, zeros_like(t), sigma * rate};
}

SchedulerValues CosineScheduler::operator()(const Tensor& t) const {
  const double w = std::numbers::pi / 2;
  Tensor angle = t * w;
  Tensor s = sin(angle), c = cos(angle);
  return {s, c, c * w, s * -w};
}

PolynomialScheduler::PolynomialScheduler(double n) : n_(n) {
  DF_CHECK(n > 0, "PolynomialScheduler: the exponent n must be positive, given {}", n);
}

SchedulerValues PolynomialScheduler::operator()(const Tensor& t) const {
  Tensor alpha = pow(t, n_);
  Tensor d_alpha = pow(t, n_ - 1.0) * n_;
  return {alpha, 1.0 - alpha, d_alpha, -d_alpha};
}

std::vector<std::string> scheduler_names() { return {"condot", "vp", "ve", "cosine", "polynomial"}; }

std::shared_ptr<Scheduler> make_scheduler(const std::string& name, const PathParams& params) {
  if (name == "condot") {
    check_params(name, params, {"sigma_min"});
    return std::make_shared<CondOTScheduler>(param_or(params, "sigma_min", 0.0));
  }
  if (name == "vp") {
    check_params(name, params, {"beta_min", "beta_max"});
    return std::make_shared<VPScheduler>(param_or(params, "beta_min", 0.1), param_or(params, "beta_max", 20.0));
  }
  if (name == "ve") {
    check_params(name, params, {"sigma_min", "sigma_max"});
    return std::make_shared<VEScheduler>(param_or(params, "sigma_min", 0.01), param_or(params, "sigma_max", 50.0));
  }
  if (name == "cosine") {
    check_params(name, params, {});
    return std::make_shared<CosineScheduler>();
  }
  if (name == "polynomial") {
    check_params(name, params, {"n"});
    return std::make_shared<PolynomialScheduler>(param_or(params, "n", 2.0));
  }
  fail("make_scheduler: unknown scheduler '{}'; known: {}", name, fmt::join(scheduler_names(), ", "));
}

// ---- paths ----------------------------------------------------------------------------------

Tensor broadcast_time(const char* who, const Tensor& x0, const Tensor& x1, const Tensor& t) {
  DF_CHECK(x0.defined() && x1.defined() && t.defined(), "{}: x0, x1 and t must all be defined", who);
  DF_CHECK(x0.shape() == x1.shape(), "{}: x0 and x1 must have one shape, given {} and {}", who, x0.shape().str(),
           x1.shape().str());
  DF_CHECK(x0.dim() >= 1, "{}: x0 must be [N, ...], given a scalar", who);
  DF_CHECK(t.dim() == 1 && t.size(0) == x0.size(0), "{}: t must be [N] = [{}], given {}", who, x0.size(0),
           t.shape().str());
  DF_CHECK(t.dtype() == x0.dtype() && x1.dtype() == x0.dtype(), "{}: x0, x1 and t must share a dtype, given {}, {}, {}",
           who, dtype_name(x0.dtype()), dtype_name(x1.dtype()), dtype_name(t.dtype()));
  DF_CHECK(t.device() == x0.device() && x1.device() == x0.device(),
           "{}: x0, x1 and t must be on one device, given {}, {}, {}", who, x0.device().str(), x1.device().str(),
           t.device().str());
  return per_sample(t, x0);
}

Tensor sample_rows(const Tensor& batch, int64_t start, int64_t count) {
  return batch.defined() ? batch.narrow(0, start, count) : batch;
}

Tensor per_sample(const Tensor& s, const Tensor& like) {
  Shape shape{s.size(0)};
  shape.resize(like.dim(), 1);
  return s.reshape(shape);
}

AffinePath::AffinePath(std::shared_ptr<const Scheduler> scheduler) : scheduler_(std::move(scheduler)) {
  DF_CHECK(scheduler_ != nullptr, "AffinePath: the scheduler must not be null");
}

PathSample AffinePath::sample(const Tensor& x0, const Tensor& x1, const Tensor& t) const {
  Tensor tb = broadcast_time("AffinePath::sample", x0, x1, t);
  SchedulerValues v = (*scheduler_)(tb);
  return {v.alpha * x1 + v.sigma * x0, v.d_alpha * x1 + v.d_sigma * x0};
}

SchedulerValues AffinePath::values_like(const char* who, const Tensor& x, const Tensor& t) const {
  return (*scheduler_)(broadcast_time(who, x, x, t));
}

Tensor AffinePath::target_to_velocity(const Tensor& x1, const Tensor& x_t, const Tensor& t) const {
  SchedulerValues v = values_like("AffinePath::target_to_velocity", x1, t);
  // x_0 = (x_t - alpha x_1) / sigma substituted into u = d_alpha x_1 + d_sigma x_0.
  return v.d_alpha * x1 + (v.d_sigma / v.sigma) * (x_t - v.alpha * x1);
}

Tensor AffinePath::epsilon_to_velocity(const Tensor& eps, const Tensor& x_t, const Tensor& t) const {
  SchedulerValues v = values_like("AffinePath::epsilon_to_velocity", eps, t);
  return v.d_sigma * eps + (v.d_alpha / v.alpha) * (x_t - v.sigma * eps);
}

Tensor AffinePath::velocity_to_target(const Tensor& velocity, const Tensor& x_t, const Tensor& t) const {
  SchedulerValues v = values_like("AffinePath::velocity_to_target", velocity, t);
  // Eliminating x_0 from the two affine equations.
  return (v.sigma * velocity - v.d_sigma * x_t) / (v.sigma * v.d_alpha - v.alpha * v.d_sigma);
}

Tensor AffinePath::velocity_to_epsilon(const Tensor& velocity, const Tensor& x_t, const Tensor& t) const {
  SchedulerValues v = values_like("AffinePath::velocity_to_epsilon", velocity, t);
  return (v.alpha * velocity - v.d_alpha * x_t) / (v.alpha * v.d_sigma - v.sigma * v.d_alpha);
}

Tensor AffinePath::target_to_epsilon(const Tensor& x1, const Tensor& x_t, const Tensor& t) const {
  SchedulerValues v = values_like("AffinePath::target_to_epsilon", x1, t);
  return (x_t - v.alpha * x1) / v.sigma;
}

Tensor AffinePath::epsilon_to_target(const Tensor& eps, const Tensor& x_t, const Tensor& t) const {
  SchedulerValues v = values_like("AffinePath::epsilon_to_target", eps, t);
  return (x_t - v.sigma * eps) / v.alpha;
}

std::shared_ptr<AffinePath> make_affine_path(const std::string& scheduler, const PathParams& params) {
  return std::make_shared<AffinePath>(make_scheduler(scheduler, params));
}

PathSample CurvedPath2D::sample(const Tensor& x0, const Tensor& x1, const Tensor& t) const {
  Tensor tb = broadcast_time("CurvedPath2D::sample", x0, x1, t);
  DF_CHECK(x0.dim() == 2 && x0.size(1) == 2, "CurvedPath2D::sample: x0 and x1 must be [N, 2], given {}",
           x0.shape().str());
  Tensor d = x1 - x0;
  // Rotation by +90 degrees: (dx, dy) -> (-dy, dx).
  Tensor rotated = cat({-d.narrow(1, 1, 1), d.narrow(1, 0, 1)}, 1);
  Tensor len = sqrt(sum(square(d), {1}, true));
  // A zero-length displacement has no normal; dividing by a floor keeps n finite (and zero).
  Tensor n = rotated / maximum(len, full_like(len, 1e-30));
  Tensor bend = tb * (1.0 - tb);
  Tensor x_t = (1.0 - tb) * x0 + tb * x1 + (bend * a_) * n;
  Tensor u_t = d + ((1.0 - 2.0 * tb) * a_) * n;
  return {x_t, u_t};
}

// ---- the Schrödinger bridge --------------------------------------------------------------

SchrodingerBridgePath::SchrodingerBridgePath(double sigma, Generator& gen) : sigma_(sigma), gen_(&gen) {
  DF_CHECK(sigma > 0, "SchrodingerBridgePath: sigma must be positive, given {}", sigma);
}

PathSample SchrodingerBridgePath::sample(const Tensor& x0, const Tensor& x1, const Tensor& t) const {
  return sample_with_noise(x0, x1, t, randn(x0.shape(), *gen_, x0.options()));
}

PathSample SchrodingerBridgePath::sample_with_noise(const Tensor& x0, const Tensor& x1, const Tensor& t,
                                                    const Tensor& eps) const {
  Tensor tb = broadcast_time("SchrodingerBridgePath::sample", x0, x1, t);
  DF_CHECK(eps.defined() && eps.shape() == x0.shape(), "SchrodingerBridgePath::sample: eps must be {}, given {}",
           x0.shape().str(), eps.defined() ? eps.shape().str() : std::string("undefined"));
  Tensor var = tb * (1.0 - tb);
  Tensor mu = tb * x1 + (1.0 - tb) * x0;
  Tensor x_t = mu + (sqrt(var) * sigma_) * eps;
  Tensor u_t = (x1 - x0) + ((1.0 - 2.0 * tb) / (var * 2.0 + 1e-8)) * (x_t - mu);
  return {x_t, u_t};
}

}  // namespace dualflow
