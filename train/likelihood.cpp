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
  // Direction b is e_b for every sample, so tangent b holds column b of each sample's Jacobian;
  // the divergence picks entry b of direction b.
  Tensor unit = eye(d, x.options()).reshape({d, 1, d});
  Tensor basis = unit.expand({d, n, d}).contiguous().reshape(x.shape().with_leading(d));
  JvpResult r = jvp_batched([&](const std::vector<Tensor>& p) { return std::vector<Tensor>{v(p[0], t)}; }, {x}, {basis},
                            JvpOptions{.differentiable_tangents = GradMode::enabled()});
  check_velocity(r.outputs[0], x, who);
  Tensor divergence = sum(mul(r.tangents[0].reshape({d, n, d}), unit), {0, 2});
  return {r.outputs[0], divergence};
}

VelocityAndDivergence velocity_and_divergence_hutchinson(const VelocityField& v, const Tensor& x, double t,
                                                         const Tensor& probe) {
  const char* who = "velocity_and_divergence_hutchinson";
  const int64_t d = state_size(x, who), n = x.size(0);
  const bool several = probe.defined() && probe.dim() == x.dim() + 1 && probe.size(0) == n;
  const int64_t p = several ? probe.size(1) : 1;
  DF_CHECK(probe.defined() && probe.shape() == probe_shape(x.shape(), p),
           "{}: probe has shape {}, expected the state's shape {} (one probe per sample) or [{}, P, ...the state "
           "dims] (P per sample)",
           who, probe.defined() ? probe.shape().str() : std::string("undefined"), x.shape().str(), n);
  const JvpOptions opts{.differentiable_tangents = GradMode::enabled()};
  auto field = [&](const std::vector<Tensor>& q) { return std::vector<Tensor>{v(q[0], t)}; };
  if (!several) {
    JvpResult r = jvp(field, {x}, {probe}, opts);
    check_velocity(r.outputs[0], x, who);
    Tensor divergence = sum(mul(r.tangents[0].reshape({n, d}), probe.reshape({n, d})), {1});
    return {r.outputs[0], divergence};
  }
  // [N, P, ...] -> P directions [P, N, ...]; the estimate is the mean of the P quadratic forms.
  Tensor directions = probe.transpose(0, 1).contiguous().reshape(x.shape().with_leading(p));
  JvpResult r = jvp_batched(field, {x}, {directions}, opts);
  check_velocity(r.outputs[0], x, who);
  Tensor quadratic = sum(mul(r.tangents[0].reshape({p, n, d}), directions.reshape({p, n, d})), {0, 2});
  return {r.outputs[0], mul(quadratic, 1.0 / double(p))};
}

Shape probe_shape(const Shape& x_shape, int64_t probes) {
  DF_CHECK(probes >= 1, "probe_shape: expected at least 1 probe per sample, got {}", probes);
  DF_CHECK(x_shape.size() >= 2, "probe_shape: x must be [N, ...] with at least one state dim, got shape {}",
           x_shape.str());
  if (probes == 1) return x_shape;
  Shape s = x_shape;
  s.insert(1, probes);
  return s;
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
    probe = sample_probe(probe_shape(x.shape(), options.probes), options.probe, gen, x.options());
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

  DF_CHECK((options.divergence == DivergenceMethod::Hutchinson) == probe.defined(), "{}: the {} divergence {} probes",
           who, options.divergence == DivergenceMethod::Hutchinson ? "Hutchinson" : "exact",
           options.divergence == DivergenceMethod::Hutchinson ? "needs" : "takes no");
  DF_CHECK(options.probes >= 1, "{}: expected at least 1 Hutchinson probe per sample, got {}", who, options.probes);
  DF_CHECK(!probe.defined() || probe.shape() == probe_shape(x_shape, options.probes),
           "{}: probes of shape {} for x of shape {} and {} probe(s) per sample; expected {}", who,
           probe.defined() ? probe.shape().str() : "", x_shape.str(), options.probes,
           probe_shape(x_shape, options.probes).str());

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
    probe = sample_probe(probe_shape(x.shape(), options.probes), options.probe, gen, x.options());
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
