// Optimizers (SGD, Adam, AdamW) and their training helpers: global gradient-norm clipping,
// the learning-rate schedule (linear warmup, then constant or cosine) and the EMA of weights.
// Updates follow torch.optim's single-tensor formulas (see kernels/common/optim_math.h) and run
// as one fused kernel per parameter under NoGradGuard, so they record no autograd graph.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/fused_updates.h"
#include "engine/tensor.h"

namespace dualflow {

// ---- optimizers -----------------------------------------------------------------------------

// Holds named leaf parameters (f32 or f64, contiguous, each tensor once) and one state buffer
// per parameter and kind ("exp_avg", ...), all created up front so that state() always has the
// same names. Like PyTorch, each parameter counts its own updates: a parameter whose grad is
// undefined at step() is skipped and neither its value, its buffers nor its count change.
class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update of every parameter whose grad is defined.
  virtual void step();
  // set_to_none (the default, as in PyTorch >= 2.0) leaves every grad undefined, so the next
  // backward() starts afresh. Otherwise each defined grad is replaced by a new zero tensor;
  // it is never zeroed in place, because a grad may share storage with the seed of backward().
  void zero_grad(bool set_to_none = true);

  double lr() const { return lr_; }
  void set_lr(double lr);
  const std::string& name() const { return name_; }
  const NamedTensors& params() const { return params_; }

  // The live state (no copies): "<kind>.<param name>" for each buffer kind in the order of
  // kinds() and then of the parameters, and last "step", the i64 [num params] update counts.
  NamedTensors state() const;
  // Copies `state` into the optimizer. The names must be exactly those of state() and every
  // shape must match; otherwise nothing changes and the error lists what differs. Values are
  // cast to the buffers' dtype and device, so a CPU or f32 checkpoint loads anywhere.
  void load_state(const NamedTensors& state);
  const std::vector<std::string>& kinds() const { return kinds_; }
  // Updates taken so far by parameter i.
  int64_t step_count(size_t i) const;

 protected:
  Optimizer(std::string name, const NamedTensors& params, double lr, std::vector<std::string> kinds);
  // Updates parameter i with its (contiguous, checked) grad; `step` counts this update from 1.
  virtual void update(size_t i, const Tensor& grad, int64_t step) = 0;
  const Tensor& buffer(size_t kind, size_t i) const { return buffers_[kind][i]; }

 private:
  std::string name_;
  NamedTensors params_;
  double lr_;
  std::vector<std::string> kinds_;
  std::vector<std::vector<Tensor>> buffers_;  // [kind][param]
  Tensor steps_;                              // i64 [num params], on the CPU
};

struct SgdOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;  // L2: added to the gradient
  bool nesterov = false;      // needs momentum > 0 and dampening == 0
};

// torch.optim.SGD. State: "momentum.<name>" when momentum != 0 (the buffer starts as the first
// gradient, as PyTorch's momentum_buffer does).
class SGD : public Optimizer {
 public:
  explicit SGD(const NamedTensors& params, SgdOptions opts = {});
  const SgdOptions& options() const { return opts_; }

 protected:
  void update(size_t i, const Tensor& grad, int64_t step) override;

 private:
  SgdOptions opts_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // L2: added to the gradient
};

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;  // decoupled: param *= 1 - lr * weight_decay (PyTorch's default)
};

// torch.optim.Adam (amsgrad=False). State: "exp_avg.<name>", "exp_avg_sq.<name>".
class Adam : public Optimizer {
 public:
  explicit Adam(const NamedTensors& params, AdamOptions opts = {});
  const AdamOptions& options() const { return opts_; }
  bool decoupled_weight_decay() const { return decoupled_; }

 protected:
  Adam(const NamedTensors& params, const AdamOptions& opts, bool decoupled, const char* name);
  void update(size_t i, const Tensor& grad, int64_t step) override;

 private:
  AdamOptions opts_;
  bool decoupled_;
};

// torch.optim.AdamW (amsgrad=False): Adam with decoupled weight decay.
class AdamW : public Adam {
 public:
  explicit AdamW(const NamedTensors& params, AdamWOptions opts = {});
};

// Options of every optimizer in one struct, for configs. Fields that the chosen optimizer does
// not use must keep their defaults (a momentum given to "adam" is refused, not ignored).
struct OptimizerOptions {
  std::string name = "adamw";  // "sgd" | "adam" | "adamw"
  double lr = 1e-3;
  std::optional<double> weight_decay;             // unset: the optimizer's default (sgd/adam 0, adamw 0.01)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // adam, adamw
  double momentum = 0.0, dampening = 0.0;         // sgd
  bool nesterov = false;                          // sgd
};

std::unique_ptr<Optimizer> make_optimizer(const NamedTensors& params, const OptimizerOptions& opts);
// The names make_optimizer accepts.
const std::vector<std::string>& optimizer_names();

// ---- gradient clipping ----------------------------------------------------------------------

// torch.nn.utils.clip_grad_norm_ (L2): the norm of all defined grads taken together; when
// max_norm / (norm + 1e-6) < 1 every grad is multiplied by that factor in place. Returns the
// norm before clipping. A non-finite norm is returned as is and the grads are left untouched
// (the caller decides: skip the step, stop). Grads that share storage are scaled once.
double clip_grad_norm(const NamedTensors& params, double max_norm);

// ---- learning-rate schedule -----------------------------------------------------------------

// `step` is the number of optimizer updates already taken (0 for the first update).
// Warmup: lr_at(s) = base_lr * (s + 1) / warmup_steps for s < warmup_steps, a line from 0 at
// s = -1, so the first update already moves (base_lr / warmup_steps) and update warmup_steps - 1
// is the first at base_lr. Then Constant stays at base_lr; Cosine goes
//   min_lr + (base_lr - min_lr) * (1 + cos(pi * (s - warmup_steps) / (total_steps - warmup_steps))) / 2
// from base_lr at s = warmup_steps to min_lr at s = total_steps, and stays at min_lr after.
struct LrSchedule {
  enum Kind { Constant, Cosine };
  double base_lr = 1e-3;
  int64_t warmup_steps = 0;
  Kind kind = Constant;
  int64_t total_steps = 0;  // Cosine: must exceed warmup_steps; Constant: unused
  double min_lr = 0.0;      // Cosine only

  double lr_at(int64_t step) const;
  // Throws on warmup_steps < 0, a Cosine total_steps <= warmup_steps, negative rates.
  void validate() const;
  // "constant" | "cosine"
  static Kind parse_kind(const std::string& s);
};

// ---- exponential moving average of weights --------------------------------------------------

struct EmaOptions {
  double decay = 0.9999;
  int64_t update_every = 1;  // update(step) folds the weights in when step % update_every == 0
  bool warmup = false;       // decay at `step` = min(decay, (1 + step) / (10 + step))
};

// Shadow copies of the parameters (contiguous, same dtype and device), each updated as
// shadow <- decay * shadow + (1 - decay) * param (as shadow.lerp_(param, 1 - decay)). The decay
// applies per update, whatever update_every is. Shadows start as copies of the parameters.
class Ema {
 public:
  explicit Ema(const NamedTensors& params, EmaOptions opts = {});

  // `step` is the number of optimizer steps taken so far (1 after the first); does nothing
  // unless step % update_every == 0. Returns whether it updated.
  bool update(int64_t step);
  double decay_at(int64_t step) const;

  // Writes the shadows into `params` (same names and shapes as the tracked ones, in any order).
  void copy_to(const NamedTensors& params) const;
  void copy_to() const { copy_to(params_); }
  // Exchanges shadow and parameter values: once to evaluate with the EMA weights, again to
  // return to the trained ones.
  void swap(const NamedTensors& params);
  void swap() { swap(params_); }

  const NamedTensors& shadow() const { return shadow_; }
  const EmaOptions& options() const { return opts_; }
  // The live shadows under the parameters' own names, so an EMA state loads as model weights.
  NamedTensors state() const { return shadow_; }
  // Strict like Optimizer::load_state: same names, same shapes, or nothing changes.
  void load_state(const NamedTensors& state);

 private:
  NamedTensors params_;
  NamedTensors shadow_;
  EmaOptions opts_;
};

}  // namespace dualflow
