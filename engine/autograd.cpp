// The autodiff machinery: grad mode, forward levels and tangent bookkeeping, the reverse
// pass (topological order, gradient accumulation, graph release), and the functional
// transforms grad / jvp / vjp built on them.
#include "engine/autograd.h"

#include <algorithm>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "engine/ops.h"

namespace dualflow {

// ---- grad mode ----

namespace {
thread_local bool t_grad_enabled = true;

struct Level {
  uint64_t id;
  bool no_tape;
  int64_t batch;  // K directions per tangent ([K, ...shape]) at a jvp_batched level; 0 at a plain one
  std::vector<std::weak_ptr<AutogradMeta>> touched;  // metas holding a tangent at this level
};

struct ForwardState {
  std::vector<Level> levels;            // open levels, outermost first (ids increase)
  uint64_t visible_below = UINT64_MAX;  // only levels with id < this are visible
  uint64_t next_id = 1;
};
thread_local ForwardState t_fwd;

Level* find_level(uint64_t id) {
  for (auto& l : t_fwd.levels)
    if (l.id == id) return &l;
  return nullptr;
}

AutogradMeta& meta_of(const Tensor& t) {
  auto& m = t.impl()->autograd;
  if (!m) m = std::make_shared<AutogradMeta>();
  return *m;
}

void attach_tangent(const Tensor& t, uint64_t level, const Tensor& tangent) {
  AutogradMeta& m = meta_of(t);
  for (auto& [lv, tg] : m.tangents)
    if (lv == level) {
      tg = tangent;
      return;
    }
  m.tangents.emplace_back(level, tangent);
  if (Level* l = find_level(level)) l->touched.push_back(t.impl()->autograd);
}

// Holds its leaf's meta weakly: under create_graph the leaf's gradient carries a graph that
// ends in this node, and a strong reference back would make leaf -> grad -> graph -> leaf a
// cycle that is never freed. A leaf that is gone has no one left to read its gradient.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(const std::shared_ptr<AutogradMeta>& meta) : Node("accumulate_grad"), meta_(meta) {}
  std::vector<Tensor> apply(const Tensor&) override { return {}; }
  void accumulate(const Tensor& g) {
    std::shared_ptr<AutogradMeta> meta = meta_.lock();
    if (!meta) return;
    // Under create_graph the gradient keeps its graph (for grad-of-grad); otherwise it is plain.
    Tensor gc = GradMode::enabled() ? g : g.contiguous().detach();
    meta->grad = meta->grad.defined() ? add(meta->grad, gc) : gc;
  }

 private:
  std::weak_ptr<AutogradMeta> meta_;
};

}  // namespace

Node::~Node() {
  thread_local bool draining = false;
  thread_local std::vector<std::shared_ptr<Node>> pending;
  for (auto& n : next)
    if (n && n.use_count() == 1) pending.push_back(std::move(n));
  next.clear();
  if (draining) return;
  draining = true;
  while (!pending.empty()) {
    std::shared_ptr<Node> n = std::move(pending.back());
    pending.pop_back();
    n.reset();  // its destructor queues its own children instead of recursing
  }
  draining = false;
}

bool GradMode::enabled() { return t_grad_enabled; }
void GradMode::set_enabled(bool on) { t_grad_enabled = on; }

namespace autodiff_detail {

bool any_forward_level_visible() { return !t_fwd.levels.empty() && t_fwd.levels.front().id < t_fwd.visible_below; }

bool requires_grad(const Tensor& t) {
  const auto& m = t.impl()->autograd;
  return m && (m->requires_grad || m->grad_fn);
}

std::shared_ptr<Node> edge_for(const Tensor& t) {
  const auto& m = t.impl()->autograd;
  if (!m) return nullptr;
  if (m->grad_fn) return m->grad_fn;
  if (!m->requires_grad) return nullptr;
  if (auto acc = m->accumulator.lock()) return acc;
  auto acc = std::make_shared<AccumulateGrad>(m);
  m->accumulator = acc;
  return acc;
}

void set_grad_fn(const Tensor& out, std::shared_ptr<Node> fn) { meta_of(out).grad_fn = std::move(fn); }

namespace {

// A tangent of a rank-r input as [K, 1, ..., shape] at rank `rank` + 1, so that a broadcasting
// rule lines its K directions up in front of the output's dims.
Tensor align_batched(const Tensor& t, int rank) {
  if (!t.defined() || t.dim() >= rank + 1) return t;
  Shape s;
  s.push_back(t.shape()[0]);
  for (int i = t.dim() - 1; i < rank; ++i) s.push_back(1);
  for (int i = 1; i < t.dim(); ++i) s.push_back(t.shape()[i]);
  return t.reshape(s);
}

Tensor batched_tangent(const Tangents& tg, int64_t k, const Tensor& out,
                       const std::function<Tensor(const Tangents&)>& compute_tangent, TangentBatch mode,
                       const std::function<Tensor(const Tangents&)>* batched_rule) {
  const Shape want = out.shape().with_leading(k);
  if (mode == TangentBatch::Custom) {
    Tensor r = (*batched_rule)(tg);
    return !r.defined() || r.shape() == want ? r : r.expand(want);
  }
  if (mode == TangentBatch::Broadcast) {
    Tangents aligned(tg.size());
    for (size_t i = 0; i < tg.size(); ++i) aligned[i] = align_batched(tg[i], out.dim());
    Tensor r = compute_tangent(aligned);
    return !r.defined() || r.shape() == want ? r : r.expand(want);
  }
  // Loop: one rule call per direction.
  std::vector<Tensor> parts(static_cast<size_t>(k));
  bool any = false;
  for (int64_t j = 0; j < k; ++j) {
    Tangents slice(tg.size());
    for (size_t i = 0; i < tg.size(); ++i)
      if (tg[i].defined()) slice[i] = tg[i].select(0, j);
    parts[size_t(j)] = compute_tangent(slice);
    any |= parts[size_t(j)].defined();
  }
  if (!any) return Tensor();
  for (auto& p : parts)
    if (!p.defined()) p = zeros_like(out);
  return stack(parts, 0);
}

}  // namespace

void forward_tangents(const Tensor* const* inputs, int n, const Tensor& out,
                      const std::function<Tensor(const Tangents&)>& compute_tangent, TangentBatch mode,
                      const std::function<Tensor(const Tangents&)>* batched_rule) {
  // Snapshot the visible levels: computing a tangent must not see levels opened later.
  struct Visible {
    uint64_t id;
    bool no_tape;
    int64_t batch;
  };
  std::vector<Visible> levels;
  for (const auto& l : t_fwd.levels)
    if (l.id < t_fwd.visible_below) levels.push_back({l.id, l.no_tape, l.batch});
  for (auto [id, no_tape, batch] : levels) {
    Tangents tg(static_cast<size_t>(n));
    bool any = false;
    for (int i = 0; i < n; ++i) {
      if (!inputs[i]->defined()) continue;
      tg[size_t(i)] = tangent_at(*inputs[i], id);
      any |= tg[size_t(i)].defined();
    }
    if (!any) continue;
    uint64_t saved = t_fwd.visible_below;
    t_fwd.visible_below = id;
    Tensor result;
    try {
      std::optional<NoGradGuard> ng;
      if (no_tape) ng.emplace();
      result = batch > 0 ? batched_tangent(tg, batch, out, compute_tangent, mode, batched_rule) : compute_tangent(tg);
    } catch (...) {
      t_fwd.visible_below = saved;
      throw;
    }
    t_fwd.visible_below = saved;
    if (result.defined()) attach_tangent(out, id, result);
  }
}

}  // namespace autodiff_detail

Tensor tangent_at(const Tensor& t, uint64_t level) {
  const auto& m = t.impl()->autograd;
  if (!m) return Tensor();
  for (const auto& [lv, tg] : m->tangents)
    if (lv == level) return tg;
  return Tensor();
}

// ---- Tensor's autodiff members ----

bool Tensor::requires_grad() const { return defined() && autodiff_detail::requires_grad(*this); }

const Tensor& Tensor::set_requires_grad(bool on) const {
  DF_CHECK(defined(), "set_requires_grad: undefined tensor");
  if (on)
    DF_CHECK(is_floating(dtype()), "set_requires_grad: only floating tensors can require grad, got {}",
             dtype_name(dtype()));
  auto& m = impl_->autograd;
  if (!on && !m) return *this;
  DF_CHECK(
      !(m && m->grad_fn),
      "set_requires_grad: only leaf tensors can change requires_grad (this one is the output of '{}'); use detach()",
      m ? m->grad_fn->name() : "");
  meta_of(*this).requires_grad = on;
  return *this;
}

Tensor Tensor::grad() const {
  const auto& m = impl_->autograd;
  return m ? m->grad : Tensor();
}

void Tensor::zero_grad() const {
  if (impl_->autograd) impl_->autograd->grad = Tensor();
}

const std::shared_ptr<Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return impl_->autograd ? impl_->autograd->grad_fn : none;
}

bool Tensor::is_leaf() const { return !grad_fn(); }

// ---- the reverse pass ----

namespace {

struct BackwardTask {
  // Capture gradient arriving at these nodes instead of (or as well as) applying them.
  std::unordered_map<Node*, size_t> capture;  // node -> index in results
  bool accumulate_leaves = true;
};

void run_backward(const std::vector<std::pair<std::shared_ptr<Node>, Tensor>>& roots, bool retain_graph,
                  bool create_graph, const BackwardTask& task, std::vector<Tensor>* captured) {
  // 1. Collect nodes that lead to a target (a leaf accumulator in backward(), a capture in
  //    grad()), iteratively so deep graphs (solvers unrolled over many steps) are fine.
  std::unordered_map<Node*, bool> needed;
  std::vector<std::pair<Node*, size_t>> stack;
  auto is_target = [&](Node* n) {
    if (task.capture.count(n)) return true;
    return task.accumulate_leaves && dynamic_cast<AccumulateGrad*>(n) != nullptr;
  };
  for (const auto& [root, g] : roots) {
    if (!root || needed.count(root.get())) continue;
    stack.emplace_back(root.get(), 0);
    needed[root.get()] = is_target(root.get());
    while (!stack.empty()) {
      auto& [node, child] = stack.back();
      if (child < node->next.size()) {
        Node* c = node->next[child++].get();
        if (!c) continue;
        auto it = needed.find(c);
        if (it == needed.end()) {
          needed[c] = is_target(c);
          stack.emplace_back(c, 0);
        }
        continue;
      }
      // post-order: a node is needed if any child is
      bool any = needed[node];
      for (const auto& c : node->next)
        if (c && needed[c.get()]) any = true;
      needed[node] = any;
      stack.pop_back();
    }
  }
  // 2. In-degrees within the needed subgraph.
  std::unordered_map<Node*, int> indeg;
  for (const auto& [n, need] : needed) {
    if (!need) continue;
    for (const auto& c : n->next)
      if (c && needed[c.get()]) ++indeg[c.get()];
  }
  // 3. Kahn's order, accumulating incoming gradients per node.
  std::unordered_map<Node*, Tensor> buffer;
  std::unordered_map<Node*, std::shared_ptr<Node>> keep;  // owning refs while queued
  std::vector<Node*> ready;
  for (const auto& [root, g] : roots) {
    if (!root || !needed[root.get()]) continue;
    Tensor& b = buffer[root.get()];
    b = b.defined() ? add(b, g) : g;
    keep[root.get()] = root;
  }
  for (const auto& [root, g] : roots)
    if (root && needed[root.get()] && indeg[root.get()] == 0 &&
        std::find(ready.begin(), ready.end(), root.get()) == ready.end())
      ready.push_back(root.get());
  GradModeGuard mode(create_graph);
  while (!ready.empty()) {
    Node* node = ready.back();
    ready.pop_back();
    std::shared_ptr<Node> hold = keep[node];
    keep.erase(node);
    Tensor g = std::move(buffer[node]);
    buffer.erase(node);
    auto cap = task.capture.find(node);
    if (cap != task.capture.end() && g.defined()) {
      Tensor& slot = (*captured)[cap->second];
      slot = slot.defined() ? add(slot, g) : g;
    }
    std::vector<Tensor> grads;
    if (auto* acc = dynamic_cast<AccumulateGrad*>(node)) {
      if (task.accumulate_leaves && g.defined()) acc->accumulate(g);
    } else {
      bool children_needed = false;
      for (const auto& c : node->next)
        if (c && needed[c.get()]) children_needed = true;
      if (children_needed && g.defined()) grads = node->apply(g);
      if (!retain_graph) node->release();
    }
    for (size_t i = 0; i < node->next.size(); ++i) {
      Node* c = node->next[i].get();
      if (!c || !needed[c]) continue;
      if (i < grads.size() && grads[i].defined()) {
        Tensor& b = buffer[c];
        b = b.defined() ? add(b, grads[i]) : grads[i];
      }
      keep.emplace(c, node->next[i]);
      if (--indeg[c] == 0) ready.push_back(c);
    }
  }
}

Tensor seed_for(const char* op, const Tensor& out, const Tensor& seed) {
  if (seed.defined()) {
    DF_CHECK(seed.shape() == out.shape(), "{}: gradient seed has shape {}, expected the output's shape {}", op,
             seed.shape().str(), out.shape().str());
    return seed;
  }
  DF_CHECK(out.numel() == 1,
           "{}: an output of shape {} needs an explicit gradient seed (only one-element outputs get 1)", op,
           out.shape().str());
  return ones_like(out);
}

}  // namespace

void Tensor::backward(const Tensor& seed, bool retain_graph, bool create_graph) const {
  DF_CHECK(defined(), "backward: undefined tensor");
  DF_CHECK(
      requires_grad(),
      "backward: this tensor does not require grad (no input of its computation requires grad, or grad mode was off)");
  Tensor s = seed_for("backward", *this, seed);
  BackwardTask task;
  run_backward({{autodiff_detail::edge_for(*this), s}}, retain_graph || create_graph, create_graph, task, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs, bool retain_graph, bool create_graph) {
  DF_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(), "grad: got {} gradient seeds for {} outputs",
           grad_outputs.size(), outputs.size());
  std::vector<std::pair<std::shared_ptr<Node>, Tensor>> roots;
  for (size_t i = 0; i < outputs.size(); ++i) {
    DF_CHECK(outputs[i].defined(), "grad: output {} is undefined", i);
    if (!outputs[i].requires_grad()) continue;
    roots.emplace_back(autodiff_detail::edge_for(outputs[i]),
                       seed_for("grad", outputs[i], grad_outputs.empty() ? Tensor() : grad_outputs[i]));
  }
  BackwardTask task;
  task.accumulate_leaves = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    DF_CHECK(inputs[i].requires_grad(), "grad: input {} does not require grad", i);
    task.capture.emplace(autodiff_detail::edge_for(inputs[i]).get(), i);
  }
  std::vector<Tensor> result(inputs.size());
  run_backward(roots, retain_graph || create_graph, create_graph, task, &result);
  for (size_t i = 0; i < inputs.size(); ++i)
    if (!result[i].defined()) result[i] = zeros_like(inputs[i]);
  return result;
}

namespace {
// A fresh differentiation target standing for `x`: connected to x's graph when x requires
// grad, a new leaf otherwise; forward-mode tangents carry over in both cases.
Tensor differentiable_input(const Tensor& x) {
  if (x.requires_grad()) return alias(x);
  Tensor leaf = x.detach();
  if (const auto& m = x.impl()->autograd)
    for (const auto& [lv, tg] : m->tangents) attach_tangent(leaf, lv, tg);
  leaf.set_requires_grad(true);
  return leaf;
}
}  // namespace

std::vector<Tensor> grad(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                         const std::vector<Tensor>& primals) {
  std::vector<Tensor> xs;
  bool outer_wants_graph = false;
  for (const Tensor& p : primals) {
    outer_wants_graph |= p.requires_grad();
    xs.push_back(differentiable_input(p));
  }
  Tensor y;
  {
    GradModeGuard on(true);
    y = f(xs);
  }
  DF_CHECK(y.defined() && y.numel() == 1, "grad: the function must return a one-element tensor, got shape {}",
           y.defined() ? y.shape().str() : std::string("undefined"));
  if (!y.requires_grad()) {
    std::vector<Tensor> zs;
    for (const Tensor& x : xs) zs.push_back(zeros_like(x));
    return zs;
  }
  bool create = GradMode::enabled() && outer_wants_graph;
  return grad({y}, xs, {}, create, create);
}

namespace {

// jvp (batch 0) and jvp_batched (batch K: tangents [K, ...shape]) in one.
JvpResult jvp_at_level(const char* who, const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f,
                       const std::vector<Tensor>& primals, const std::vector<Tensor>& tangents, JvpOptions opts,
                       int64_t batch) {
  DF_CHECK(primals.size() == tangents.size(), "{}: got {} tangents for {} primals", who, tangents.size(),
           primals.size());
  for (size_t i = 0; i < primals.size(); ++i) {
    DF_CHECK(primals[i].defined(), "{}: primal {} is undefined", who, i);
    if (!tangents[i].defined()) continue;
    const Shape want = batch > 0 ? primals[i].shape().with_leading(batch) : primals[i].shape();
    DF_CHECK(tangents[i].shape() == want, "{}: tangent {} has shape {}, expected {} ({})", who, i,
             tangents[i].shape().str(), want.str(),
             batch > 0 ? "the directions in front of the primal's shape" : "the primal's shape");
    DF_CHECK(tangents[i].dtype() == primals[i].dtype(), "{}: tangent {} has dtype {}, expected {}", who, i,
             dtype_name(tangents[i].dtype()), dtype_name(primals[i].dtype()));
    DF_CHECK(tangents[i].device() == primals[i].device(), "{}: tangent {} is on {}, expected {}", who, i,
             tangents[i].device().str(), primals[i].device().str());
  }
  DF_CHECK(t_fwd.visible_below == UINT64_MAX, "{}: cannot open a forward level inside a JVP rule", who);
  const uint64_t id = t_fwd.next_id++;
  t_fwd.levels.push_back(Level{id, !opts.differentiable_tangents, batch, {}});
  auto close_level = [&]() {
    for (auto it = t_fwd.levels.begin(); it != t_fwd.levels.end(); ++it) {
      if (it->id != id) continue;
      for (auto& w : it->touched)
        if (auto m = w.lock())
          m->tangents.erase(
              std::remove_if(m->tangents.begin(), m->tangents.end(), [&](const auto& p) { return p.first == id; }),
              m->tangents.end());
      t_fwd.levels.erase(it);
      break;
    }
  };
  JvpResult res;
  try {
    std::vector<Tensor> duals;
    for (size_t i = 0; i < primals.size(); ++i) {
      Tensor d = alias(primals[i]);
      if (tangents[i].defined()) attach_tangent(d, id, tangents[i]);
      duals.push_back(d);
    }
    std::vector<Tensor> outs = f(duals);
    for (const Tensor& o : outs) {
      DF_CHECK(o.defined(), "{}: the function returned an undefined tensor", who);
      Tensor tg = tangent_at(o, id);
      // The primal output without this level's tangent: an alias computed with this level hidden.
      uint64_t saved = t_fwd.visible_below;
      t_fwd.visible_below = id;
      Tensor primal;
      try {
        primal = alias(o);
      } catch (...) {
        t_fwd.visible_below = saved;
        throw;
      }
      t_fwd.visible_below = saved;
      res.outputs.push_back(primal);
      if (!tg.defined()) tg = batch > 0 ? zeros(o.shape().with_leading(batch), o.options()) : zeros_like(o);
      res.tangents.push_back(tg);
    }
  } catch (...) {
    close_level();
    throw;
  }
  close_level();
  return res;
}

}  // namespace

JvpResult jvp(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f,
              const std::vector<Tensor>& primals, const std::vector<Tensor>& tangents, JvpOptions opts) {
  return jvp_at_level("jvp", f, primals, tangents, opts, 0);
}

JvpResult jvp_batched(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f,
                      const std::vector<Tensor>& primals, const std::vector<Tensor>& tangents, JvpOptions opts) {
  int64_t k = -1;
  for (size_t i = 0; i < tangents.size(); ++i) {
    if (!tangents[i].defined()) continue;
    DF_CHECK(tangents[i].dim() >= 1, "jvp_batched: tangent {} is a scalar; expected [K, ...the primal's shape]", i);
    DF_CHECK(k < 0 || tangents[i].shape()[0] == k,
             "jvp_batched: tangent {} has {} directions, an earlier one {}; all must have the same K", i,
             tangents[i].shape()[0], k);
    k = tangents[i].shape()[0];
  }
  DF_CHECK(k >= 1, "jvp_batched: expected at least one tangent with K >= 1 directions, got {}",
           k < 0 ? std::string("none") : std::to_string(k));
  return jvp_at_level("jvp_batched", f, primals, tangents, opts, k);
}

Tensor jacfwd(const std::function<Tensor(const Tensor&)>& f, const Tensor& x, JvpOptions opts) {
  DF_CHECK(x.defined(), "jacfwd: x is undefined");
  const int64_t d = x.numel();
  DF_CHECK(d >= 1, "jacfwd: x has no elements (shape {})", x.shape().str());
  Tensor basis = eye(d, x.options()).reshape(x.shape().with_leading(d));
  JvpResult r =
      jvp_batched([&](const std::vector<Tensor>& p) { return std::vector<Tensor>{f(p[0])}; }, {x}, {basis}, opts);
  // Row k of the tangents is column k of the Jacobian: move the directions to the back.
  const Tensor& cols = r.tangents[0];
  const int64_t m = r.outputs[0].numel();
  Shape out = r.outputs[0].shape();
  for (int i = 0; i < x.dim(); ++i) out.push_back(x.shape()[i]);
  return cols.reshape(Shape{d, m}).transpose(0, 1).contiguous().reshape(out);
}

VjpResult vjp(const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& f,
              const std::vector<Tensor>& primals) {
  std::vector<Tensor> xs;
  for (const Tensor& p : primals) xs.push_back(differentiable_input(p));
  std::vector<Tensor> outs;
  {
    GradModeGuard on(true);
    outs = f(xs);
  }
  VjpResult r;
  r.outputs = outs;
  r.pullback = [outs, xs](const std::vector<Tensor>& cotangents) {
    DF_CHECK(cotangents.size() == outs.size(), "vjp: pullback got {} cotangents for {} outputs", cotangents.size(),
             outs.size());
    std::vector<Tensor> os, cs;
    for (size_t i = 0; i < outs.size(); ++i)
      if (outs[i].requires_grad() && cotangents[i].defined()) {
        os.push_back(outs[i]);
        cs.push_back(cotangents[i]);
      }
    if (os.empty()) {
      std::vector<Tensor> zs;
      for (const Tensor& x : xs) zs.push_back(zeros_like(x));
      return zs;
    }
    return grad(os, xs, cs, /*retain_graph=*/true, /*create_graph=*/GradMode::enabled());
  };
  return r;
}

}  // namespace dualflow
