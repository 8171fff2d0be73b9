// Autodiff in both directions. Reverse mode: each op whose inputs require grad records a Node
// holding its VJP rule; backward walks the graph in reverse topological order. Forward mode:
// tensors carry tangents per forward level; each op computes its output tangents at once from
// its JVP rule. Rules are written with engine ops, so every mode composes with every other.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace dualflow {

// ---- reverse-mode graph ---------------------------------------------------------------------

class Node : public std::enable_shared_from_this<Node> {
 public:
  explicit Node(const char* name) : name_(name) {}
  // Releases long chains iteratively, so dropping a graph of any depth cannot overflow the stack.
  virtual ~Node();
  const char* name() const { return name_; }
  // Gradient w.r.t. each input (undefined = no contribution) given the output's gradient.
  virtual std::vector<Tensor> apply(const Tensor& grad_out) = 0;
  // Drops what the rule saved; applying afterwards is an error.
  virtual void release() {}
  virtual bool released() const { return false; }
  // One entry per input; null where that input needs no gradient.
  std::vector<std::shared_ptr<Node>> next;

 private:
  const char* name_;
};

struct AutogradMeta {
  bool requires_grad = false;                         // set on leaves by the user
  std::shared_ptr<Node> grad_fn;                      // set on op outputs
  std::weak_ptr<Node> accumulator;                    // a leaf's AccumulateGrad node, made on demand
  Tensor grad;                                        // a leaf's accumulated gradient
  std::vector<std::pair<uint64_t, Tensor>> tangents;  // forward-mode tangent per level id
};

// Which inputs of an op need a gradient (bit i = input i).
// Which inputs of a node need a gradient; a node has at most kMaxOpInputs inputs.
constexpr size_t kMaxOpInputs = 64;
struct NeedsGrad {
  uint64_t mask = 0;
  bool operator[](int i) const { return (mask >> i) & 1u; }
};

using Grads = std::vector<Tensor>;
using Tangents = std::vector<Tensor>;

// ---- modes ----------------------------------------------------------------------------------

class GradMode {
 public:
  static bool enabled();
  static void set_enabled(bool on);
};

// Disables recording of the reverse tape in a scope (forward-mode tangents still flow).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

class GradModeGuard {
 public:
  explicit GradModeGuard(bool on) : prev_(GradMode::enabled()) { GradMode::set_enabled(on); }
  ~GradModeGuard() { GradMode::set_enabled(prev_); }
  GradModeGuard(const GradModeGuard&) = delete;
  GradModeGuard& operator=(const GradModeGuard&) = delete;

 private:
  bool prev_;
};

// How an op's JVP rule meets a batch of K tangents, [K, ...the tensor's shape], at a level opened
// by jvp_batched (the K directions share one primal pass).
enum class TangentBatch {
  Loop,       // the rule runs once per direction on [..shape] slices; the results are stacked (right for any rule)
  Broadcast,  // the rule only broadcasts its tangents against primal tensors and reduces over negative dims
              // (elementwise ops, matmul of matrices, row norms): each tangent is viewed as [K, 1, ..., shape]
              // at the output's rank + 1 and the rule runs once
  Custom,     // the op gives a rule of its own that takes the [K, ...] tangents as they are
};

namespace autodiff_detail {

bool any_forward_level_visible();
bool requires_grad(const Tensor& t);
// Whether some input carries autodiff state (record()'s first test).
inline bool any_autodiff_state(std::span<const Tensor* const> inputs) {
  for (const Tensor* t : inputs)
    if (t->defined() && t->impl()->autograd != nullptr) return true;
  return false;
}
// Whether record() over these inputs may attach a rule now: some input carries autodiff state
// and there is a tape or a visible forward level. An op that saves values only for its rules
// skips them otherwise (a network's parameters carry state even under NoGradGuard).
inline bool may_record(std::initializer_list<const Tensor*> inputs) {
  return any_autodiff_state(std::span<const Tensor* const>(inputs.begin(), inputs.size())) &&
         (GradMode::enabled() || any_forward_level_visible());
}
std::shared_ptr<Node> edge_for(const Tensor& t);
void set_grad_fn(const Tensor& out, std::shared_ptr<Node> fn);
// Runs `compute_tangent(tangents)` once per visible forward level at which any input has a
// tangent, with that level and all inner ones hidden (no perturbation confusion) and, for a
// level opened without tape, under NoGradGuard; attaches each result to `out`.
// At a level opened by jvp_batched every tangent carries K directions, [K, ...its tensor's
// shape]; `mode` says how the op's rule meets them, and `batched_rule` is the op's own rule for
// TangentBatch::Custom.
void forward_tangents(const Tensor* const* inputs, int n, const Tensor& out,
                      const std::function<Tensor(const Tangents&)>& compute_tangent, TangentBatch mode,
                      const std::function<Tensor(const Tangents&)>* batched_rule);

template <class Vjp>
class FnNode final : public Node {
 public:
  FnNode(const char* name, Vjp&& vjp, NeedsGrad needs)
      : Node(name), vjp_(std::make_unique<Vjp>(std::move(vjp))), needs_(needs) {}
  std::vector<Tensor> apply(const Tensor& g) override {
    if (!vjp_)
      fail("backward through '{}' a second time: the graph was freed; pass retain_graph=true to the first backward",
           name());
    return (*vjp_)(g, needs_);
  }
  void release() override { vjp_.reset(); }
  bool released() const override { return !vjp_; }

 private:
  std::unique_ptr<Vjp> vjp_;
  NeedsGrad needs_;
};

}  // namespace autodiff_detail

// Attaches autodiff to an op's freshly computed output. `vjp(g, needs) -> Grads` and
// `jvp(tangents, out) -> Tensor` are the op's two rules; they capture (by value) what they use.
// `batch` says how `jvp` meets K tangents at once (TangentBatch; Loop is right for any rule);
// `batched_jvp`, given with TangentBatch::Custom, is a rule taking [K, ...] tangents directly.
// Cost when nothing is differentiated: one pointer test per input.
// `inputs` is any contiguous list of up to kMaxOpInputs tensors (a braced list, or a vector of
// pointers for ops of many inputs such as cat).
template <class Vjp, class Jvp>
Tensor record(const char* name, std::span<const Tensor* const> inputs, Tensor out, Vjp&& vjp, Jvp&& jvp,
              TangentBatch batch = TangentBatch::Loop,
              const std::function<Tensor(const Tangents&, const Tensor&)>& batched_jvp = {}) {
  DF_CHECK(inputs.size() <= kMaxOpInputs, "{}: an op records at most {} inputs, got {}", name, kMaxOpInputs,
           inputs.size());
  if (!autodiff_detail::any_autodiff_state(inputs)) return out;
  if (GradMode::enabled()) {
    NeedsGrad needs;
    int i = 0;
    for (const Tensor* t : inputs) {
      if (t->defined() && autodiff_detail::requires_grad(*t)) needs.mask |= uint64_t(1) << i;
      ++i;
    }
    if (needs.mask) {
      auto node = std::make_shared<autodiff_detail::FnNode<std::decay_t<Vjp>>>(name, std::move(vjp), needs);
      node->next.reserve(inputs.size());
      for (const Tensor* t : inputs) node->next.push_back(t->defined() ? autodiff_detail::edge_for(*t) : nullptr);
      autodiff_detail::set_grad_fn(out, std::move(node));
    }
  }
  if (autodiff_detail::any_forward_level_visible()) {
    std::function<Tensor(const Tangents&)> custom;
    if (batched_jvp) custom = [&](const Tangents& tg) { return batched_jvp(tg, out); };
    autodiff_detail::forward_tangents(
        inputs.data(), int(inputs.size()), out, [&](const Tangents& tg) { return jvp(tg, out); },
        batched_jvp ? TangentBatch::Custom : batch, batched_jvp ? &custom : nullptr);
  }
  return out;
}
template <class Vjp, class Jvp>
Tensor record(const char* name, std::initializer_list<const Tensor*> inputs, Tensor out, Vjp&& vjp, Jvp&& jvp,
              TangentBatch batch = TangentBatch::Loop,
              const std::function<Tensor(const Tangents&, const Tensor&)>& batched_jvp = {}) {
  return record(name, std::span<const Tensor* const>(inputs.begin(), inputs.size()), std::move(out),
                std::forward<Vjp>(vjp), std::forward<Jvp>(jvp), batch, batched_jvp);
}

// ---- public API -----------------------------------------------------------------------------

// Gradients of `outputs` (seeded by `grad_outputs`, ones for scalars when empty) w.r.t.
// `inputs`, without touching any .grad. Inputs the outputs do not depend on get zeros.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool retain_graph = false,
                         bool create_graph = false);

// Functional gradient of a scalar function. Differentiable itself (grad-of-grad, jvp-of-grad)
// whenever grad mode is on.
std::vector<Tensor> grad(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                         const std::vector<Tensor>& primals);

struct JvpOptions {
  // When false, the tangent computation records nothing on the reverse tape (its results are
  // plain tensors); the primal outputs still back-propagate as usual.
  bool differentiable_tangents = true;
};

struct JvpResult {
  std::vector<Tensor> outputs;
  std::vector<Tensor> tangents;
};

// Forward-mode product: runs f at `primals` with `tangents` (undefined = zero) attached at a
// new forward level and returns f's outputs and their tangents J·v.
JvpResult jvp(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f,
              const std::vector<Tensor>& primals, const std::vector<Tensor>& tangents, JvpOptions opts = {});

// Forward mode in K directions at once, sharing one primal pass: tangents[i] is
// [K, ...primals[i].shape] (undefined = zero in every direction) and each returned tangent is
// [K, ...output shape], row k equal to jvp with the k-th slices. Ops with a batch-aware rule
// (elementwise, matmul, views, cat, sum, row norms) take all K at once, so a Linear's tangents
// are one GEMM over K x N rows; every other rule runs once per direction. Composes with reverse
// mode and with outer jvp levels as jvp does.
JvpResult jvp_batched(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f,
                      const std::vector<Tensor>& primals, const std::vector<Tensor>& tangents, JvpOptions opts = {});

// The Jacobian of f at x by forward mode (one jvp_batched over the standard basis):
// shape [...f(x).shape, ...x.shape].
Tensor jacfwd(const std::function<Tensor(const Tensor&)>& f, const Tensor& x, JvpOptions opts = {});

struct VjpResult {
  std::vector<Tensor> outputs;
  // Maps cotangents of the outputs to cotangents of the primals; callable more than once.
  std::function<std::vector<Tensor>(const std::vector<Tensor>&)> pullback;
};
VjpResult vjp(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f,
              const std::vector<Tensor>& primals);

// The tangent attached to `t` at forward level `level` (undefined if none).
Tensor tangent_at(const Tensor& t, uint64_t level);

}  // namespace dualflow
