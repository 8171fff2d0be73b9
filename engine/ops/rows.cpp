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
}  // namespace

Tensor layer_norm(const Tensor& x, int64_t n, const Tensor& w, const Tensor& b, double eps) {
  const char* name = "layer_norm";
  check_defined(name, x);
  check_floating(name, x);
  DF_CHECK(x.dim() >= 1 && x.shape()[x.dim() - 1] == n,
           "layer_norm: normalized size {} does not match the last dim of {}", n, x.shape().str());
  check_affine(name, x, w, n, "weight");
  check_affine(name, x, b, n, "bias");
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(x.shape(), x.options());
  if (x.numel())
    be(x).normalize_rows(dev_index(x), x.dtype(), xc.raw_data(), w.defined() ? w.contiguous().raw_data() : nullptr,
                         b.defined() ? b.contiguous().raw_data() : nullptr, out.raw_data(), x.numel() / n, n, eps,
                         false);
  // xhat = (x - mu) * rstd; d xhat = rstd * (dx - mean(dx) - xhat * mean(dx * xhat)).
  auto stats = [x, eps]() {
    Tensor mu = mean(x, {-1}, true);
    Tensor rstd = rsqrt(var(x, {-1}, 0, true) + eps);
    return std::make_pair((x - mu) * rstd, rstd);
  };
  return record(
      name, {&x, &w, &b}, out,
      [stats, w, b](const Tensor& g, NeedsGrad need) -> Grads {
        auto [xhat, rstd] = stats();
        Grads r(3);
        if (need[0]) {
          Tensor gh = w.defined() ? g * w : g;
          r[0] = rstd * (gh - mean(gh, {-1}, true) - xhat * mean(gh * xhat, {-1}, true));
        }
        if (need[1]) r[1] = sum_to(g * xhat, w.shape());
        if (need[2]) r[2] = sum_to(g, b.shape());
        return r;
      },
      [stats, w](const Tangents& t, const Tensor& o) {
        auto [xhat, rstd] = stats();
        Tensor r;
        if (t[0].defined()) {
          Tensor th = rstd * (t[0] - mean(t[0], {-1}, true) - xhat * mean(t[0] * xhat, {-1}, true));
          r = w.defined() ? th * w : th;
        }
        if (t[1].defined()) r = add_opt(r, xhat * t[1]);
        if (t[2].defined()) r = add_opt(r, fit(t[2], o.shape()));
        return fit(r, o.shape());
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
