// Optimizers, gradient clipping, the learning-rate schedule and the weight EMA (train/optim.h).
// Every update goes through one fused engine update per parameter (engine/fused_updates.h).
#include "train/optim.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>
#include <set>
#include <tuple>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace dualflow {
namespace {

std::string describe(const Tensor& t) {
  return fmt::format("{} {} {} strides {}", dtype_name(t.dtype()), t.device().str(), t.shape().str(),
                     t.strides().str());
}

// Up to five items of a list, then how many more.
std::string some(const std::vector<std::string>& items) {
  std::string s;
  for (size_t i = 0; i < items.size() && i < 5; ++i) s += (i ? ", " : "") + items[i];
  if (items.size() > 5) s += fmt::format(" and {} more", items.size() - 5);
  return s;
}

// For each entry of `expected`, the index of the entry of `given` with its name. Names must be
// the same sets and shapes equal; otherwise fails listing every difference, so a caller that
// validates first changes nothing on a mismatch.
std::vector<size_t> match_by_name(const std::string& op, const NamedTensors& expected, const NamedTensors& given) {
  std::map<std::string, size_t> at;
  std::vector<std::string> duplicate, missing, unexpected, mismatched;
  for (size_t i = 0; i < given.size(); ++i)
    if (!at.emplace(given[i].first, i).second) duplicate.push_back(given[i].first);
  std::vector<size_t> index(expected.size());
  std::set<std::string> wanted;
  for (size_t i = 0; i < expected.size(); ++i) {
    const auto& [name, t] = expected[i];
    wanted.insert(name);
    auto it = at.find(name);
    if (it == at.end()) {
      missing.push_back(name);
      continue;
    }
    const Tensor& g = given[it->second].second;
    if (!g.defined()) mismatched.push_back(fmt::format("{} (undefined)", name));
    else if (g.shape() != t.shape())
      mismatched.push_back(fmt::format("{} (expected {}, got {})", name, t.shape().str(), g.shape().str()));
    index[i] = it->second;
  }
  for (const auto& [name, t] : given)
    if (!wanted.count(name)) unexpected.push_back(name);
  if (duplicate.empty() && missing.empty() && unexpected.empty() && mismatched.empty()) return index;
  std::string why;
  if (!missing.empty()) why += fmt::format("; missing: {}", some(missing));
  if (!unexpected.empty()) why += fmt::format("; unexpected: {}", some(unexpected));
  if (!mismatched.empty()) why += fmt::format("; shape differs: {}", some(mismatched));
  if (!duplicate.empty()) why += fmt::format("; given twice: {}", some(duplicate));
  fail("{}: expected {} entries with the names and shapes of this state, got {}{}", op, expected.size(), given.size(),
       why);
}

// Parameters an optimizer or EMA can own: named once each, defined, leaf, f32/f64, contiguous.
void check_params(const std::string& op, const NamedTensors& params) {
  std::set<std::string> names;
  std::set<const void*> impls;
  for (const auto& [name, p] : params) {
    DF_CHECK(!name.empty(), "{}: expected every parameter to have a name, got an empty one", op);
    DF_CHECK(names.insert(name).second, "{}: expected unique parameter names, got '{}' twice", op, name);
    DF_CHECK(p.defined(), "{}: expected a tensor for parameter '{}', got an undefined one", op, name);
    DF_CHECK(impls.insert(p.impl().get()).second,
             "{}: expected each tensor once, got '{}' as a second name of an earlier parameter", op, name);
    DF_CHECK(p.is_leaf(), "{}: expected leaf parameters, got '{}' computed by '{}' (detach it or use the leaf)", op,
             name, p.grad_fn() ? p.grad_fn()->name() : "?");
    DF_CHECK(p.dtype() == DType::f32 || p.dtype() == DType::f64, "{}: expected f32 or f64 parameters, got '{}' as {}",
             op, name, dtype_name(p.dtype()));
    DF_CHECK(p.is_contiguous(), "{}: expected contiguous parameters, got '{}' with shape {} strides {}", op, name,
             p.shape().str(), p.strides().str());
  }
}

void check_rate(const char* op, const char* what, double v) {
  DF_CHECK(std::isfinite(v) && v >= 0.0, "{}: expected a finite {} >= 0, got {}", op, what, v);
}

void check_beta(const char* op, const char* what, double v) {
  DF_CHECK(v >= 0.0 && v < 1.0, "{}: expected 0 <= {} < 1, got {}", op, what, v);
}

}  // namespace

// ---- Optimizer -------------------------------------------------------------------------------

Optimizer::Optimizer(std::string name, const NamedTensors& params, double lr, std::vector<std::string> kinds)
    : name_(std::move(name)), params_(params), lr_(lr), kinds_(std::move(kinds)) {
  check_params(name_, params_);
  check_rate(name_.c_str(), "learning rate", lr);
  NoGradGuard no_grad;
  buffers_.resize(kinds_.size());
  for (auto& per_param : buffers_)
    for (const auto& [pname, p] : params_) per_param.push_back(zeros(p.shape(), p.options()));
  steps_ = zeros(Shape{int64_t(params_.size())}, DType::i64);
}

void Optimizer::set_lr(double lr) {
  check_rate(name_.c_str(), "learning rate", lr);
  lr_ = lr;
}

int64_t Optimizer::step_count(size_t i) const {
  DF_CHECK(i < params_.size(), "{}: expected a parameter index below {}, got {}", name_, params_.size(), i);
  return steps_.data<int64_t>()[i];
}

void Optimizer::step() {
  NoGradGuard no_grad;
  int64_t* counts = steps_.data<int64_t>();
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& [pname, p] = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;  // as PyTorch: no grad, no update, no state change
    DF_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype() && g.device() == p.device(),
             "{}: expected the grad of '{}' to match it ({}), got {}", name_, pname, describe(p), describe(g));
    g = g.detach();
    if (!g.is_contiguous()) g = g.contiguous();
    update(i, g, counts[i] + 1);
    ++counts[i];
  }
}

void Optimizer::zero_grad(bool set_to_none) {
  for (const auto& [pname, p] : params_) {
    if (!p.grad().defined()) continue;
    if (set_to_none) {
      p.zero_grad();
    } else {
      NoGradGuard no_grad;
      p.impl()->autograd->grad = zeros(p.shape(), p.options());
    }
  }
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  for (size_t k = 0; k < kinds_.size(); ++k)
    for (size_t i = 0; i < params_.size(); ++i) out.emplace_back(kinds_[k] + "." + params_[i].first, buffers_[k][i]);
  out.emplace_back("step", steps_);
  return out;
}

void Optimizer::load_state(const NamedTensors& state) {
  const std::string op = name_ + " load_state";
  const NamedTensors mine = this->state();
  const std::vector<size_t> from = match_by_name(op, mine, state);
  for (size_t j = 0; j < mine.size(); ++j) {
    const Tensor& src = state[from[j]].second;
    DF_CHECK(is_floating(src.dtype()) || mine[j].first == "step", "{}: expected a floating tensor for '{}', got {}", op,
             mine[j].first, dtype_name(src.dtype()));
  }
  const Tensor& given_steps = state[from.back()].second;
  for (double v : given_steps.to_vector<double>())
    DF_CHECK(v >= 0 && v == std::floor(v), "{}: expected non-negative whole step counts, got {}", op, v);
  NoGradGuard no_grad;
  for (size_t j = 0; j < mine.size(); ++j) copy_(mine[j].second, state[from[j]].second);
}

// ---- SGD ---------------------------------------------------------------------------------------

namespace {
std::vector<std::string> sgd_kinds(const SgdOptions& o) {
  if (o.momentum != 0.0) return {"momentum"};
  return {};
}
}  // namespace

SGD::SGD(const NamedTensors& params, SgdOptions opts)
    : Optimizer("sgd", params, opts.lr, sgd_kinds(opts)), opts_(opts) {
  check_rate("sgd", "momentum", opts.momentum);
  check_rate("sgd", "weight_decay", opts.weight_decay);
  DF_CHECK(std::isfinite(opts.dampening), "sgd: expected a finite dampening, got {}", opts.dampening);
  DF_CHECK(!opts.nesterov || (opts.momentum > 0.0 && opts.dampening == 0.0),
           "sgd: Nesterov momentum expects momentum > 0 and dampening == 0, got momentum {} and dampening {}",
           opts.momentum, opts.dampening);
}

void SGD::update(size_t i, const Tensor& grad, int64_t step) {
  SgdStepArgs a;
  a.lr = lr();
  a.momentum = opts_.momentum;
  a.dampening = opts_.dampening;
  a.weight_decay = opts_.weight_decay;
  a.nesterov = opts_.nesterov;
  a.first_step = step == 1;  // PyTorch creates the momentum buffer as a copy of the first grad
  optim::sgd_step_(params()[i].second, grad, opts_.momentum != 0.0 ? buffer(0, i) : Tensor(), a);
}

// ---- Adam / AdamW ------------------------------------------------------------------------------

Adam::Adam(const NamedTensors& params, AdamOptions opts) : Adam(params, opts, false, "adam") {}

Adam::Adam(const NamedTensors& params, const AdamOptions& opts, bool decoupled, const char* name)
    : Optimizer(name, params, opts.lr, {"exp_avg", "exp_avg_sq"}), opts_(opts), decoupled_(decoupled) {
  check_beta(name, "beta1", opts.beta1);
  check_beta(name, "beta2", opts.beta2);
  check_rate(name, "eps", opts.eps);
  check_rate(name, "weight_decay", opts.weight_decay);
}

void Adam::update(size_t i, const Tensor& grad, int64_t step) {
  AdamStepArgs a;
  a.lr = lr();
  a.beta1 = opts_.beta1;
  a.beta2 = opts_.beta2;
  a.eps = opts_.eps;
  a.weight_decay = opts_.weight_decay;
  a.decoupled_weight_decay = decoupled_;
  a.bias_correction1 = 1.0 - std::pow(opts_.beta1, double(step));
  a.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(opts_.beta2, double(step)));
  optim::adam_step_(params()[i].second, grad, buffer(0, i), buffer(1, i), a);
}

namespace {
AdamOptions as_adam(const AdamWOptions& o) { return AdamOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay}; }
}  // namespace

AdamW::AdamW(const NamedTensors& params, AdamWOptions opts) : Adam(params, as_adam(opts), true, "adamw") {}

// ---- factory -----------------------------------------------------------------------------------

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names = {"sgd", "adam", "adamw"};
  return names;
}

std::unique_ptr<Optimizer> make_optimizer(const NamedTensors& params, const OptimizerOptions& o) {
  const OptimizerOptions d;
  auto refuse_unused = [&](bool unused, const char* field) {
    DF_CHECK(!unused, "make_optimizer: '{}' does not use {}; expected it at its default, got a value", o.name, field);
  };
  if (o.name == "sgd") {
    refuse_unused(o.beta1 != d.beta1 || o.beta2 != d.beta2, "betas");
    refuse_unused(o.eps != d.eps, "eps");
    return std::make_unique<SGD>(params,
                                 SgdOptions{o.lr, o.momentum, o.dampening, o.weight_decay.value_or(0.0), o.nesterov});
  }
  if (o.name == "adam" || o.name == "adamw") {
    refuse_unused(o.momentum != d.momentum, "momentum");
    refuse_unused(o.dampening != d.dampening, "dampening");
    refuse_unused(o.nesterov != d.nesterov, "nesterov");
    if (o.name == "adam")
      return std::make_unique<Adam>(params, AdamOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay.value_or(0.0)});
    return std::make_unique<AdamW>(
        params, AdamWOptions{o.lr, o.beta1, o.beta2, o.eps, o.weight_decay.value_or(AdamWOptions{}.weight_decay)});
  }
  fail("make_optimizer: expected an optimizer name out of {}, got '{}'", fmt::join(optimizer_names(), ", "), o.name);
}

// ---- clip_grad_norm ----------------------------------------------------------------------------

double clip_grad_norm(const NamedTensors& params, double max_norm) {
  DF_CHECK(max_norm >= 0.0, "clip_grad_norm: expected max_norm >= 0, got {}", max_norm);
  NoGradGuard no_grad;
  // Per-tensor norms are gathered per device and summed there, so there is one sync per device.
  std::vector<std::pair<Device, std::vector<Tensor>>> norms;
  std::vector<Tensor> grads;
  for (const auto& [name, p] : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    g = g.detach();
    grads.push_back(g);
    auto it = std::find_if(norms.begin(), norms.end(), [&](const auto& e) { return e.first == g.device(); });
    if (it == norms.end()) it = norms.insert(norms.end(), {g.device(), {}});
    it->second.push_back(norm(g).to(DType::f64).reshape(Shape{1}));
  }
  double total_sq = 0.0;
  for (const auto& [dev, ns] : norms) total_sq += sum(square(cat(ns))).item();
  const double total = std::sqrt(total_sq);
  if (!std::isfinite(total)) return total;
  const double coef = max_norm / (total + 1e-6);
  if (coef >= 1.0) return total;  // torch clamps the factor at 1; multiplying by 1 changes nothing
  // Two parameters may hold views of one gradient buffer (an op handed the same incoming
  // gradient to both); each buffer region is scaled once.
  std::set<std::tuple<const void*, int64_t, int64_t>> done;
  for (const Tensor& g : grads) {
    if (!done.insert({g.impl()->storage.get(), g.offset(), g.numel()}).second) continue;
    if (g.numel() == 0) continue;
    if (g.is_contiguous()) {
      optim::scale_(g, coef);
    } else {
      copy_(g, mul(g, coef));
    }
  }
  return total;
}

// ---- LrSchedule --------------------------------------------------------------------------------

void LrSchedule::validate() const {
  check_rate("lr schedule", "base_lr", base_lr);
  DF_CHECK(warmup_steps >= 0, "lr schedule: expected warmup_steps >= 0, got {}", warmup_steps);
  if (kind == Cosine) {
    check_rate("lr schedule", "min_lr", min_lr);
    DF_CHECK(total_steps > warmup_steps, "lr schedule: cosine expects total_steps > warmup_steps, got {} and {}",
             total_steps, warmup_steps);
  }
}

double LrSchedule::lr_at(int64_t step) const {
  validate();
  DF_CHECK(step >= 0, "lr schedule: expected a step >= 0, got {}", step);
  if (step < warmup_steps) return base_lr * double(step + 1) / double(warmup_steps);
  if (kind == Constant) return base_lr;
  if (step >= total_steps) return min_lr;
  const double progress = double(step - warmup_steps) / double(total_steps - warmup_steps);
  return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

LrSchedule::Kind LrSchedule::parse_kind(const std::string& s) {
  if (s == "constant") return Constant;
  if (s == "cosine") return Cosine;
  fail("lr schedule: expected 'constant' or 'cosine', got '{}'", s);
}

// ---- Ema ---------------------------------------------------------------------------------------

Ema::Ema(const NamedTensors& params, EmaOptions opts) : params_(params), opts_(opts) {
  check_params("ema", params_);
  DF_CHECK(opts.decay >= 0.0 && opts.decay <= 1.0, "ema: expected 0 <= decay <= 1, got {}", opts.decay);
  DF_CHECK(opts.update_every >= 1, "ema: expected update_every >= 1, got {}", opts.update_every);
  NoGradGuard no_grad;
  for (const auto& [name, p] : params_) shadow_.emplace_back(name, p.detach().clone());
}

double Ema::decay_at(int64_t step) const {
  if (!opts_.warmup) return opts_.decay;
  DF_CHECK(step >= 0, "ema: expected a step >= 0, got {}", step);
  return std::min(opts_.decay, (1.0 + double(step)) / (10.0 + double(step)));
}

bool Ema::update(int64_t step) {
  DF_CHECK(step >= 0, "ema: expected a step >= 0, got {}", step);
  if (step % opts_.update_every != 0) return false;
  const double weight = 1.0 - decay_at(step);
  for (size_t i = 0; i < params_.size(); ++i) optim::lerp_(shadow_[i].second, params_[i].second, weight);
  return true;
}

void Ema::copy_to(const NamedTensors& params) const {
  // `params` must name exactly the shadows, with their shapes; checked in full before any write.
  const std::vector<size_t> at = match_by_name("ema copy_to", shadow_, params);
  NoGradGuard no_grad;
  for (size_t i = 0; i < shadow_.size(); ++i) copy_(params[at[i]].second, shadow_[i].second);
}

void Ema::swap(const NamedTensors& params) {
  const std::vector<size_t> at = match_by_name("ema swap", shadow_, params);
  NoGradGuard no_grad;
  for (size_t i = 0; i < shadow_.size(); ++i) {
    const Tensor& p = params[at[i]].second;
    const Tensor& s = shadow_[i].second;
    Tensor kept = p.detach().clone();
    copy_(p, s);
    copy_(s, kept);
  }
}

void Ema::load_state(const NamedTensors& state) {
  const std::vector<size_t> from = match_by_name("ema load_state", shadow_, state);
  for (size_t i = 0; i < shadow_.size(); ++i)
    DF_CHECK(is_floating(state[from[i]].second.dtype()), "ema load_state: expected a floating tensor for '{}', got {}",
             shadow_[i].first, dtype_name(state[from[i]].second.dtype()));
  NoGradGuard no_grad;
  for (size_t i = 0; i < shadow_.size(); ++i) copy_(shadow_[i].second, state[from[i]].second);
}

}  // namespace dualflow
