// CNF log-likelihood by integrating the instantaneous change of variables backwards in time,
// with exact (batched forward-mode) or Hutchinson divergences, and bits per dimension.
#include "train/likelihood.h"

#include <cmath>
#include <numbers>
#include <vector>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace dualflow {
namespace {

// The state dims of x (all but the batch dim) multiplied out.
int64_t state_size(const Tensor& x, const char* who) {
  DF_CHECK(x.defined(), "{}: x is undefined", who);
  DF_CHECK(x.dim() >= 2, "{}: x must be [N, ...] with at least one state dim, got shape {}", who, x.shape().str());
  DF_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64 || x.dtype() == DType::bf16 || x.dtype() == DType::f16,
           "{}: x must be floating point, got {}", who, dtype_name(x.dtype()));
  return x.numel() / x.size(0);
}

// The shape of x with its batch dim replaced by `batch`.
Shape with_batch(const Tensor& x, int64_t batch) {
  Shape s = x.shape();
  s[0] = batch;
  return s;
}

void check_velocity(const Tensor& v, const Tensor& x, const char* who) {
  DF_CHECK(v.defined() && v.shape() == x.shape(),
           "{}: the velocity field returned shape {}, expected the state's shape {}", who,
           v.defined() ? v.shape().str() : std::string("undefined"), x.shape().str());
}

}  // namespace

DivergenceMethod parse_divergence_method(const std::string& name) {
  if (name == "exact") return DivergenceMethod::Exact;
  if (name == "hutchinson") return DivergenceMethod::Hutchinson;
  fail("unknown divergence method '{}'; expected one of: exact, hutchinson", name);
}

ProbeDistribution parse_probe_distribution(const std::string& name) {
  if (name == "rademacher") return ProbeDistribution::Rademacher;
  if (name == "gaussian") return ProbeDistribution::Gaussian;
  fail("unknown probe distribution '{}'; expected one of: rademacher, gaussian", name);
}

VelocityAndDivergence velocity_and_divergence_exact(const VelocityField& v, const Tensor& x, double t) {
  const char* who = "velocity_and_divergence_exact";
  const int64_t d = state_size(x, who), n = x.size(0);
  // Copy b of the batch carries tangent e_b, so block b of the output tangent holds column b of
  // the Jacobian for every sample; the divergence picks entry b of block b.
  Tensor repeated = x.reshape({1, n, d}).expand({d, n, d}).reshape(with_batch(x, d * n));
  Tensor basis = eye(d, x.options()).reshape({d, 1, d}).expand({d, n, d}).contiguous();
  JvpResult r = jvp([&](const std::vector<Tensor>& p) { return std::vector<Tensor>{v(p[0], t)}; }, {repeated},
                    {basis.reshape(repeated.shape())}, JvpOptions{.differentiable_tangents = GradMode::enabled()});
  check_velocity(r.outputs[0], repeated, who);
  Tensor velocity = r.outputs[0].reshape({d, n, d}).select(0, 0).reshape(x.shape());
  Tensor divergence = sum(mul(r.tangents[0].reshape({d, n, d}), basis), {0, 2});
  return {velocity, divergence};
}

VelocityAndDivergence velocity_and_divergence_hutchinson(const VelocityField& v, const Tensor& x, double t,
                                                         const Tensor& probe) {
  const char* who = "velocity_and_divergence_hutchinson";
  const int64_t d = state_size(x, who), n = x.size(0);
  DF_CHECK(probe.defined() && probe.shape() == x.shape(), "{}: probe has shape {}, expected the state's shape {}", who,
           probe.defined() ? probe.shape().str() : std::string("undefined"), x.shape().str());
  JvpResult r = jvp([&](const std::vector<Tensor>& p) { return std::vector<Tensor>{v(p[0], t)}; }, {x}, {probe},
                    JvpOptions{.differentiable_tangents = GradMode::enabled()});
  check_velocity(r.outputs[0], x, who);
  Tensor divergence = sum(mul(r.tangents[0].reshape({n, d}), probe.reshape({n, d})), {1});
  return {r.outputs[0], divergence};
}

Tensor sample_probe(const Shape& shape, ProbeDistribution dist, Generator& gen, TensorOptions opts) {
  if (dist == ProbeDistribution::Gaussian) return randn(shape, gen, opts);
  return add(mul(bernoulli(shape, 0.5, gen, opts), 2.0), -1.0);
}

Tensor standard_normal_log_prob(const Tensor& x) {
  const int64_t d = state_size(x, "standard_normal_log_prob"), n = x.size(0);
  const double log_norm = -0.5 * double(d) * std::log(2 * std::numbers::pi);
  return add(mul(sum(square(x.reshape({n, d})), {1}), -0.5), log_norm);
}

Tensor isotropic_normal_log_prob(const Tensor& x, double std) {
  DF_CHECK(std > 0, "isotropic_normal_log_prob: std must be > 0, given {}", std);
  if (std == 1.0) return standard_normal_log_prob(x);
  const double d = double(state_size(x, "isotropic_normal_log_prob"));
  return add(standard_normal_log_prob(mul(x, 1.0 / std)), -d * std::log(std));
}

LikelihoodResult cnf_log_likelihood(const VelocityField& v, const Tensor& x, const LikelihoodOptions& options,
                                    Generator& gen) {
  Tensor probe;
  if (options.divergence == DivergenceMethod::Hutchinson && x.defined())
    probe = sample_probe(x.shape(), options.probe, gen, x.options());
  return cnf_log_likelihood_with_probe(v, x, options, probe);
}

LikelihoodResult cnf_log_likelihood_with_probe(const VelocityField& v, const Tensor& x,
                                               const LikelihoodOptions& options, const Tensor& probe) {
  const char* who = "cnf_log_likelihood";
  DF_CHECK(bool(v), "{}: the velocity field is empty", who);
  const int64_t d = state_size(x, who), n = x.size(0);
  const Shape x_shape = x.shape();
  DF_CHECK(options.t_data > 0 && options.t_data <= 1, "{}: t_data must lie in (0, 1], given {}", who, options.t_data);
  DF_CHECK(options.prior_std > 0, "{}: prior_std must be > 0, given {}", who, options.prior_std);

  DF_CHECK((options.divergence == DivergenceMethod::Hutchinson) == probe.defined(),
           "{}: the {} divergence {} probes", who,
           options.divergence == DivergenceMethod::Hutchinson ? "Hutchinson" : "exact",
           options.divergence == DivergenceMethod::Hutchinson ? "needs" : "takes no");
  DF_CHECK(!probe.defined() || probe.shape() == x_shape, "{}: probes of shape {} for x of shape {}", who,
           probe.defined() ? probe.shape().str() : "", x_shape.str());

  // The augmented state [x flattened, Δ] as one [N, D + 1] tensor, so every solver (and
  // Dopri5's error norm) treats it as a single state.
  VelocityField augmented = [&](const Tensor& z, double t) {
    Tensor xt = z.narrow(1, 0, d).reshape(x_shape);
    VelocityAndDivergence vd =
        probe.defined() ? velocity_and_divergence_hutchinson(v, xt, t, probe) : velocity_and_divergence_exact(v, xt, t);
    return cat({vd.velocity.reshape({n, d}), vd.divergence.reshape({n, 1})}, 1);
  };
  Tensor z1 = cat({x.reshape({n, d}), zeros({n, 1}, x.options())}, 1);
  OdeResult ode = odeint(augmented, z1, options.t_data, 0.0, options.ode);

  LikelihoodResult res;
  res.noise = ode.x.narrow(1, 0, d).reshape(x_shape);
  // Δ(0) = ∫_{t_data}^0 div dt = −∫_0^{t_data} div dt.
  Tensor delta0 = ode.x.select(1, d);
  res.divergence_integral = neg(delta0);
  res.log_prior = isotropic_normal_log_prob(res.noise, options.prior_std);
  res.log_likelihood = add(res.log_prior, delta0);
  res.nfe = ode.nfe;
  res.accepted_steps = ode.accepted_steps;
  res.rejected_steps = ode.rejected_steps;
  return res;
}

LikelihoodResult cnf_log_likelihood(const VelocityField& v, const Tensor& x, const LikelihoodOptions& options) {
  DF_CHECK(
      options.divergence == DivergenceMethod::Exact,
      "cnf_log_likelihood: the Hutchinson estimator needs a Generator for its probes; call the overload taking one");
  Generator unused(0);
  return cnf_log_likelihood(v, x, options, unused);
}

Tensor cnf_nll_loss(const VelocityField& v, const Tensor& x, const LikelihoodOptions& options, Generator& gen) {
  Tensor probe;
  if (options.divergence == DivergenceMethod::Hutchinson && x.defined())
    probe = sample_probe(x.shape(), options.probe, gen, x.options());
  return cnf_nll_loss(v, x, options, probe);
}

Tensor cnf_nll_loss(const VelocityField& v, const Tensor& x, const LikelihoodOptions& options, const Tensor& probe) {
  DF_CHECK(options.ode.method != OdeMethod::Dopri5 || !GradMode::enabled(),
           "cnf_nll_loss: back-propagating through dopri5 records every attempted step; train with a fixed-step "
           "solver (euler, midpoint, heun, rk4)");
  return neg(mean(cnf_log_likelihood_with_probe(v, x, options, probe).log_likelihood));
}

Tensor bits_per_dim(const Tensor& log_likelihood, int64_t dims, double data_range, int64_t levels) {
  DF_CHECK(dims >= 1, "bits_per_dim: dims must be >= 1, got {}", dims);
  DF_CHECK(data_range > 0, "bits_per_dim: data_range must be > 0 (1 for [0, 1], 2 for [-1, 1]), got {}", data_range);
  DF_CHECK(levels >= 2, "bits_per_dim: levels must be >= 2, got {}", levels);
  const double dd = double(dims);
  return add(mul(log_likelihood, -1.0 / (dd * std::numbers::ln2)), std::log2(double(levels) / data_range));
}

}  // namespace dualflow
