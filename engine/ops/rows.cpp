// Row ops along one dim: softmax, log_softmax, logsumexp (fused max-subtracted kernels) and
// layer_norm / rms_norm over the last dim (fused forward; rules in engine ops so they nest).
#include "engine/ops/op_support.h"

namespace dualflow {
using namespace detail;

namespace {

// Runs a row kernel on `x` with `dim` moved last; returns the result in x's layout.
Tensor run_rows(const char* name, RowOp op, const Tensor& x, int d) {
  check_defined(name, x);
  check_floating(name, x);
  NoGradGuard ng;
  Tensor xt = x.detach().transpose(d, -1).contiguous();
  int64_t cols = xt.dim() ? xt.shape()[xt.dim() - 1] : 1;
  int64_t rows = cols ? xt.numel() / cols : 0;
  Shape shape = xt.shape();
  if (op == RowOp::LogSumExp && shape.size()) shape[shape.size() - 1] = 1;
  Tensor out = Tensor::empty(shape, x.options());
  if (rows > 0 && cols > 0) be(x).rowwise(dev_index(x), op, x.dtype(), xt.raw_data(), out.raw_data(), rows, cols);
  return out.transpose(d, -1).detach();
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  int d = wrap_dim("softmax", dim, x.dim());
  Tensor out = run_rows("softmax", RowOp::Softmax, x, d);
  return record(
      "softmax", {&x}, out,
      [x, d, saved = out.detach()](const Tensor& g, NeedsGrad) -> Grads {
        Tensor y = rule_is_plain() ? saved : softmax(x, d);
        Tensor gy = g * y;
        return {gy - y * sum(gy, {d}, true)};
      },
      [back = int64_t(d) - x.dim()](const Tangents& t, const Tensor& y) {
        Tensor ty = t[0] * y;
        return ty - y * sum(ty, {back}, true);
      },
      TangentBatch::Broadcast);
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  int d = wrap_dim("log_softmax", dim, x.dim());
  Tensor out = run_rows("log_softmax", RowOp::LogSoftmax, x, d);
  return record(
      "log_softmax", {&x}, out,
      [x, d, saved = out.detach()](const Tensor& g, NeedsGrad) -> Grads {
        Tensor p = rule_is_plain() ? exp(saved) : softmax(x, d);
        return {g - p * sum(g, {d}, true)};
      },
      [x, d](const Tangents& t, const Tensor&) {
        return t[0] - sum(t[0] * softmax(x, d), {int64_t(d) - x.dim()}, true);
      },
      TangentBatch::Broadcast);
}

Tensor logsumexp(const Tensor& x, int64_t dim, bool keepdim) {
  int d = wrap_dim("logsumexp", dim, x.dim());
  Tensor out = run_rows("logsumexp", RowOp::LogSumExp, x, d);
  if (!keepdim) out = out.squeeze(d);
  return record(
      "logsumexp", {&x}, out,
      [x, d, keepdim](const Tensor& g, NeedsGrad) -> Grads {
        Tensor gk = keepdim ? g : g.unsqueeze(d);
        return {gk * softmax(x, d)};
      },
      [x, d, keepdim](const Tangents& t, const Tensor&) {
        return sum(t[0] * softmax(x, d), {int64_t(d) - x.dim()}, keepdim);
      },
      TangentBatch::Broadcast);
}

namespace {
void check_affine(const char* name, const Tensor& x, const Tensor& p, int64_t n, const char* what) {
  if (!p.defined()) return;
  DF_CHECK(p.dim() == 1 && p.shape()[0] == n, "{}: {} must have shape [{}], got {}", name, what, n, p.shape().str());
  check_same_device(name, x, p);
  check_same_dtype(name, x, p);
}

// layer_norm's weight and bias: [n], or any shape that broadcasts to x's with last dim n (a
// per-sample modulation such as a DiT's 1 + scale and shift, [N, 1, n] against x [N, L, n]).
void check_layer_norm_affine(const Tensor& x, const Tensor& p, int64_t n, const char* what) {
  if (!p.defined()) return;
  check_same_device("layer_norm", x, p);
  check_same_dtype("layer_norm", x, p);
  bool fits = p.dim() >= 1 && p.dim() <= x.dim() && p.shape()[p.dim() - 1] == n;
  for (int i = 1; fits && i < p.dim(); ++i) {
    const int64_t have = p.shape()[p.dim() - 1 - i], want = x.shape()[x.dim() - 1 - i];
    fits = have == 1 || have == want;
  }
  DF_CHECK(fits, "layer_norm: {} must have shape [{}] or broadcast to the input {} with last dim {}, got {}", what, n,
           x.shape().str(), n, p.shape().str());
}

// How rows share an affine of shape `a` (broadcast to x's shape): one affine row per `group`
// consecutive rows when `a`, aligned right, equals x's leading dims up to some dim and is 1
// after it (0 when it does not have that form).
int64_t affine_group(const Shape& a, const Shape& x) {
  const int64_t rank = int64_t(x.size()), pad = rank - int64_t(a.size());
  int64_t group = 1;
  bool in_tail = true;  // walking left from the last row dim: still among the broadcast 1s
  for (int64_t i = rank - 2; i >= 0; --i) {
    const int64_t have = i >= pad ? a[size_t(i - pad)] : 1;
    if (in_tail && have == 1) {
      group *= x[size_t(i)];
      continue;
    }
    in_tail = false;
    if (have != x[size_t(i)]) return 0;
  }
  return group;
}

// The fused kernels' view of the affine: contiguous, in one common shape that rows share in
// groups (broadcast to x's shape where the common one has no such form).
struct FusedAffine {
  Tensor w, b;
  Shape shape;
  int64_t group = 1;
};

FusedAffine fused_affine(const Tensor& x, const Tensor& w, const Tensor& b) {
  FusedAffine f;
  const int64_t rows = x.numel() / std::max<int64_t>(x.shape()[x.dim() - 1], 1);
  if (!w.defined() && !b.defined()) {
    f.group = std::max<int64_t>(rows, 1);
    return f;
  }
  Shape common = w.defined() && b.defined() ? broadcast_shapes("layer_norm", w.shape(), b.shape())
                                            : (w.defined() ? w.shape() : b.shape());
  f.group = affine_group(common, x.shape());
  if (f.group == 0) {
    common = x.shape();
    f.group = 1;
  }
  f.group = std::max<int64_t>(f.group, 1);
  f.shape = common;
  NoGradGuard ng;
  if (w.defined()) f.w = w.detach().expand(common).contiguous();
  if (b.defined()) f.b = b.detach().expand(common).contiguous();
  return f;
}

const void* data_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
void* mutable_data_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }
}  // namespace

Tensor layer_norm(const Tensor& x, int64_t n, const Tensor& w, const Tensor& b, double eps) {
  const char* name = "layer_norm";
  check_defined(name, x);
  check_floating(name, x);
  DF_CHECK(x.dim() >= 1 && x.shape()[x.dim() - 1] == n,
           "layer_norm: normalized size {} does not match the last dim of {}", n, x.shape().str());
  check_layer_norm_affine(x, w, n, "weight");
  check_layer_norm_affine(x, b, n, "bias");
  // xhat = (x - mu) * rstd; d xhat = rstd * (dx - mean(dx) - xhat * mean(dx * xhat)).
  auto stats = [x, eps]() {
    Tensor mu = mean(x, {-1}, true);
    Tensor rstd = rsqrt(var(x, {-1}, 0, true) + eps);
    return std::make_pair((x - mu) * rstd, rstd);
  };
  auto composed_vjp = [stats, w, b](const Tensor& g, NeedsGrad need) -> Grads {
    auto [xhat, rstd] = stats();
    Grads r(3);
    if (need[0]) {
      Tensor gh = w.defined() ? g * w : g;
      r[0] = rstd * (gh - mean(gh, {-1}, true) - xhat * mean(gh * xhat, {-1}, true));
    }
    if (need[1]) r[1] = sum_to(g * xhat, w.shape());
    if (need[2]) r[2] = sum_to(g, b.shape());
    return r;
  };
  auto composed_jvp = [stats, w](const Tangents& t, const Tensor& o) {
    auto [xhat, rstd] = stats();
    Tensor r;
    if (t[0].defined()) {
      Tensor th = rstd * (t[0] - mean(t[0], {-1}, true) - xhat * mean(t[0] * xhat, {-1}, true));
      r = w.defined() ? th * w : th;
    }
    if (t[1].defined()) r = add_opt(r, xhat * t[1]);
    if (t[2].defined()) r = add_opt(r, fit(t[2], o.shape()));
    return fit(r, o.shape());
  };
  const Backend& bk = be(x);
  const bool fused = bk.layer_norm && bk.layer_norm_backward && bk.layer_norm_jvp &&
                     (x.dtype() == DType::f32 || x.dtype() == DType::f64);
  if (!fused) {
    // The row normalisation, with the affine inside it when that is one row of n.
    const bool plain_affine = (!w.defined() || w.dim() == 1) && (!b.defined() || b.dim() == 1);
    Tensor xc = x.contiguous();
    Tensor out = Tensor::empty(x.shape(), x.options());
    if (x.numel())
      bk.normalize_rows(dev_index(x), x.dtype(), xc.raw_data(),
                        plain_affine && w.defined() ? w.contiguous().raw_data() : nullptr,
                        plain_affine && b.defined() ? b.contiguous().raw_data() : nullptr, out.raw_data(),
                        x.numel() / n, n, eps, false);
    if (!plain_affine) {
      NoGradGuard ng;
      if (w.defined()) out = out * w.detach();
      if (b.defined()) out = out + b.detach();
    }
    return record(name, {&x, &w, &b}, out, composed_vjp, composed_jvp, TangentBatch::Broadcast);
  }
  const FusedAffine affine = fused_affine(x, w, b);
  const int64_t rows = n ? x.numel() / n : 0;
  Tensor xc = x.contiguous().detach();
  Tensor out = Tensor::empty(x.shape(), x.options());
  const TensorOptions stats_options(DType::f64, x.device());
  Tensor row_mean = Tensor::empty({rows}, stats_options), row_rstd = Tensor::empty({rows}, stats_options);
  if (x.numel())
    bk.layer_norm(dev_index(x), x.dtype(), xc.raw_data(), data_or_null(affine.w), data_or_null(affine.b),
                  out.raw_data(), static_cast<double*>(row_mean.raw_data()), static_cast<double*>(row_rstd.raw_data()),
                  rows, n, affine.group, eps);
  return record(
      name, {&x, &w, &b}, out,
      [composed_vjp, x, w, b, xc, affine, row_mean, row_rstd, rows, n](const Tensor& g, NeedsGrad need) -> Grads {
        if (!rule_is_plain()) return composed_vjp(g, need);
        // The fused backward kernel, from the saved statistics.
        Tensor gc = g.contiguous();
        Grads r(3);
        Tensor dw, db;
        if (need[0]) r[0] = Tensor::empty(x.shape(), x.options());
        if (need[1]) dw = Tensor::empty(affine.shape, x.options());
        if (need[2]) db = Tensor::empty(affine.shape, x.options());
        if (x.numel())
          be(x).layer_norm_backward(dev_index(x), x.dtype(), gc.raw_data(), xc.raw_data(),
                                    static_cast<const double*>(row_mean.raw_data()),
                                    static_cast<const double*>(row_rstd.raw_data()), data_or_null(affine.w),
                                    mutable_data_or_null(r[0]), mutable_data_or_null(dw), mutable_data_or_null(db),
                                    rows, n, affine.group);
        else
          for (Tensor* d : {&dw, &db})
            if (d->defined()) fill_(*d, 0.0);
        if (need[1]) r[1] = sum_to(dw, w.shape());
        if (need[2]) r[2] = sum_to(db, b.shape());
        return r;
      },
      [composed_jvp, x, w, b, xc, affine, row_mean, row_rstd, rows, n](const Tangents& t, const Tensor& o) {
        // The fused tangent kernel for one direction of non-differentiable tangents.
        const bool single = (!t[0].defined() || t[0].shape() == x.shape()) &&
                            (!t[1].defined() || t[1].shape() == w.shape()) &&
                            (!t[2].defined() || t[2].shape() == b.shape());
        if (!rule_is_plain() || !single) return composed_jvp(t, o);
        Tensor tx = t[0].defined() ? t[0].contiguous() : Tensor();
        Tensor tw, tb;
        if (t[1].defined()) tw = t[1].expand(affine.shape).contiguous();
        if (t[2].defined()) tb = t[2].expand(affine.shape).contiguous();
        Tensor ty = Tensor::empty(x.shape(), x.options());
        if (x.numel())
          be(x).layer_norm_jvp(dev_index(x), x.dtype(), data_or_null(tx), data_or_null(tw), data_or_null(tb),
                               xc.raw_data(), static_cast<const double*>(row_mean.raw_data()),
                               static_cast<const double*>(row_rstd.raw_data()), data_or_null(affine.w),
                               ty.raw_data(), rows, n, affine.group);
        return ty;
      },
      TangentBatch::Broadcast);
}

Tensor rms_norm(const Tensor& x, int64_t n, const Tensor& w, double eps) {
  const char* name = "rms_norm";
  check_defined(name, x);
  check_floating(name, x);
  DF_CHECK(x.dim() >= 1 && x.shape()[x.dim() - 1] == n,
           "rms_norm: normalized size {} does not match the last dim of {}", n, x.shape().str());
  check_affine(name, x, w, n, "weight");
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.options());
  if (x.numel())
    be(x).normalize_rows(dev_index(x), x.dtype(), xc.raw_data(), w.defined() ? w.contiguous().raw_data() : nullptr,
                         nullptr, out.raw_data(), x.numel() / n, n, eps, true);
  auto stats = [x, eps]() {
    Tensor rstd = rsqrt(mean(square(x), {-1}, true) + eps);
    return std::make_pair(x * rstd, rstd);
  };
  return record(
      name, {&x, &w}, out,
      [stats, w](const Tensor& g, NeedsGrad need) -> Grads {
        auto [xhat, rstd] = stats();
        Grads r(2);
        if (need[0]) {
          Tensor gh = w.defined() ? g * w : g;
          r[0] = rstd * (gh - xhat * mean(gh * xhat, {-1}, true));
        }
        if (need[1]) r[1] = sum_to(g * xhat, w.shape());
        return r;
      },
      [stats, w](const Tangents& t, const Tensor&) {
        auto [xhat, rstd] = stats();
        Tensor r;
        if (t[0].defined()) {
          Tensor th = rstd * (t[0] - xhat * mean(t[0] * xhat, {-1}, true));
          r = w.defined() ? th * w : th;
        }
        if (t[1].defined()) r = add_opt(r, xhat * t[1]);
        return r;
      },
      TangentBatch::Broadcast);
}

}  // namespace dualflow
