// Elementwise ops: unary math and activations (forward kernel + fused g*f'(x) backward, with
// f'' written in engine ops for higher orders), broadcasting binary arithmetic, where,
// comparisons and in-place fills/copies. Rules follow PyTorch's derivatives.yaml.
#include <cmath>

#include "engine/ops/op_support.h"

namespace dualflow {
using namespace detail;

namespace detail {
// Expands a tangent/gradient to `shape` when its operand was broadcast.
Tensor fit(const Tensor& t, const Shape& shape) {
  if (!t.defined() || t.shape() == shape) return t;
  if (t.dim() == shape.size() + 1) {
    const Shape batched = shape.with_leading(t.shape()[0]);
    return t.shape() == batched ? t : t.expand(batched);
  }
  return t.expand(shape);
}

std::vector<int64_t> dims_after_batch(const std::vector<int>& dims) {
  std::vector<int64_t> r;
  for (int d : dims) r.push_back(int64_t(d) + 1);
  return r;
}
}  // namespace detail

namespace {

Tensor unary_raw(const char* name, UnaryOp op, const Tensor& x, double a, double b) {
  check_defined(name, x);
  if (!unary_allows_integers(op)) check_floating(name, x);
  DF_CHECK(x.dtype() != DType::b8 || op == UnaryOp::LogicalNot, "{}: not defined for bool tensors", name);
  Tensor out = Tensor::empty(x.shape(), x.options());
  if (out.numel() == 0) return out;
  ElemLayout l = make_layout(name, out, {&x});
  be(x).unary(dev_index(x), op, x.dtype(), x.raw_data(), out.raw_data(), l, a, b);
  return out;
}

// f''(x) as engine ops (undefined = identically zero), for derivatives of order >= 2.
Tensor second_derivative(UnaryOp op, const Tensor& x, double a, double) {
  switch (op) {
    case UnaryOp::Exp:
    case UnaryOp::Expm1: return exp(x);
    case UnaryOp::Log: return neg(reciprocal(square(x)));
    case UnaryOp::Log1p: return neg(reciprocal(square(x + 1.0)));
    case UnaryOp::Sqrt: return pow(x, -1.5) * -0.25;
    case UnaryOp::Rsqrt: return pow(x, -2.5) * 0.75;
    case UnaryOp::Sin: return neg(sin(x));
    case UnaryOp::Cos: return neg(cos(x));
    case UnaryOp::Tanh: {
      Tensor t = tanh(x);
      return t * (1.0 - square(t)) * -2.0;
    }
    case UnaryOp::Sigmoid:
    case UnaryOp::Softplus: {
      Tensor s = sigmoid(x);
      Tensor d = s * (1.0 - s);
      return op == UnaryOp::Sigmoid ? d * (1.0 - s * 2.0) : d;
    }
    case UnaryOp::Silu: {
      Tensor s = sigmoid(x);
      return s * (1.0 - s) * (2.0 + x * (1.0 - s * 2.0));
    }
    case UnaryOp::GeluErf: {
      Tensor pdf = exp(square(x) * -0.5) * 0.3989422804014327;
      return pdf * (2.0 - square(x));
    }
    case UnaryOp::GeluTanh: {
      const double k0 = 0.7978845608028654, k1 = 0.044715;
      Tensor th = tanh((x + pow(x, 3.0) * k1) * k0);
      Tensor sech2 = 1.0 - square(th);
      Tensor du = (1.0 + square(x) * (3.0 * k1)) * k0;
      Tensor d2u = x * (6.0 * k1 * k0);
      return sech2 * du + x * 0.5 * (sech2 * d2u - th * sech2 * square(du) * 2.0);
    }
    case UnaryOp::PowScalar: return a == 0.0 || a == 1.0 ? Tensor() : pow(x, a - 2.0) * (a * (a - 1.0));
    case UnaryOp::Reciprocal: return pow(x, -3.0) * 2.0;
    case UnaryOp::Square: return full_like(x, 2.0);
    default: return Tensor();  // Neg, Abs, Sign, Relu, Clamp, AddScalar, MulScalar: f'' = 0
  }
}

Tensor unary_op(const char* name, UnaryOp op, const Tensor& x, double a = 0, double b = 0) {
  Tensor out = unary_raw(name, op, x, a, b);
  if (!is_floating(x.dtype())) return out;
  return record(
      name, {&x}, out, [x, op, a, b](const Tensor& g, NeedsGrad) -> Grads { return {unary_backward(op, g, x, a, b)}; },
      [x, op, a, b](const Tangents& t, const Tensor&) { return unary_backward(op, t[0], x, a, b); },
      TangentBatch::Broadcast);
}

Tensor binary_raw(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  check_defined(name, a, "first operand");
  check_defined(name, b, "second operand");
  check_same_device(name, a, b);
  check_same_dtype(name, a, b);
  if (op == BinaryOp::Pow) check_floating(name, a);
  DF_CHECK(a.dtype() != DType::b8 || binary_is_comparison(op), "{}: not defined for bool tensors", name);
  Shape s = broadcast_shapes(name, a.shape(), b.shape());
  Tensor out = Tensor::empty(s, TensorOptions(binary_is_comparison(op) ? DType::b8 : a.dtype(), a.device()));
  if (out.numel() == 0) return out;
  ElemLayout l = make_layout(name, out, {&a, &b});
  be(a).binary(dev_index(a), op, a.dtype(), a.raw_data(), b.raw_data(), out.raw_data(), l);
  return out;
}

}  // namespace

Tensor unary_backward(UnaryOp op, const Tensor& g, const Tensor& x, double a, double b) {
  if (!g.defined()) return Tensor();
  const char* name = "unary_backward";
  check_same_device(name, g, x);
  check_same_dtype(name, g, x);
  Shape s = broadcast_shapes(name, g.shape(), x.shape());
  Tensor out = Tensor::empty(s, g.options());
  if (out.numel() > 0) {
    ElemLayout l = make_layout(name, out, {&g, &x});
    be(x).unary_backward(dev_index(x), op, x.dtype(), g.raw_data(), x.raw_data(), out.raw_data(), l, a, b);
  }
  // out = g * f'(x): d/dg = f'(x); d/dx = g * f''(x).
  return record(
      name, {&g, &x}, out,
      [g, x, op, a, b](const Tensor& w, NeedsGrad n) -> Grads {
        Grads r(2);
        if (n[0]) r[0] = sum_to(unary_backward(op, w, x, a, b), g.shape());
        if (n[1]) {
          Tensor f2 = second_derivative(op, x, a, b);
          if (f2.defined()) r[1] = sum_to(w * g * f2, x.shape());
        }
        return r;
      },
      [g, x, op, a, b](const Tangents& t, const Tensor& o) {
        Tensor r = fit(unary_backward(op, t[0], x, a, b), o.shape());
        if (t[1].defined()) {
          Tensor f2 = second_derivative(op, x, a, b);
          if (f2.defined()) r = add_opt(r, fit(g * f2 * t[1], o.shape()));
        }
        return r;
      },
      TangentBatch::Broadcast);
}

Tensor neg(const Tensor& x) { return unary_op("neg", UnaryOp::Neg, x); }
Tensor exp(const Tensor& x) { return unary_op("exp", UnaryOp::Exp, x); }
Tensor log(const Tensor& x) { return unary_op("log", UnaryOp::Log, x); }
Tensor log1p(const Tensor& x) { return unary_op("log1p", UnaryOp::Log1p, x); }
Tensor expm1(const Tensor& x) { return unary_op("expm1", UnaryOp::Expm1, x); }
Tensor sqrt(const Tensor& x) { return unary_op("sqrt", UnaryOp::Sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary_op("rsqrt", UnaryOp::Rsqrt, x); }
Tensor abs(const Tensor& x) { return unary_op("abs", UnaryOp::Abs, x); }
Tensor sign(const Tensor& x) { return unary_op("sign", UnaryOp::Sign, x); }
Tensor sin(const Tensor& x) { return unary_op("sin", UnaryOp::Sin, x); }
Tensor cos(const Tensor& x) { return unary_op("cos", UnaryOp::Cos, x); }
Tensor tanh(const Tensor& x) { return unary_op("tanh", UnaryOp::Tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary_op("sigmoid", UnaryOp::Sigmoid, x); }
Tensor relu(const Tensor& x) { return unary_op("relu", UnaryOp::Relu, x); }
Tensor silu(const Tensor& x) { return unary_op("silu", UnaryOp::Silu, x); }
Tensor gelu(const Tensor& x, GeluApprox approx) {
  return approx == GeluApprox::Tanh ? unary_op("gelu_tanh", UnaryOp::GeluTanh, x)
                                    : unary_op("gelu", UnaryOp::GeluErf, x);
}
Tensor softplus(const Tensor& x) { return unary_op("softplus", UnaryOp::Softplus, x); }
Tensor reciprocal(const Tensor& x) { return unary_op("reciprocal", UnaryOp::Reciprocal, x); }
Tensor square(const Tensor& x) { return unary_op("square", UnaryOp::Square, x); }
Tensor pow(const Tensor& x, double p) { return unary_op("pow", UnaryOp::PowScalar, x, p); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  DF_CHECK(!(lo > hi), "clamp: lower bound {} is above upper bound {}", lo, hi);
  return unary_op("clamp", UnaryOp::Clamp, x, lo, hi);
}
Tensor add(const Tensor& x, double b) { return unary_op("add", UnaryOp::AddScalar, x, b); }
Tensor mul(const Tensor& x, double b) { return unary_op("mul", UnaryOp::MulScalar, x, b); }
Tensor operator/(double a, const Tensor& b) { return mul(reciprocal(b), a); }

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw("add", BinaryOp::Add, a, b);
  return record(
      "add", {&a, &b}, out,
      [sa = a.shape(), sb = b.shape()](const Tensor& g, NeedsGrad n) -> Grads {
        return {n[0] ? sum_to(g, sa) : Tensor(), n[1] ? sum_to(g, sb) : Tensor()};
      },
      [](const Tangents& t, const Tensor& o) { return fit(add_opt(t[0], t[1]), o.shape()); }, TangentBatch::Broadcast);
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw("sub", BinaryOp::Sub, a, b);
  return record(
      "sub", {&a, &b}, out,
      [sa = a.shape(), sb = b.shape()](const Tensor& g, NeedsGrad n) -> Grads {
        return {n[0] ? sum_to(g, sa) : Tensor(), n[1] ? sum_to(neg(g), sb) : Tensor()};
      },
      [](const Tangents& t, const Tensor& o) {
        return fit(t[1].defined() ? add_opt(t[0], neg(t[1])) : t[0], o.shape());
      },
      TangentBatch::Broadcast);
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw("mul", BinaryOp::Mul, a, b);
  return record(
      "mul", {&a, &b}, out,
      [a, b](const Tensor& g, NeedsGrad n) -> Grads {
        return {n[0] ? sum_to(g * b, a.shape()) : Tensor(), n[1] ? sum_to(g * a, b.shape()) : Tensor()};
      },
      [a, b](const Tangents& t, const Tensor& o) {
        return fit(add_opt(t[0].defined() ? t[0] * b : Tensor(), t[1].defined() ? a * t[1] : Tensor()), o.shape());
      },
      TangentBatch::Broadcast);
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw("div", BinaryOp::Div, a, b);
  return record(
      "div", {&a, &b}, out,
      [a, b](const Tensor& g, NeedsGrad n) -> Grads {
        Grads r(2);
        if (n[0]) r[0] = sum_to(g / b, a.shape());
        if (n[1]) r[1] = sum_to(neg(g) * a / square(b), b.shape());
        return r;
      },
      [b](const Tangents& t, const Tensor& o) {
        Tensor num = add_opt(t[0], t[1].defined() ? neg(o * t[1]) : Tensor());
        return fit(num.defined() ? num / b : Tensor(), o.shape());
      },
      TangentBatch::Broadcast);
}

Tensor pow(const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw("pow", BinaryOp::Pow, a, b);
  return record(
      "pow", {&a, &b}, out,
      [a, b](const Tensor& g, NeedsGrad n) -> Grads {
        Grads r(2);
        if (n[0]) r[0] = sum_to(g * b * pow(a, b - 1.0), a.shape());
        if (n[1]) r[1] = sum_to(g * pow(a, b) * log(a), b.shape());
        return r;
      },
      [a, b](const Tangents& t, const Tensor& o) {
        Tensor r = t[0].defined() ? t[0] * b * pow(a, b - 1.0) : Tensor();
        if (t[1].defined()) r = add_opt(r, t[1] * pow(a, b) * log(a));
        return fit(r, o.shape());
      },
      TangentBatch::Broadcast);
}

namespace {
// Share of the gradient each side of minimum/maximum receives: 1 where it wins, 1/2 on ties.
std::pair<Tensor, Tensor> winner_weights(const Tensor& a, const Tensor& b, bool is_max) {
  NoGradGuard ng;
  Tensor wins_a = (is_max ? gt(a, b) : lt(a, b)).to(a.dtype());
  Tensor ties = eq(a, b).to(a.dtype());
  Tensor wa = wins_a + ties * 0.5;
  Tensor wb = 1.0 - wa;
  return {wa, wb};
}

Tensor min_max(const char* name, BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = binary_raw(name, op, a, b);
  const bool is_max = op == BinaryOp::Maximum;
  return record(
      name, {&a, &b}, out,
      [a, b, is_max](const Tensor& g, NeedsGrad n) -> Grads {
        auto [wa, wb] = winner_weights(a, b, is_max);
        return {n[0] ? sum_to(g * wa, a.shape()) : Tensor(), n[1] ? sum_to(g * wb, b.shape()) : Tensor()};
      },
      [a, b, is_max](const Tangents& t, const Tensor& o) {
        auto [wa, wb] = winner_weights(a, b, is_max);
        return fit(add_opt(t[0].defined() ? t[0] * wa : Tensor(), t[1].defined() ? t[1] * wb : Tensor()), o.shape());
      },
      TangentBatch::Broadcast);
}
}  // namespace

Tensor minimum(const Tensor& a, const Tensor& b) { return min_max("minimum", BinaryOp::Minimum, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return min_max("maximum", BinaryOp::Maximum, a, b); }

Tensor eq(const Tensor& a, const Tensor& b) { return binary_raw("eq", BinaryOp::Eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary_raw("ne", BinaryOp::Ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary_raw("lt", BinaryOp::Lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary_raw("le", BinaryOp::Le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary_raw("gt", BinaryOp::Gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary_raw("ge", BinaryOp::Ge, a, b); }
Tensor logical_and(const Tensor& a, const Tensor& b) { return binary_raw("logical_and", BinaryOp::LogicalAnd, a, b); }
Tensor logical_or(const Tensor& a, const Tensor& b) { return binary_raw("logical_or", BinaryOp::LogicalOr, a, b); }
Tensor logical_not(const Tensor& a) { return unary_raw("logical_not", UnaryOp::LogicalNot, a, 0, 0); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  const char* name = "where";
  check_defined(name, cond, "condition");
  check_defined(name, a, "first operand");
  check_defined(name, b, "second operand");
  DF_CHECK(cond.dtype() == DType::b8, "where: condition must be bool, got {}", dtype_name(cond.dtype()));
  check_same_device(name, cond, a);
  check_same_device(name, a, b);
  check_same_dtype(name, a, b);
  Shape s = broadcast_shapes(name, broadcast_shapes(name, cond.shape(), a.shape()), b.shape());
  Tensor out = Tensor::empty(s, a.options());
  if (out.numel() > 0) {
    ElemLayout l = make_layout(name, out, {&cond, &a, &b});
    be(a).where(dev_index(a), a.dtype(), cond.raw_data(), a.raw_data(), b.raw_data(), out.raw_data(), l);
  }
  return record(
      name, {&a, &b}, out,
      [cond, sa = a.shape(), sb = b.shape()](const Tensor& g, NeedsGrad n) -> Grads {
        Tensor z = zeros(Shape{}, g.options());
        return {n[0] ? sum_to(where(cond, g, z), sa) : Tensor(), n[1] ? sum_to(where(cond, z, g), sb) : Tensor()};
      },
      [cond](const Tangents& t, const Tensor& o) {
        Tensor z = zeros(Shape{}, o.options());
        return fit(where(cond, t[0].defined() ? t[0] : z, t[1].defined() ? t[1] : z), o.shape());
      },
      TangentBatch::Broadcast);
}

Tensor addcmul(const Tensor& x, const Tensor& a, const Tensor& b) {
  const char* name = "addcmul";
  check_defined(name, x);
  check_defined(name, a, "first factor");
  check_defined(name, b, "second factor");
  check_same_device(name, x, a);
  check_same_device(name, x, b);
  check_same_dtype(name, x, a);
  check_same_dtype(name, x, b);
  check_floating(name, x);
  const Shape s = broadcast_shapes(name, broadcast_shapes(name, x.shape(), a.shape()), b.shape());
  Tensor out;
  if (be(x).addcmul) {
    out = Tensor::empty(s, x.options());
    if (out.numel() > 0) {
      ElemLayout l = make_layout(name, out, {&x, &a, &b});
      be(x).addcmul(dev_index(x), x.dtype(), x.raw_data(), a.raw_data(), b.raw_data(), out.raw_data(), l);
    }
  } else {
    NoGradGuard ng;
    out = add(x.detach(), mul(a.detach(), b.detach())).expand(s).contiguous();
  }
  return record(
      name, {&x, &a, &b}, out,
      [a, b, sx = x.shape()](const Tensor& g, NeedsGrad n) -> Grads {
        return {n[0] ? sum_to(g, sx) : Tensor(), n[1] ? sum_to(g * b, a.shape()) : Tensor(),
                n[2] ? sum_to(g * a, b.shape()) : Tensor()};
      },
      [a, b](const Tangents& t, const Tensor& o) {
        // t_x + t_a * b + a * t_b, each product added in the same pass as the sum.
        Tensor r = t[0];
        if (t[1].defined()) r = r.defined() ? addcmul(r, t[1], b) : t[1] * b;
        if (t[2].defined()) r = r.defined() ? addcmul(r, a, t[2]) : a * t[2];
        return fit(r, o.shape());
      },
      TangentBatch::Broadcast);
}

Tensor add_opt(const Tensor& a, const Tensor& b) {
  if (!a.defined()) return b;
  if (!b.defined()) return a;
  return add(a, b);
}

void copy_(const Tensor& dst, const Tensor& src) {
  const char* name = "copy_";
  check_defined(name, dst, "destination");
  check_defined(name, src, "source");
  DF_CHECK(!(GradMode::enabled() && dst.requires_grad()),
           "copy_: destination requires grad; in-place updates run under NoGradGuard");
  Tensor s = src.device() == dst.device() ? src : src.to(dst.device());
  if (dst.numel() == 0) return;
  ElemLayout l = make_layout(name, dst, {&s});
  be(dst).copy(dev_index(dst), s.dtype(), s.raw_data(), dst.dtype(), dst.raw_data(), l);
}

void fill_(const Tensor& dst, double value) {
  check_defined("fill_", dst, "destination");
  DF_CHECK(!(GradMode::enabled() && dst.requires_grad()),
           "fill_: destination requires grad; in-place updates run under NoGradGuard");
  if (dst.numel() == 0) return;
  ElemLayout l = make_layout("fill_", dst, {});
  be(dst).fill(dev_index(dst), dst.dtype(), dst.raw_data(), l, value);
}

Tensor stop_gradient(const Tensor& x) { return x.detach(); }

}  // namespace dualflow
