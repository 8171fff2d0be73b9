// Improved MeanFlow: guidance draws, the guided target from the network's own velocity head,
// the compound-velocity loss with one JVP, and sampling (see imf.h).
#include "train/imf.h"

#include <cmath>

#include "train/paths.h"

namespace dualflow {
namespace {

std::vector<int64_t> sample_dims(const Tensor& x) {
  std::vector<int64_t> dims;
  for (int64_t d = 1; d < x.dim(); ++d) dims.push_back(d);
  return dims;
}

void check_batch(const char* who, const char* name, const Tensor& s, const Tensor& x) {
  DF_CHECK(s.defined() && s.dim() == 1 && s.shape()[0] == x.shape()[0], "{}: {} expected [{}], got {}", who, name,
           x.shape()[0], s.defined() ? s.shape().str() : "undefined");
}

}  // namespace

MeanFlowOptions ImfOptions::time_options() const {
  MeanFlowOptions o;
  o.time_distribution = time_distribution;
  o.time_mu = time_mu;
  o.time_sigma = time_sigma;
  o.ratio_r_neq_t = ratio_r_neq_t;
  o.adaptive_p = adaptive_p;
  o.adaptive_c = adaptive_c;
  o.class_dropout = class_dropout;
  o.null_label = null_label;
  return o;
}

void ImfOptions::validate() const {
  time_options().validate();
  DF_CHECK(std::isfinite(omega_max) && omega_max >= 1, "iMF: omega_max must be >= 1, got {}", omega_max);
  DF_CHECK(std::isfinite(omega_beta) && omega_beta >= 0, "iMF: omega_beta must be >= 0, got {}", omega_beta);
  DF_CHECK(interval_split > 0 && interval_split < 1, "iMF: interval_split must be in (0, 1), got {}", interval_split);
}

ImfGuidance constant_guidance(int64_t n, double omega, double t_min, double t_max, TensorOptions options) {
  DF_CHECK(std::isfinite(omega) && omega >= 1, "iMF guidance: the scale must be >= 1, got {}", omega);
  DF_CHECK(0 <= t_min && t_min <= t_max && t_max <= 1,
           "iMF guidance: the interval must satisfy 0 <= t_min <= t_max "
           "<= 1, got [{}, {}]",
           t_min, t_max);
  return {full({n}, omega, options), full({n}, t_min, options), full({n}, t_max, options)};
}

Tensor imf_network_h(const Tensor& interval, const ImfGuidance& guidance) {
  if (!guidance.defined()) return interval;
  return stack({interval, 1.0 - reciprocal(guidance.omega), guidance.t_min, guidance.t_max}, 1);
}

ImfHeads split_imf_heads(const Tensor& output, const Shape& sample_like) {
  DF_CHECK(output.defined() && output.dim() == sample_like.size() && output.shape()[1] == 2 * sample_like[1],
           "iMF: the network's output expected two heads side by side, [{}, {}, ...] for samples {}, got {}",
           sample_like[0], 2 * sample_like[1], sample_like.str(),
           output.defined() ? output.shape().str() : "undefined");
  const int64_t c = sample_like[1];
  return {output.narrow(1, 0, c), output.narrow(1, c, c)};
}

Tensor sample_guidance_scales(int64_t n, double omega_max, double beta, Generator& gen, TensorOptions options) {
  DF_CHECK(omega_max >= 1 && beta >= 0, "sample_guidance_scales: omega_max >= 1 and beta >= 0, got {} and {}",
           omega_max, beta);
  // Drawn and transformed in f64, so that beta close to 1 keeps its precision.
  const Tensor u = rand({n}, gen, TensorOptions(DType::f64, options.device));
  // The CDF of omega^-beta on [1, W] is (omega^(1-beta) - 1) / (W^(1-beta) - 1) (log omega / log W
  // at beta = 1); its inverse at u is exp(log(1 + u (W^a - 1)) / a) with a = 1 - beta.
  const double log_w = std::log(omega_max);
  if (std::abs(beta - 1.0) < 1e-12) return exp(u * log_w).to(options.dtype);
  const double a = 1.0 - beta;
  return exp(log(1.0 + u * std::expm1(a * log_w)) * (1.0 / a)).to(options.dtype);
}

ImfDraws draw_imf_inputs(const Tensor& x, const Tensor& labels, const ImfOptions& options, Generator& gen) {
  options.validate();
  DF_CHECK(x.defined() && x.dim() >= 2, "imf_training_loss: x must be a batch [N, ...], got {}",
           x.defined() ? x.shape().str() : "undefined");
  DF_CHECK(!labels.defined() || options.null_label >= 0,
           "imf_training_loss: class labels need the null class index (guidance and class dropout), got null_label {}",
           options.null_label);
  // MeanFlow's draws in MeanFlow's order: (t, r), e, then the class dropout.
  MeanFlowOptions mo = options.time_options();
  if (!labels.defined()) mo.class_dropout = 0;
  const MeanFlowDraws m = draw_meanflow_inputs(x, labels, mo, gen);
  ImfDraws d{m.e, m.t, m.r, labels, m.labels, {}};
  if (!labels.defined()) return d;
  const int64_t n = x.shape()[0];
  const TensorOptions o = m.t.options();
  d.guidance.omega = sample_guidance_scales(n, options.omega_max, options.omega_beta, gen, o);
  d.guidance.t_min = rand({n}, gen, o) * options.interval_split;
  d.guidance.t_max = options.interval_split + rand({n}, gen, o) * (1.0 - options.interval_split);
  // The r = t rows (plain flow matching) learn the guided velocity over the whole of [0, 1].
  const Tensor equal = eq(m.t, m.r);
  d.guidance.t_min = where(equal, zeros_like(d.guidance.t_min), d.guidance.t_min);
  d.guidance.t_max = where(equal, ones_like(d.guidance.t_max), d.guidance.t_max);
  return d;
}

ImfTarget imf_guided_target(const VelocityNet& net, const Tensor& z, const Tensor& t, const Tensor& v,
                            const Tensor& labels, const Tensor& dropped_labels, const ImfGuidance& guidance,
                            int64_t null_label) {
  const char* who = "imf_guided_target";
  DF_CHECK(v.shape() == z.shape(), "{}: v expected the shape of z {}, got {}", who, z.shape().str(), v.shape().str());
  check_batch(who, "t", t, z);
  NoGradGuard no_grad;
  const int64_t n = z.shape()[0];
  const Tensor zero = zeros_like(t);
  if (!guidance.defined()) {
    DF_CHECK(!labels.defined(), "{}: class labels need the guidance conditions", who);
    const Tensor tangent = split_imf_heads(net(z, t, zero, Tensor()), z.shape()).v;
    return {tangent, v};
  }
  DF_CHECK(labels.defined() && dropped_labels.defined() && null_label >= 0,
           "{}: guidance needs the labels, the dropped labels and the null class", who);
  const Tensor inside = logical_and(ge(t, guidance.t_min), le(t, guidance.t_max));
  const Tensor omega_eff = where(inside, guidance.omega, ones_like(guidance.omega));
  // v_c with the effective scale, v_u unguided and unconditional; both at h = 0 on [0, 1].
  const ImfGuidance conditional{omega_eff, zero, ones_like(t)};
  const ImfGuidance unconditional{ones_like(t), zero, ones_like(t)};
  const Tensor h = cat({imf_network_h(zero, conditional), imf_network_h(zero, unconditional)}, 0);
  const Tensor null_labels = full({n}, double(null_label), labels.options());
  Shape doubled = z.shape();
  doubled[0] = 2 * n;
  const Tensor both = split_imf_heads(net(cat({z, z}, 0), cat({t, t}, 0), h, cat({labels, null_labels}, 0)), doubled).v;
  const Tensor v_c = both.narrow(0, 0, n), v_u = both.narrow(0, n, n);
  // Rows whose label was dropped learn the unconditional velocity: no guidance term.
  const Tensor kept = ne(dropped_labels, scalar_tensor(double(null_label), dropped_labels.options()));
  const Tensor scale = where(kept, 1.0 - reciprocal(omega_eff), zeros_like(omega_eff));
  return {v_c, v + per_sample(scale, z) * (v_c - v_u)};
}

ImfLoss imf_loss(const VelocityNet& net, const Tensor& x, const ImfDraws& d, const ImfOptions& options) {
  const char* who = "imf_loss";
  options.validate();
  DF_CHECK(x.defined() && x.dim() >= 2, "{}: x must be a batch [N, ...] of samples, got {}", who,
           x.defined() ? x.shape().str() : "undefined");
  DF_CHECK(d.e.defined() && d.e.shape() == x.shape(), "{}: the noise expected {} like the data, got {}", who,
           x.shape().str(), d.e.defined() ? d.e.shape().str() : "undefined");
  check_batch(who, "t", d.t, x);
  check_batch(who, "r", d.r, x);
  for (const auto& [name, a] : {std::pair{"labels", d.labels}, std::pair{"dropped labels", d.dropped_labels}}) {
    if (!a.defined()) continue;
    check_batch(who, name, a, x);
    DF_CHECK(a.dtype() == DType::i64, "{}: {} expected i64, got {}", who, name, dtype_name(a.dtype()));
  }
  if (d.guidance.defined()) {
    check_batch(who, "omega", d.guidance.omega, x);
    check_batch(who, "t_min", d.guidance.t_min, x);
    check_batch(who, "t_max", d.guidance.t_max, x);
  }
  DF_CHECK(d.labels.defined() == d.guidance.defined() && d.labels.defined() == d.dropped_labels.defined(),
           "{}: class labels, dropped labels and guidance conditions come together (class-conditional) or not at all",
           who);
  const int64_t n = x.shape()[0];
  ImfLoss out;
  const Tensor t_b = per_sample(d.t, x);
  const Tensor z = (1.0 - t_b) * x + t_b * d.e;
  const Tensor v = d.e - x;
  const ImfTarget target =
      imf_guided_target(net, z, d.t, v, d.labels, d.dropped_labels, d.guidance, options.null_label);
  out.tangent = target.tangent;
  out.velocity = target.velocity;

  // The leading rows with r = t need no du/dt: a plain forward. The others carry tangents.
  const Tensor gap = d.t - d.r;
  int64_t flat = 0;
  {
    const std::vector<double> g = gap.to(DType::f64).to_vector<double>();
    while (flat < n && g[size_t(flat)] == 0.0) ++flat;
  }
  const Tensor h = imf_network_h(gap, d.guidance);
  std::vector<Tensor> outputs, tangents;
  if (flat > 0) {
    const Tensor o = net(sample_rows(z, 0, flat), sample_rows(d.t, 0, flat), sample_rows(h, 0, flat),
                         sample_rows(d.dropped_labels, 0, flat));
    outputs.push_back(o);
    tangents.push_back(zeros_like(o.detach()));
  }
  if (flat < n) {
    const int64_t m = n - flat;
    const Tensor labels = sample_rows(d.dropped_labels, flat, m);
    auto f = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{net(in[0], in[1], in[2], labels)}; };
    const Tensor h_m = sample_rows(h, flat, m);
    // Along (dz, dr, dt) = (v_c, 0, 1) the inputs move by dz = v_c, dt = 1 and d(t - r) = 1;
    // the guidance conditions stay.
    Tensor h_tangent = ones({m}, h.options());
    if (h_m.dim() == 2) h_tangent = cat({ones({m, 1}, h.options()), zeros({m, h_m.shape()[1] - 1}, h.options())}, 1);
    JvpResult res = jvp(f, {sample_rows(z, flat, m), sample_rows(d.t, flat, m), h_m},
                        {sample_rows(target.tangent, flat, m), ones({m}, d.t.options()), h_tangent},
                        JvpOptions{.differentiable_tangents = false});
    outputs.push_back(res.outputs[0]);
    tangents.push_back(res.tangents[0]);
  }
  const Tensor output = outputs.size() == 1 ? outputs[0] : cat(outputs, 0);
  const ImfHeads heads = split_imf_heads(output, x.shape());
  out.u = heads.u;
  out.v = heads.v;
  {
    NoGradGuard no_grad;
    const Tensor tangent_out = tangents.size() == 1 ? tangents[0] : cat(tangents, 0);
    out.dudt = split_imf_heads(tangent_out, x.shape()).u;
  }
  const std::vector<int64_t> dims = sample_dims(x);
  out.compound = out.u + per_sample(gap, x) * stop_gradient(out.dudt);
  const Tensor target_v = stop_gradient(out.velocity);
  const Tensor error_u = sum(square(out.compound - target_v), dims);
  const Tensor error_v = sum(square(out.v - target_v), dims);
  Tensor w_u, w_v;
  {
    NoGradGuard no_grad;
    out.error_u = error_u.detach();
    out.error_v = error_v.detach();
    auto weight = [&](const Tensor& l) {
      return options.adaptive_p == 0.0 ? ones_like(l) : pow(l + options.adaptive_c, -options.adaptive_p);
    };
    w_u = weight(out.error_u);
    w_v = weight(out.error_v);
    const double per_entry = double(n) / double(x.numel());
    out.mse = mean(out.error_u) * per_entry;
    out.v_mse = mean(out.error_v) * per_entry;
  }
  out.loss = mean(stop_gradient(w_u) * error_u + stop_gradient(w_v) * error_v);
  return out;
}

ImfLoss imf_training_loss(const VelocityNet& net, const Tensor& x, const Tensor& labels, const ImfOptions& options,
                          Generator& gen) {
  return imf_loss(net, x, draw_imf_inputs(x, labels, options, gen), options);
}

MeanFlowSample imf_sample(const VelocityNet& net, const Tensor& noise, const std::vector<double>& time_grid,
                          const Tensor& labels, const ImfGuidance& guidance) {
  DF_CHECK(time_grid.size() >= 2, "imf_sample: the time grid needs at least 2 times, got {}", time_grid.size());
  for (size_t i = 0; i < time_grid.size(); ++i)
    DF_CHECK(time_grid[i] >= 0 && time_grid[i] <= 1 && (i == 0 || time_grid[i] < time_grid[i - 1]),
             "imf_sample: grid time {} is {}; the grid must decrease strictly within [0, 1]", i, time_grid[i]);
  NoGradGuard no_grad;
  const int64_t n = noise.shape()[0];
  MeanFlowSample out{noise, 0};
  for (size_t i = 0; i + 1 < time_grid.size(); ++i) {
    const double t = time_grid[i], r = time_grid[i + 1];
    const Tensor h = imf_network_h(full({n}, t - r, noise.options()), guidance);
    const Tensor u = split_imf_heads(net(out.x, full({n}, t, noise.options()), h, labels), noise.shape()).u;
    out.x = out.x - u * (t - r);
    ++out.nfe;
  }
  return out;
}

VelocityNet imf_flow_matching_velocity(const VelocityNet& imf_network, bool conditional) {
  return [imf_network, conditional](const Tensor& x, const Tensor& tau, const Tensor& h, const Tensor& labels) {
    DF_CHECK(!h.defined(), "imf_flow_matching_velocity: the instantaneous velocity takes no interval h, got {}",
             h.shape().str());
    const int64_t n = x.shape()[0];
    const Tensor t = 1.0 - tau;
    const ImfGuidance none = conditional ? constant_guidance(n, 1.0, 0.0, 1.0, tau.options()) : ImfGuidance{};
    const Tensor out = imf_network(x, t, imf_network_h(zeros_like(t), none), labels);
    return -split_imf_heads(out, x.shape()).v;
  };
}

}  // namespace dualflow
