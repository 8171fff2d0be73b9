// MeanFlow: (t, r) sampler, class dropout, guided velocity, the JVP-based loss and the one- and
// few-step sampler (see meanflow.h).
#include "train/meanflow.h"

#include <cmath>

#include "train/paths.h"

namespace dualflow {
namespace {

void check_times(const char* who, const char* name, const Tensor& s, const Tensor& x) {
  DF_CHECK(s.defined() && s.dim() == 1 && s.shape()[0] == x.shape()[0], "{}: {} expected [{}], got {}", who, name,
           x.shape()[0], s.defined() ? s.shape().str() : "undefined");
  DF_CHECK(s.dtype() == x.dtype() && s.device() == x.device(), "{}: {} expected {} on {} like the data, got {} on {}",
           who, name, dtype_name(x.dtype()), x.device().str(), dtype_name(s.dtype()), s.device().str());
}

void check_labels(const char* who, const Tensor& labels, int64_t n) {
  if (!labels.defined()) return;
  DF_CHECK(labels.dim() == 1 && labels.shape()[0] == n && labels.dtype() == DType::i64,
           "{}: labels expected i64 [{}], got {} {}", who, n, dtype_name(labels.dtype()), labels.shape().str());
}

// floor(n * share), robust to shares like 0.7 whose product lands just below an integer.
int64_t leading_rows(int64_t n, double share) {
  return std::min<int64_t>(n, int64_t(std::floor(double(n) * share + 1e-9)));
}

}  // namespace

TimeDistribution parse_time_distribution(const std::string& name) {
  if (name == "logit_normal") return TimeDistribution::LogitNormal;
  if (name == "uniform") return TimeDistribution::Uniform;
  fail("unknown time distribution '{}' (expected logit_normal or uniform)", name);
}

const char* time_distribution_name(TimeDistribution distribution) {
  return distribution == TimeDistribution::LogitNormal ? "logit_normal" : "uniform";
}

void MeanFlowOptions::validate() const {
  DF_CHECK(std::isfinite(time_mu), "MeanFlow: time_mu must be finite, got {}", time_mu);
  DF_CHECK(std::isfinite(time_sigma) && time_sigma > 0, "MeanFlow: time_sigma must be > 0, got {}", time_sigma);
  DF_CHECK(ratio_r_neq_t >= 0 && ratio_r_neq_t <= 1, "MeanFlow: ratio_r_neq_t must be in [0, 1], got {}",
           ratio_r_neq_t);
  DF_CHECK(std::isfinite(adaptive_p) && adaptive_p >= 0, "MeanFlow: adaptive_p must be >= 0, got {}", adaptive_p);
  DF_CHECK(std::isfinite(adaptive_c) && adaptive_c > 0, "MeanFlow: adaptive_c must be > 0, got {}", adaptive_c);
  DF_CHECK(class_dropout >= 0 && class_dropout <= 1, "MeanFlow: class_dropout must be in [0, 1], got {}",
           class_dropout);
  DF_CHECK(null_label >= -1, "MeanFlow: null_label must be a class index >= 0 (or -1 for none), got {}", null_label);
  DF_CHECK(std::isfinite(guidance_omega) && guidance_omega > 0, "MeanFlow: guidance_omega must be > 0, got {}",
           guidance_omega);
  // The effective guidance scale of the trained model is omega / (1 - kappa): kappa = 1 has none.
  DF_CHECK(guidance_kappa >= 0 && guidance_kappa < 1, "MeanFlow: guidance_kappa must be in [0, 1), got {}",
           guidance_kappa);
  DF_CHECK(guidance_t_min >= 0 && guidance_t_max <= 1 && guidance_t_min <= guidance_t_max,
           "MeanFlow: the guidance interval must satisfy 0 <= t_min <= t_max <= 1, got [{}, {}]", guidance_t_min,
           guidance_t_max);
}

MeanFlowTimes sample_meanflow_times(int64_t n, const MeanFlowOptions& options, Generator& gen,
                                    TensorOptions tensor_options) {
  options.validate();
  DF_CHECK(n >= 1, "sample_meanflow_times: the batch size must be >= 1, got {}", n);
  DF_CHECK(is_floating(tensor_options.dtype), "sample_meanflow_times: times must be floating, got {}",
           dtype_name(tensor_options.dtype));
  auto draw = [&]() {
    if (options.time_distribution == TimeDistribution::Uniform) return rand({n}, gen, tensor_options);
    return sigmoid(normal({n}, options.time_mu, options.time_sigma, gen, tensor_options));
  };
  Tensor a = draw(), b = draw();
  MeanFlowTimes times{maximum(a, b), minimum(a, b)};
  const int64_t equal_rows = leading_rows(n, 1.0 - options.ratio_r_neq_t);
  if (equal_rows == n) {
    times.r = times.t;
  } else if (equal_rows > 0) {
    times.r = cat({times.t.narrow(0, 0, equal_rows), times.r.narrow(0, equal_rows, n - equal_rows)}, 0);
  }
  return times;
}

Tensor drop_class_labels(const Tensor& labels, double probability, int64_t null_label, Generator& gen) {
  DF_CHECK(labels.defined(), "drop_class_labels: labels are undefined");
  check_labels("drop_class_labels", labels, labels.shape()[0]);
  DF_CHECK(probability >= 0 && probability <= 1, "drop_class_labels: probability must be in [0, 1], got {}",
           probability);
  DF_CHECK(null_label >= 0, "drop_class_labels: the null class index must be >= 0, got {}", null_label);
  const int64_t n = labels.shape()[0];
  // Always draw, so the generator advances the same way whatever the probability.
  const auto coin = rand({n}, gen).to_vector<float>();
  int64_t dropped = 0;
  for (float c : coin) dropped += c < probability;
  if (dropped == 0) return labels;
  std::vector<int64_t> values = labels.to_vector<int64_t>();
  for (int64_t i = 0; i < dropped; ++i) values[size_t(i)] = null_label;
  return from_vector(values, labels.shape()).to(labels.device());
}

Tensor meanflow_guided_velocity(const VelocityNet& net, const Tensor& z, const Tensor& t, const Tensor& v,
                                const Tensor& labels, const MeanFlowOptions& options) {
  const char* who = "meanflow_guided_velocity";
  options.validate();
  DF_CHECK(options.guided(), "{}: guidance is off (omega = 1, kappa = 0); use v itself", who);
  DF_CHECK(labels.defined() && options.null_label >= 0,
           "{}: guidance (omega {}, kappa {}) needs class labels and the null class index, got {} and null_label {}",
           who, options.guidance_omega, options.guidance_kappa, labels.defined() ? "labels" : "no labels",
           options.null_label);
  DF_CHECK(v.shape() == z.shape(), "{}: v expected the shape of z {}, got {}", who, z.shape().str(), v.shape().str());
  check_times(who, "t", t, z);
  check_labels(who, labels, z.shape()[0]);
  NoGradGuard no_grad;
  const int64_t n = z.shape()[0];
  const double omega = options.guidance_omega, kappa = options.guidance_kappa;
  // u(z, t, t | .) is the instantaneous velocity: the network at h = 0.
  Tensor null_labels = full({n}, double(options.null_label), labels.options());
  Tensor guided;
  if (kappa == 0.0) {
    Tensor uncond = net(z, t, zeros_like(t), null_labels);
    guided = v * omega + uncond * (1.0 - omega);
  } else {
    Tensor both = net(cat({z, z}, 0), cat({t, t}, 0), zeros({2 * n}, t.options()), cat({labels, null_labels}, 0));
    Tensor cond = both.narrow(0, 0, n), uncond = both.narrow(0, n, n);
    guided = v * omega + uncond * (1.0 - omega - kappa) + cond * kappa;
  }
  const TensorOptions time_options = t.options();
  Tensor rows = logical_and(ne(labels, scalar_tensor(double(options.null_label), labels.options())),
                            logical_and(ge(t, scalar_tensor(options.guidance_t_min, time_options)),
                                        le(t, scalar_tensor(options.guidance_t_max, time_options))));
  return where(per_sample(rows, z), guided, v);
}

MeanFlowJvp meanflow_jvp(const VelocityNet& net, const Tensor& z, const Tensor& t, const Tensor& r,
                         const Tensor& velocity, const Tensor& labels) {
  const char* who = "meanflow_jvp";
  DF_CHECK(z.defined() && z.dim() >= 1, "{}: z must be a batch [N, ...], got {}", who,
           z.defined() ? z.shape().str() : "undefined");
  DF_CHECK(velocity.defined() && velocity.shape() == z.shape(), "{}: the velocity expected the shape of z {}, got {}",
           who, z.shape().str(), velocity.defined() ? velocity.shape().str() : "undefined");
  check_times(who, "t", t, z);
  check_times(who, "r", r, z);
  check_labels(who, labels, z.shape()[0]);
  Tensor h = t - r;
  // Along (dz, dr, dt) = (velocity, 0, 1) the network's inputs (z, t, h = t - r) move by
  // (velocity, 1, 1).
  auto u_of = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{net(in[0], in[1], in[2], labels)}; };
  JvpResult res =
      jvp(u_of, {z, t, h}, {velocity, ones_like(t), ones_like(h)}, JvpOptions{.differentiable_tangents = false});
  DF_CHECK(res.outputs[0].shape() == z.shape(), "{}: the network returned {} for an input of shape {}", who,
           res.outputs[0].shape().str(), z.shape().str());
  return {res.outputs[0], res.tangents[0]};
}

MeanFlowLoss meanflow_loss(const VelocityNet& net, const Tensor& x, const Tensor& e, const Tensor& t, const Tensor& r,
                           const MeanFlowOptions& options, const Tensor& labels) {
  const char* who = "meanflow_loss";
  options.validate();
  DF_CHECK(x.defined() && x.dim() >= 2, "{}: x must be a batch [N, ...] of samples with at least one dim, got {}", who,
           x.defined() ? x.shape().str() : "undefined");
  DF_CHECK(e.defined() && e.shape() == x.shape() && e.dtype() == x.dtype(),
           "{}: the noise expected {} {} like the data, got {}", who, dtype_name(x.dtype()), x.shape().str(),
           e.defined() ? fmt::format("{} {}", dtype_name(e.dtype()), e.shape().str()) : "undefined");
  check_times(who, "t", t, x);
  check_times(who, "r", r, x);
  check_labels(who, labels, x.shape()[0]);

  MeanFlowLoss out;
  const int64_t n = x.shape()[0];
  Tensor t_b = per_sample(t, x);
  Tensor z = (1.0 - t_b) * x + t_b * e;
  Tensor v = e - x;
  out.velocity = options.guided() ? meanflow_guided_velocity(net, z, t, v, labels, options) : v;

  // Rows with t - r <= 0 have the target v itself (the clipped gap multiplies du/dt by 0), and
  // they are most of the batch (75% by default). They run a plain forward; only the others
  // carry tangents, which saves most of the JVP's work and of the memory its tangents hold.
  // Splitting is exact because the networks treat samples independently. Order: the no-gap
  // rows, then the rest, each in batch order, so sample_meanflow_times' layout (r = t rows
  // first) needs no gather.
  Tensor gap = clamp(t - r, 0.0, 1.0);
  std::vector<int64_t> order, with_gap;
  {
    const std::vector<double> gaps = gap.to(DType::f64).to_vector<double>();
    for (int64_t i = 0; i < n; ++i) (gaps[size_t(i)] > 0 ? with_gap : order).push_back(i);
  }
  const int64_t flat_rows = int64_t(order.size());
  order.insert(order.end(), with_gap.begin(), with_gap.end());
  bool in_batch_order = true;
  for (int64_t i = 0; i < n; ++i) in_batch_order &= order[size_t(i)] == i;
  Tensor order_index, inverse_index;
  if (!in_batch_order) {
    std::vector<int64_t> inverse(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) inverse[size_t(order[size_t(i)])] = i;
    order_index = from_vector(order, {n}).to(x.device());
    inverse_index = from_vector(inverse, {n}).to(x.device());
  }
  auto reorder = [&](const Tensor& a) { return a.defined() && !in_batch_order ? index_select(a, 0, order_index) : a; };
  auto restore = [&](const Tensor& a) { return in_batch_order ? a : index_select(a, 0, inverse_index); };

  const Tensor z_o = reorder(z), t_o = reorder(t), r_o = reorder(r), velocity_o = reorder(out.velocity),
               labels_o = reorder(labels), gap_o = reorder(gap);
  const int64_t jvp_rows = n - flat_rows;
  std::vector<Tensor> u_parts, dudt_parts;
  if (flat_rows > 0) {
    const Tensor z_f = sample_rows(z_o, 0, flat_rows), t_f = sample_rows(t_o, 0, flat_rows);
    Tensor u_f = net(z_f, t_f, t_f - sample_rows(r_o, 0, flat_rows), sample_rows(labels_o, 0, flat_rows));
    DF_CHECK(u_f.shape().vec() == z_f.shape().vec(), "{}: the network returned {} for an input of shape {}", who,
             u_f.shape().str(), z_f.shape().str());
    u_parts.push_back(u_f);
    dudt_parts.push_back(zeros_like(u_f.detach()));
  }
  if (jvp_rows > 0) {
    MeanFlowJvp j = meanflow_jvp(net, sample_rows(z_o, flat_rows, jvp_rows), sample_rows(t_o, flat_rows, jvp_rows),
                                 sample_rows(r_o, flat_rows, jvp_rows), sample_rows(velocity_o, flat_rows, jvp_rows),
                                 sample_rows(labels_o, flat_rows, jvp_rows));
    u_parts.push_back(j.u);
    dudt_parts.push_back(j.dudt);
  }
  Tensor u_o = u_parts.size() == 1 ? u_parts[0] : cat(u_parts, 0);
  std::vector<int64_t> sample_dims;
  for (int64_t d = 1; d < x.dim(); ++d) sample_dims.push_back(d);
  Tensor target_o, weight_o;
  {
    NoGradGuard no_grad;
    Tensor dudt_o = dudt_parts.size() == 1 ? dudt_parts[0] : cat(dudt_parts, 0);
    // Clipping t - r to [0, 1] as the official code does keeps rows with r > t at the flow
    // matching target instead of extrapolating backwards.
    target_o = stop_gradient(velocity_o - per_sample(gap_o, x) * dudt_o);
    out.dudt = restore(dudt_o);
    out.target = restore(target_o);
  }
  Tensor error_o = sum(square(u_o - target_o), sample_dims);  // L_i, on the tape
  {
    NoGradGuard no_grad;
    weight_o = options.adaptive_p == 0.0 ? ones_like(error_o.detach())
                                         : pow(error_o.detach() + options.adaptive_c, -options.adaptive_p);
    out.error = restore(error_o.detach());
    out.weight = restore(weight_o);
    out.mean_error = mean(out.error);
    out.mse = out.mean_error * (double(n) / double(x.numel()));
  }
  // The loss is a mean over rows, so it is computed in the split order.
  out.loss = options.adaptive_p == 0.0 ? mean(error_o) : mean(stop_gradient(weight_o) * error_o);
  out.u = in_batch_order ? u_o : index_select(u_o, 0, inverse_index);
  {
    NoGradGuard no_grad;
    out.velocity_error = mean(sum(square(out.u.detach() - v), sample_dims));
  }
  return out;
}

MeanFlowDraws draw_meanflow_inputs(const Tensor& x, const Tensor& labels, const MeanFlowOptions& options,
                                   Generator& gen) {
  options.validate();
  DF_CHECK(x.defined() && x.dim() >= 2, "meanflow_training_loss: x must be a batch [N, ...], got {}",
           x.defined() ? x.shape().str() : "undefined");
  const int64_t n = x.shape()[0];
  MeanFlowTimes times = sample_meanflow_times(n, options, gen, x.options());
  MeanFlowDraws d{randn(x.shape(), gen, x.options()), times.t, times.r, labels};
  if (labels.defined()) {
    DF_CHECK(options.null_label >= 0 || (options.class_dropout == 0 && !options.guided()),
             "meanflow_training_loss: class dropout {} and guidance need the null class index, got null_label {}",
             options.class_dropout, options.null_label);
    if (options.class_dropout > 0) d.labels = drop_class_labels(labels, options.class_dropout, options.null_label, gen);
  }
  return d;
}

MeanFlowLoss meanflow_training_loss(const VelocityNet& net, const Tensor& x, const Tensor& labels,
                                    const MeanFlowOptions& options, Generator& gen) {
  const MeanFlowDraws d = draw_meanflow_inputs(x, labels, options, gen);
  return meanflow_loss(net, x, d.e, d.t, d.r, options, d.labels);
}

Tensor meanflow_step(const VelocityNet& net, const Tensor& z, double t, double r, const Tensor& labels) {
  DF_CHECK(z.defined() && z.dim() >= 1, "meanflow_step: z must be a batch [N, ...], got {}",
           z.defined() ? z.shape().str() : "undefined");
  const int64_t n = z.shape()[0];
  check_labels("meanflow_step", labels, n);
  Tensor u = net(z, full({n}, t, z.options()), full({n}, t - r, z.options()), labels);
  DF_CHECK(u.shape() == z.shape(), "meanflow_step: the network returned {} for an input of shape {}", u.shape().str(),
           z.shape().str());
  return z - u * (t - r);
}

std::vector<double> meanflow_time_grid(int64_t steps) {
  DF_CHECK(steps >= 1, "meanflow_time_grid: steps must be >= 1, got {}", steps);
  std::vector<double> grid(size_t(steps + 1));
  for (int64_t i = 0; i <= steps; ++i) grid[size_t(i)] = 1.0 - double(i) / double(steps);
  grid.back() = 0.0;
  return grid;
}

MeanFlowSample meanflow_sample(const VelocityNet& net, const Tensor& noise, const std::vector<double>& time_grid,
                               const Tensor& labels) {
  DF_CHECK(time_grid.size() >= 2, "meanflow_sample: the time grid needs at least 2 times, got {}", time_grid.size());
  for (size_t i = 0; i < time_grid.size(); ++i) {
    DF_CHECK(time_grid[i] >= 0 && time_grid[i] <= 1, "meanflow_sample: grid time {} is {}, expected within [0, 1]", i,
             time_grid[i]);
    DF_CHECK(i == 0 || time_grid[i] < time_grid[i - 1],
             "meanflow_sample: the time grid must decrease strictly (noise at t = 1 towards data at 0), got {} then {}",
             i == 0 ? 0.0 : time_grid[i - 1], time_grid[i]);
  }
  NoGradGuard no_grad;
  MeanFlowSample out{noise, 0};
  for (size_t i = 0; i + 1 < time_grid.size(); ++i) {
    out.x = meanflow_step(net, out.x, time_grid[i], time_grid[i + 1], labels);
    ++out.nfe;
  }
  return out;
}

MeanFlowSample meanflow_sample(const VelocityNet& net, const Tensor& noise, int64_t steps, const Tensor& labels) {
  return meanflow_sample(net, noise, meanflow_time_grid(steps), labels);
}

}  // namespace dualflow
