// matmul with NumPy semantics: 1-D operands are promoted and squeezed back, batch dims
// broadcast. Strided (transposed) operands go to the GEMM as transpose flags, not copies;
// a 2-D right operand folds the left operand's batch into M for one large GEMM. linear is
// x W^T + b with the bias added by the GEMM as it stores the product, and linear_activation
// applies the activation there too.
#include <atomic>

#include "engine/gemm_recorder.h"
#include "engine/ops/op_support.h"
#include "engine/random.h"

namespace dualflow {
using namespace detail;

namespace {
std::atomic<bool> g_allow_tf32{false};

// How a 2-D matrix view maps onto a row-major GEMM operand; false if it needs a copy.
bool gemm_operand(const Tensor& m, int64_t rows, int64_t cols, bool* trans, int64_t* ld) {
  int64_t s0 = m.strides()[m.dim() - 2], s1 = m.strides()[m.dim() - 1];
  if ((s1 == 1 || cols == 1) && s0 >= std::max<int64_t>(cols, 1)) {
    *trans = false;
    *ld = std::max<int64_t>(s0, 1);
    return true;
  }
  if ((s0 == 1 || rows == 1) && s1 >= std::max<int64_t>(rows, 1)) {
    *trans = true;
    *ld = std::max<int64_t>(s1, 1);
    return true;
  }
  if (rows == 1 && cols == 1) {
    *trans = false;
    *ld = 1;
    return true;
  }
  return false;
}

// activation(x) for a GEMM activation (gemm_activation_supported), as its own op.
Tensor apply_activation(UnaryOp op, const Tensor& x) {
  switch (op) {
    case UnaryOp::Relu: return relu(x);
    case UnaryOp::Tanh: return tanh(x);
    case UnaryOp::Sigmoid: return sigmoid(x);
    case UnaryOp::Silu: return silu(x);
    case UnaryOp::GeluTanh: return gelu(x, GeluApprox::Tanh);
    case UnaryOp::GeluErf: return gelu(x, GeluApprox::Erf);
    default: fail("linear_activation: unary op {} is not an activation", int(op));
  }
}

// out[b] = a[b] @ w[b] (+ out[b] when beta = 1, + the row `bias` when given, with beta = 0) for
// 3-D a [B, M, K], w [B, K, N] whose batch stride may be 0, and a contiguous bias [N]; then the
// activation, where given, with its derivative into `derivative` (out's shape) where defined;
// or, where `multiplier` is given (contiguous [B or 1, M, N]; the backend's gemm_multipliers),
// out[b] times multiplier[b] (or multiplier[0] for every b).
void gemm_batched(const Tensor& a, const Tensor& b, const Tensor& out, double beta = 0.0, const Tensor& bias = Tensor(),
                  std::optional<UnaryOp> activation = {}, const Tensor& derivative = Tensor(),
                  const Tensor& multiplier = Tensor()) {
  const int64_t batch = out.shape()[0], m = out.shape()[1], n = out.shape()[2], k = a.shape()[2];
  Tensor aa = a, bb = b;
  GemmArgs g;
  g.dtype = a.dtype();
  g.m = m;
  g.n = n;
  g.k = k;
  if (!gemm_operand(aa, m, k, &g.trans_a, &g.lda)) {
    aa = a.contiguous();
    gemm_operand(aa, m, k, &g.trans_a, &g.lda);
  }
  if (!gemm_operand(bb, k, n, &g.trans_b, &g.ldb)) {
    bb = b.contiguous();
    gemm_operand(bb, k, n, &g.trans_b, &g.ldb);
  }
  g.a = aa.raw_data();
  g.stride_a = batch > 1 ? aa.strides()[0] : 0;
  g.b = bb.raw_data();
  g.stride_b = batch > 1 ? bb.strides()[0] : 0;
  g.c = out.raw_data();
  g.ldc = std::max<int64_t>(n, 1);
  g.stride_c = m * n;
  g.batch = batch;
  g.beta = beta;
  g.bias = bias.defined() ? bias.raw_data() : nullptr;
  g.activation = activation;
  g.derivative = derivative.defined() ? derivative.raw_data() : nullptr;
  g.multiplier = multiplier.defined() ? multiplier.raw_data() : nullptr;
  g.stride_multiplier = multiplier.defined() && multiplier.shape()[0] > 1 ? m * n : 0;
  g.allow_tf32 = g_allow_tf32.load(std::memory_order_relaxed);
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (bias.defined()) copy_(out, bias.reshape(Shape{1, 1, n}).expand(out.shape()));
    else if (beta == 0.0) fill_(out, 0.0);
    if (activation) {
      if (derivative.defined()) copy_(derivative, unary_backward(*activation, ones_like(out), out));
      copy_(out, apply_activation(*activation, out));
    }
    if (multiplier.defined()) copy_(out, out * multiplier);
    return;
  }
  GemmRecorder::note(GemmShape{.dtype = g.dtype,
                               .device = a.device(),
                               .trans_a = g.trans_a,
                               .trans_b = g.trans_b,
                               .shared_a = batch > 1 && g.stride_a == 0,
                               .shared_b = batch > 1 && g.stride_b == 0,
                               .accumulate = beta != 0.0,
                               .bias = bias.defined(),
                               .batch = batch,
                               .m = m,
                               .n = n,
                               .k = k});
  be(a).gemm(dev_index(a), g);
}

Tensor matmul_nd(const Tensor& a, const Tensor& b) {
  const char* name = "matmul";
  const int64_t m = a.shape()[a.dim() - 2], k = a.shape()[a.dim() - 1];
  const int64_t k2 = b.shape()[b.dim() - 2], n = b.shape()[b.dim() - 1];
  DF_CHECK(k == k2, "matmul: inner dims differ: {} x {}", a.shape().str(), b.shape().str());
  Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(name, ba, bb);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, a.options());
  const int64_t nb = batch.numel();
  NoGradGuard ng;
  Tensor ad = a.detach(), bd = b.detach();
  if (b.dim() == 2 && ba.numel() >= 1) {
    // Fold a's batch into rows when a's rows are uniformly strided.
    Tensor a2 = ad.dim() == 2
                    ? ad
                    : (ad.is_contiguous() ? ad.reshape(Shape{nb * m, k}) : ad.contiguous().reshape(Shape{nb * m, k}));
    gemm_batched(a2.unsqueeze(0), bd.unsqueeze(0), out.reshape(Shape{1, nb * m, n}));
    return out;
  }
  auto expanded = [&](const Tensor& t, int64_t rows, int64_t cols) {
    Shape full = batch;
    full.push_back(rows);
    full.push_back(cols);
    return t.expand(full);
  };
  const Tensor ea = expanded(ad, m, k), eb = expanded(bd, k, n);
  // The batch dims from `first` on collapse into one stride when they are all broadcast
  // (stride 0) or nested like a contiguous batch, which a transposed view of a contiguous
  // batch also is; gemm_batched then reads the operand in place as [batch, rows, cols], a
  // transposed matrix with a transpose flag. The longest such tail shared by both operands is
  // one gemm_batched; the dims before it are looped over, so views such as attention's heads
  // ([N, heads] with strides L * D and head_dim) are read in place rather than copied.
  const int nbatch = int(batch.size());
  auto collapses_from = [&](const Tensor& e, int first, int64_t* stride) {
    int64_t expected = -1;
    *stride = 0;
    for (int i = nbatch - 1; i >= first; --i) {
      if (batch[size_t(i)] == 1) continue;
      if (expected < 0) *stride = e.strides()[size_t(i)];
      else if (e.strides()[size_t(i)] != expected) return false;
      expected = e.strides()[size_t(i)] * batch[size_t(i)];
    }
    return true;
  };
  int first = 0;
  int64_t stride_a = 0, stride_b = 0;
  while (!(collapses_from(ea, first, &stride_a) && collapses_from(eb, first, &stride_b))) ++first;
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < nbatch; ++i) (i < first ? outer : inner) *= batch[size_t(i)];
  const Tensor out3 = out.reshape(Shape{outer, inner, m, n});
  for (int64_t o = 0; o < outer; ++o) {
    // The offset of outer batch entry o in each operand, from its batch index.
    int64_t offset_a = ea.offset(), offset_b = eb.offset(), rest = o;
    for (int i = first - 1; i >= 0; --i) {
      const int64_t idx = rest % batch[size_t(i)];
      rest /= batch[size_t(i)];
      offset_a += idx * ea.strides()[size_t(i)];
      offset_b += idx * eb.strides()[size_t(i)];
    }
    gemm_batched(make_view(ea, Shape{inner, m, k},
                           Dims{stride_a, ea.strides()[size_t(nbatch)], ea.strides()[size_t(nbatch + 1)]}, offset_a),
                 make_view(eb, Shape{inner, k, n},
                           Dims{stride_b, eb.strides()[size_t(nbatch)], eb.strides()[size_t(nbatch + 1)]}, offset_b),
                 out3.select(0, o));
  }
  return out;
}

}  // namespace

std::function<void()> gemm_runner(const GemmShape& shape) {
  DF_CHECK(shape.batch >= 1 && shape.m >= 0 && shape.n >= 0 && shape.k >= 0, "gemm_runner: bad shape {}", shape.str());
  Generator gen(7);
  const TensorOptions opts(shape.dtype, shape.device);
  // An operand stored [rows, cols] (or [cols, rows] and transposed, so the GEMM reads it with a
  // transpose flag), once per batch entry or once for all of them (batch stride 0).
  auto operand = [&](int64_t rows, int64_t cols, bool trans, bool shared) {
    const int64_t stored = shared ? 1 : shape.batch;
    Tensor t = trans ? randn({stored, cols, rows}, gen, opts).transpose(1, 2) : randn({stored, rows, cols}, gen, opts);
    return shared ? t.expand(Shape{shape.batch, rows, cols}) : t;
  };
  NoGradGuard ng;
  Tensor a = operand(shape.m, shape.k, shape.trans_a, shape.shared_a);
  Tensor b = operand(shape.k, shape.n, shape.trans_b, shape.shared_b);
  Tensor c = zeros({shape.batch, shape.m, shape.n}, opts);
  const double beta = shape.accumulate ? 1.0 : 0.0;
  Tensor bias = shape.bias ? randn({shape.n}, gen, opts) : Tensor();
  return [a, b, c, beta, bias] { gemm_batched(a, b, c, beta, bias); };
}

void set_allow_tf32(bool on) { g_allow_tf32 = on; }
bool allow_tf32() { return g_allow_tf32; }

Tensor matmul(const Tensor& a, const Tensor& b) {
  const char* name = "matmul";
  check_defined(name, a, "first operand");
  check_defined(name, b, "second operand");
  check_same_device(name, a, b);
  check_same_dtype(name, a, b);
  check_floating(name, a);
  DF_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: operands must have at least 1 dim, got {} and {}", a.shape().str(),
           b.shape().str());
  if (a.dim() == 1 && b.dim() == 1) {
    DF_CHECK(a.shape()[0] == b.shape()[0], "matmul: inner dims differ: {} x {}", a.shape().str(), b.shape().str());
    return matmul(a.unsqueeze(0), b.unsqueeze(1)).reshape(Shape{});
  }
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(1)).squeeze(-1);
  Tensor out = matmul_nd(a, b);
  return record(
      name, {&a, &b}, out,
      [a, b](const Tensor& g, NeedsGrad n) -> Grads {
        Grads r(2);
        if (n[0]) r[0] = sum_to(matmul(g, b.transpose(-1, -2)), a.shape());
        if (n[1]) {
          if (b.dim() == 2 && a.dim() > 2) {
            // A matrix shared by every batch entry (a Linear's weight): its gradient
            // is one GEMM over the folded batch, a [B*M, K]^T g [B*M, N], instead of
            // B GEMMs of inner size M into a [B, K, N] buffer summed afterwards.
            int64_t rows = 1;
            for (int d = 0; d + 1 < a.dim(); ++d) rows *= a.shape()[d];
            r[1] = matmul(a.reshape(Shape{rows, a.shape()[a.dim() - 1]}).transpose(-1, -2),
                          g.reshape(Shape{rows, g.shape()[g.dim() - 1]}));
          } else {
            r[1] = sum_to(matmul(a.transpose(-1, -2), g), b.shape());
          }
        }
        return r;
      },
      [a, b](const Tangents& t, const Tensor& o) {
        Tensor r = t[0].defined() ? matmul(t[0], b) : Tensor();
        if (t[1].defined()) r = add_opt(r, matmul(a, t[1]));
        return fit(r, o.shape());
      },
      // Both operands are matrices or batches of them here, so K directions lined up in front of
      // the batch dims broadcast: a Linear's K tangents are one GEMM over K x N rows.
      TangentBatch::Broadcast);
}

namespace {

// A Linear's shapes, checked: x [..., in], weight [out, in], bias [out] or undefined.
struct LinearShape {
  int64_t rows = 1, in_f = 0, out_f = 0;
  Shape out_shape;
};

LinearShape check_linear(const char* name, const Tensor& x, const Tensor& weight, const Tensor& bias) {
  check_defined(name, x);
  check_defined(name, weight, "weight");
  DF_CHECK(weight.dim() == 2, "{}: weight must be [out, in], got {}", name, weight.shape().str());
  LinearShape s;
  s.out_f = weight.shape()[0];
  s.in_f = weight.shape()[1];
  DF_CHECK(x.dim() >= 1 && x.shape()[x.dim() - 1] == s.in_f, "{}: input expected [..., {}], got {}", name, s.in_f,
           x.shape().str());
  check_same_device(name, x, weight);
  check_same_dtype(name, x, weight);
  check_floating(name, x);
  if (bias.defined()) {
    check_same_device(name, x, bias);
    check_same_dtype(name, x, bias);
    DF_CHECK(bias.dim() == 1 && bias.shape()[0] == s.out_f, "{}: bias must be [{}], got {}", name, s.out_f,
             bias.shape().str());
  }
  s.out_shape = x.shape();
  s.out_shape[s.out_shape.size() - 1] = s.out_f;
  for (int d = 0; d + 1 < x.dim(); ++d) s.rows *= x.shape()[d];
  return s;
}

// x W^T + b's rules in engine ops, shared by linear and linear_activation (which applies them
// to the activation's input gradient and to its tangent before the activation's derivative).
struct LinearRule {
  Tensor x, weight, bias;
  LinearShape shape;

  Grads vjp(const Tensor& g_in, NeedsGrad n) const {
    // A strided incoming gradient (one that arrives through a permuted view) is copied once
    // here rather than by each of the three products and the sum below.
    const Tensor g = g_in.contiguous();
    Grads r(3);
    if (n[0]) r[0] = matmul(g, weight);
    if (n[1]) r[1] = matmul(g.reshape(Shape{shape.rows, shape.out_f}).t(), x.reshape(Shape{shape.rows, shape.in_f}));
    if (n[2]) r[2] = sum_to(g, bias.shape());
    return r;
  }
  Tensor jvp(const Tangents& t, const Shape& out_shape) const {
    Tensor r = t[0].defined() ? matmul(t[0], weight.t()) : Tensor();
    if (t[1].defined()) r = add_opt(r, matmul(x, t[1].transpose(-1, -2)));
    if (t[2].defined()) r = add_opt(r, t[2]);
    return r.defined() ? fit(r, out_shape) : r;
  }
  Tensor output() const { return linear(x, weight, bias); }

  // A tangent t of x through the product and then times `factor` (the output's shape): the
  // plain jvp's t W^T * f'(x W^T + b) in one GEMM that multiplies as it stores. t may carry K
  // directions in front ([K, ...x's shape], takes_whole); each is one entry of a batched GEMM
  // sharing W and the factor. The bits of matmul(t, W^T) * factor where the product takes the same kernel.
  bool takes_whole(const Tensor& t) const {
    const int extra = t.dim() - x.dim();
    if (t.dtype() != x.dtype() || (extra != 0 && extra != 1)) return false;
    for (int d = 0; d < x.dim(); ++d)
      if (t.shape()[size_t(d + extra)] != x.shape()[size_t(d)]) return false;
    return true;
  }
  Tensor jvp_times(const Tensor& t, const Tensor& factor) const {
    NoGradGuard ng;
    const int64_t entries = t.numel() / std::max<int64_t>(shape.rows * shape.in_f, 1);
    Shape out_shape = t.shape();
    out_shape[out_shape.size() - 1] = shape.out_f;
    Tensor out = Tensor::empty(out_shape, t.options());
    gemm_batched(t.detach().contiguous().reshape(Shape{entries, shape.rows, shape.in_f}),
                 weight.detach().t().unsqueeze(0).expand(Shape{entries, shape.in_f, shape.out_f}),
                 out.reshape(Shape{entries, shape.rows, shape.out_f}), 0.0, Tensor(), {}, Tensor(),
                 factor.detach().contiguous().reshape(Shape{1, shape.rows, shape.out_f}));
    return out;
  }
};

// The product into `out`, the bias and the activation (with its derivative into `derivative`,
// where defined) applied by the GEMM as it stores the output.
void linear_product(const Tensor& x, const Tensor& weight, const Tensor& bias, const LinearShape& s, const Tensor& out,
                    std::optional<UnaryOp> activation = {}, const Tensor& derivative = Tensor()) {
  NoGradGuard ng;
  gemm_batched(x.detach().reshape(Shape{1, s.rows, s.in_f}), weight.detach().t().unsqueeze(0),
               out.reshape(Shape{1, s.rows, s.out_f}), 0.0, bias.defined() ? bias.detach().contiguous() : Tensor(),
               activation, derivative.defined() ? derivative.reshape(Shape{1, s.rows, s.out_f}) : Tensor());
}

// The rules of linear_activation and linear_parts: those of x W^T + b and the activation for
// x = cat(parts, -1) (x itself for one part), with the input gradient split back into the parts
// and the tangent summed over the parts that have one. The gradient and the tangent pass
// through f'(x W^T + b): the derivative the GEMM saved, or, inside a differentiation of the
// rules themselves, f' of the product recomputed in engine ops so that its own derivatives exist.
struct PartsRule {
  std::vector<Tensor> parts;
  Tensor x;  // cat(parts, -1), detached (what the plain rules read), or the one part
  Tensor weight, bias;
  LinearShape shape;
  std::vector<int64_t> offsets;
  std::optional<UnaryOp> activation;
  Tensor derivative;  // f' of the product, saved by the GEMM (with an activation)

  // Inside a differentiation of the rules, x is rebuilt from the parts so that it depends on them.
  LinearRule whole() const {
    return {parts.size() == 1 ? parts[0] : rule_is_plain() ? x : cat(parts, -1), weight, bias, shape};
  }
  // The weight's columns for part i.
  Tensor part_weight(size_t i) const { return parts.size() == 1 ? weight : weight.narrow(1, offsets[i], width(i)); }
  Tensor times_derivative(const Tensor& g, const LinearRule& rule) const {
    if (!activation) return g;
    return rule_is_plain() ? g * derivative : unary_backward(*activation, g, rule.output());
  }
  int64_t width(size_t i) const { return parts[i].shape()[parts[i].dim() - 1]; }

  Grads vjp(const Tensor& g, NeedsGrad n) const {
    const size_t count = parts.size();
    NeedsGrad whole_needs;
    for (size_t i = 0; i < count; ++i)
      if (n[int(i)]) whole_needs.mask |= 1u;
    if (n[int(count)]) whole_needs.mask |= 2u;
    if (n[int(count + 1)]) whole_needs.mask |= 4u;
    const LinearRule rule = whole();
    const Grads w = rule.vjp(times_derivative(g, rule), whole_needs);
    Grads r(count + 2);
    for (size_t i = 0; i < count; ++i)
      if (n[int(i)]) r[i] = count == 1 ? w[0] : w[0].narrow(-1, offsets[i], width(i));
    r[count] = w[1];
    r[count + 1] = w[2];
    return r;
  }

  Tensor jvp(const Tangents& t, const Shape& out_shape) const {
    const size_t count = parts.size();
    size_t with_tangent = 0, last = 0;
    for (size_t i = 0; i < count; ++i)
      if (t[i].defined()) ++with_tangent, last = i;
    const Tensor& t_weight = t[count];
    const Tensor& t_bias = t[count + 1];
    // One part's tangent alone (x's, for linear_activation), nothing differentiating the rule:
    // its GEMM over its own columns of the weight multiplies by the saved derivative as it
    // stores, instead of a product followed by a pass over it.
    if (with_tangent == 1 && !t_weight.defined() && !t_bias.defined() && rule_is_plain() &&
        (!activation || (derivative.defined() && be(x).gemm_multipliers))) {
      LinearShape s = shape;
      s.in_f = width(last);
      const LinearRule part{parts[last].detach(), part_weight(last), Tensor(), s};
      if (part.takes_whole(t[last]))
        return activation ? part.jvp_times(t[last], derivative) : part.jvp({t[last], Tensor(), Tensor()}, out_shape);
    }
    const LinearRule rule = whole();
    Tensor t_pre;
    if (with_tangent == count) {
      // Every part moves: one product over the concatenated tangents.
      std::vector<Tensor> ts(t.begin(), t.begin() + long(count));
      t_pre = rule.jvp({count == 1 ? ts[0] : cat(ts, -1), t_weight, t_bias}, out_shape);
    } else {
      // Only the parts that move: each multiplies its own columns of the weight, so the columns of
      // parts without a tangent (zeros after a cat) cost nothing.
      for (size_t i = 0; i < count; ++i)
        if (t[i].defined()) t_pre = add_opt(t_pre, matmul(t[i], part_weight(i).t()));
      const Tensor rest = rule.jvp({Tensor(), t_weight, t_bias}, out_shape);
      if (rest.defined()) t_pre = add_opt(t_pre, rest);
      if (t_pre.defined()) t_pre = fit(t_pre, out_shape);
    }
    return t_pre.defined() ? times_derivative(t_pre, rule) : t_pre;
  }
};

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  const char* name = "linear";
  const LinearShape s = check_linear(name, x, weight, bias);
  if (!bias.defined()) return matmul(x, weight.t());
  Tensor out = Tensor::empty(s.out_shape, x.options());
  linear_product(x, weight, bias, s, out);
  const LinearRule rule{x, weight, bias, s};
  return record(
      name, {&x, &weight, &bias}, out, [rule](const Tensor& g, NeedsGrad n) -> Grads { return rule.vjp(g, n); },
      [rule](const Tangents& t, const Tensor& o) { return rule.jvp(t, o.shape()); },
      // Products with the weight and sums with the bias broadcast over K directions in front.
      TangentBatch::Broadcast);
}

Tensor linear_activation(const Tensor& x, const Tensor& weight, const Tensor& bias, UnaryOp activation) {
  const char* name = "linear_activation";
  const LinearShape s = check_linear(name, x, weight, bias);
  DF_CHECK(gemm_activation_supported(activation),
           "{}: the activation must be relu, tanh, sigmoid, silu or gelu (tanh or erf), got unary op {}", name,
           int(activation));
  // The derivative is kept only where a rule may need it (when something is differentiated).
  // 16-bit floats run the two ops then: their backward kernel multiplies by f' in f32, which a
  // derivative stored in 16 bits would round first.
  const bool traced = autodiff_detail::may_record({&x, &weight, &bias});
  const bool wide = x.dtype() == DType::f32 || x.dtype() == DType::f64;
  if (!be(x).gemm_activations || (traced && !wide)) return apply_activation(activation, linear(x, weight, bias));
  Tensor out = Tensor::empty(s.out_shape, x.options());
  Tensor derivative = traced ? Tensor::empty(s.out_shape, x.options()) : Tensor();
  linear_product(x, weight, bias, s, out, activation, derivative);
  const PartsRule rule{{x}, x, weight, bias, s, {0}, activation, derivative};
  return record(
      name, {&x, &weight, &bias}, out, [rule](const Tensor& g, NeedsGrad n) -> Grads { return rule.vjp(g, n); },
      [rule](const Tangents& t, const Tensor& o) { return rule.jvp(t, o.shape()); }, TangentBatch::Broadcast);
}

Tensor linear_parts(const std::vector<Tensor>& parts, const Tensor& weight, const Tensor& bias,
                    std::optional<UnaryOp> activation) {
  const char* name = "linear_parts";
  DF_CHECK(!parts.empty(), "{}: expected at least one input part, got none", name);
  for (size_t i = 0; i < parts.size(); ++i) {
    check_defined(name, parts[i], "input part");
    bool alike = parts[i].dim() == parts[0].dim() && parts[i].dim() >= 1;
    for (int d = 0; alike && d + 1 < parts[0].dim(); ++d) alike = parts[i].shape()[d] == parts[0].shape()[d];
    DF_CHECK(alike, "{}: every input part expected [..., features] with the leading dims of part 0 {}, part {} is {}",
             name, parts[0].shape().str(), i, parts[i].shape().str());
  }
  DF_CHECK(!activation || gemm_activation_supported(*activation),
           "{}: the activation must be relu, tanh, sigmoid, silu or gelu (tanh or erf), got unary op {}", name,
           activation ? int(*activation) : -1);
  auto composed = [&](const Tensor& x) {
    return activation ? linear_activation(x, weight, bias, *activation) : linear(x, weight, bias);
  };
  if (parts.size() == 1) return composed(parts[0]);
  std::vector<const Tensor*> inputs;
  for (const Tensor& p : parts) inputs.push_back(&p);
  inputs.push_back(&weight);
  inputs.push_back(&bias);
  const bool traced = autodiff_detail::any_autodiff_state(std::span<const Tensor* const>(inputs)) &&
                      (GradMode::enabled() || autodiff_detail::any_forward_level_visible());
  const bool wide = parts[0].dtype() == DType::f32 || parts[0].dtype() == DType::f64;
  // Where linear_activation would run two ops, and with more parts than a node records, the
  // concatenation and the layer are ops of their own.
  if (inputs.size() > kMaxOpInputs || (activation && traced && (!be(parts[0]).gemm_activations || !wide)))
    return composed(cat(parts, -1));
  Tensor x;
  {
    NoGradGuard ng;
    std::vector<Tensor> detached;
    for (const Tensor& p : parts) detached.push_back(p.detach());
    x = cat(detached, -1);
  }
  const LinearShape s = check_linear(name, x, weight, bias);
  if (!traced) return composed(x);
  Tensor out = Tensor::empty(s.out_shape, x.options());
  Tensor derivative = activation ? Tensor::empty(s.out_shape, x.options()) : Tensor();
  linear_product(x, weight, bias, s, out, activation, derivative);
  PartsRule rule{parts, x, weight, bias, s, {}, activation, derivative};
  int64_t at = 0;
  for (const Tensor& p : parts) {
    rule.offsets.push_back(at);
    at += p.shape()[p.dim() - 1];
  }
  return record(
      name, std::span<const Tensor* const>(inputs), out,
      [rule](const Tensor& g, NeedsGrad n) -> Grads { return rule.vjp(g, n); },
      [rule](const Tangents& t, const Tensor& o) { return rule.jvp(t, o.shape()); }, TangentBatch::Broadcast);
}

}  // namespace dualflow
