// View ops: new geometry over the same storage (reshape, permute, narrow/slice, expand,
// squeeze/unsqueeze, alias), each differentiable; plus slice_backward, the op that embeds a
// gradient into a zero tensor at a slice (the adjoint of slicing).
#include <numeric>

#include "engine/ops/op_support.h"

namespace dualflow {
using namespace detail;

namespace {

// Strides for viewing `t` as `shape` without copying, if its layout allows (PyTorch's rule).
bool view_strides(const Tensor& t, const Shape& shape, Dims* out) {
  if (t.is_contiguous()) {
    *out = contiguous_strides(shape);
    return true;
  }
  // Walk old dims in chunks that are contiguous among themselves.
  const Shape& os = t.shape();
  const Dims& ost = t.strides();
  Dims ns;
  ns.resize(shape.size());
  int view_d = shape.size() - 1;
  int64_t chunk_base_stride = os.size() ? ost[os.size() - 1] : 1;
  int64_t tensor_numel = 1, view_numel = 1;
  for (int td = os.size() - 1; td >= 0; --td) {
    tensor_numel *= os[td];
    if (td == 0 || (os[td - 1] != 1 && ost[td - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        ns[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (td > 0) {
        chunk_base_stride = ost[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return false;
  *out = ns;
  return true;
}

Shape infer_shape(const char* op, const Shape& req, int64_t numel) {
  Shape s = req;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      DF_CHECK(infer < 0, "{}: only one dim can be -1, got {}", op, req.str());
      infer = i;
    } else {
      DF_CHECK(s[i] >= 0, "{}: invalid size {} in {}", op, s[i], req.str());
      known *= s[i];
    }
  }
  if (infer >= 0) {
    DF_CHECK(known > 0 && numel % known == 0, "{}: shape {} is invalid for {} elements", op, req.str(), numel);
    s[infer] = numel / known;
  }
  DF_CHECK(s.numel() == numel, "{}: shape {} is invalid for {} elements", op, req.str(), numel);
  return s;
}

// `fwd` maps a tangent as the view maps its tensor; `fwd_batched` does the same to a batch of
// tangents [K, ...] (jvp_batched), the view's dims moved one place right.
Tensor view_op(const char* name, const Tensor& x, const Shape& shape, const Dims& strides, int64_t offset,
               std::function<Tensor(const Tensor&)> back, std::function<Tensor(const Tensor&)> fwd,
               std::function<Tensor(const Tensor&)> fwd_batched) {
  Tensor out = make_view(x, shape, strides, offset);
  return record(
      name, {&x}, out, [back](const Tensor& g, NeedsGrad) -> Grads { return {back(g)}; },
      [fwd](const Tangents& t, const Tensor&) { return t[0].defined() ? fwd(t[0]) : Tensor(); }, TangentBatch::Custom,
      [fwd_batched](const Tangents& t, const Tensor&) { return t[0].defined() ? fwd_batched(t[0]) : Tensor(); });
}

}  // namespace

Tensor Tensor::view(const Shape& req) const {
  Shape shape = infer_shape("view", req, numel());
  Dims st;
  DF_CHECK(view_strides(*this, shape, &st), "view: shape {} with strides {} cannot be viewed as {}; use reshape()",
           this->shape().str(), strides().str(), shape.str());
  Shape from = this->shape();
  return view_op(
      "view", *this, shape, st, offset(), [from](const Tensor& g) { return g.reshape(from); },
      [shape](const Tensor& t) { return t.reshape(shape); },
      [shape](const Tensor& t) { return t.reshape(shape.with_leading(t.shape()[0])); });
}

Tensor Tensor::reshape(const Shape& req) const {
  Shape shape = infer_shape("reshape", req, numel());
  if (shape == this->shape()) return *this;
  Dims st;
  if (view_strides(*this, shape, &st)) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  DF_CHECK(int(dims.size()) == dim(), "permute: got {} dims for a tensor of {} dims", dims.size(), dim());
  Dims shape, st;
  std::vector<int64_t> inv(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int d = wrap_dim("permute", dims[i], dim());
    DF_CHECK(!seen[size_t(d)], "permute: dim {} repeated in the permutation", d);
    seen[size_t(d)] = true;
    shape.push_back(this->shape()[d]);
    st.push_back(strides()[d]);
    inv[size_t(d)] = int64_t(i);
  }
  std::vector<int64_t> fwd(dims);
  return view_op(
      "permute", *this, shape, st, offset(), [inv](const Tensor& g) { return g.permute(inv); },
      [fwd](const Tensor& t) { return t.permute(fwd); },
      [fwd](const Tensor& t) {
        std::vector<int64_t> p{0};
        for (int64_t d : fwd) p.push_back(d + 1);
        return t.permute(p);
      });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  std::vector<int64_t> p(static_cast<size_t>(dim()));
  std::iota(p.begin(), p.end(), 0);
  std::swap(p[size_t(wrap_dim("transpose", d0, dim()))], p[size_t(wrap_dim("transpose", d1, dim()))]);
  return permute(p);
}

Tensor Tensor::slice(int64_t dim_, int64_t start, int64_t end, int64_t step) const {
  int d = wrap_dim("slice", dim_, dim());
  DF_CHECK(step > 0, "slice: step must be positive, got {}", step);
  int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  int64_t len = (end - start + step - 1) / step;
  Shape shape = this->shape();
  Dims st = strides();
  shape[d] = len;
  st[d] *= step;
  Shape from = this->shape();
  return view_op(
      "slice", *this, shape, st, offset() + start * strides()[d],
      [from, d, start, step](const Tensor& g) { return slice_backward(g, from, d, start, step); },
      [d, start, end, step](const Tensor& t) { return t.slice(d, start, end, step); },
      [d, start, end, step](const Tensor& t) { return t.slice(d + 1, start, end, step); });
}

Tensor Tensor::narrow(int64_t dim_, int64_t start, int64_t length) const {
  int d = wrap_dim("narrow", dim_, dim());
  DF_CHECK(start >= 0 && length >= 0 && start + length <= shape()[d],
           "narrow: range [{}, {}) is out of bounds for dim {} of size {}", start, start + length, d, shape()[d]);
  return slice(d, start, start + length, 1);
}

Tensor Tensor::select(int64_t dim_, int64_t index) const {
  int d = wrap_dim("select", dim_, dim());
  int64_t n = shape()[d];
  DF_CHECK(index >= -n && index < n, "select: index {} is out of range for dim {} of size {}", index, d, n);
  if (index < 0) index += n;
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& req) const {
  DF_CHECK(req.size() >= dim(), "expand: cannot expand {} to fewer dims {}", shape().str(), req.str());
  Shape shape = req;
  int off = req.size() - dim();
  for (int i = 0; i < req.size(); ++i)
    if (shape[i] == -1) {
      DF_CHECK(i >= off, "expand: -1 is not allowed for a new leading dim in {}", req.str());
      shape[i] = this->shape()[i - off];
    }
  if (shape == this->shape()) return *this;
  Dims st = detail::broadcast_strides("expand", *this, shape);
  Shape from = this->shape();
  return view_op(
      "expand", *this, shape, st, offset(), [from](const Tensor& g) { return sum_to(g, from); },
      [shape](const Tensor& t) { return t.expand(shape); },
      [shape, from](const Tensor& t) {
        // The new leading dims go after the directions: [K, 1, ..., from] first.
        Shape lined_up = from;
        while (lined_up.size() < shape.size()) lined_up.insert(0, 1);
        return t.reshape(lined_up.with_leading(t.shape()[0])).expand(shape.with_leading(t.shape()[0]));
      });
}

Tensor Tensor::squeeze(int64_t dim_) const {
  int d = wrap_dim("squeeze", dim_, dim());
  if (shape()[d] != 1) return *this;
  Shape s = shape();
  Dims st = strides();
  s.erase(d);
  st.erase(d);
  Shape from = shape();
  return view_op(
      "squeeze", *this, s, st, offset(), [from](const Tensor& g) { return g.reshape(from); },
      [s](const Tensor& t) { return t.reshape(s); },
      [s](const Tensor& t) { return t.reshape(s.with_leading(t.shape()[0])); });
}

Tensor Tensor::squeeze() const {
  Shape s;
  for (int64_t d : shape())
    if (d != 1) s.push_back(d);
  return reshape(s);
}

Tensor Tensor::unsqueeze(int64_t dim_) const {
  int64_t lim = dim() + 1;
  DF_CHECK(dim_ >= -lim && dim_ < lim, "unsqueeze: dim {} is out of range for a tensor of {} dims", dim_, dim());
  int d = int(dim_ < 0 ? dim_ + lim : dim_);
  Shape s = shape();
  Dims st = strides();
  int64_t inner = d < dim() ? strides()[d] * shape()[d] : 1;
  s.insert(d, 1);
  st.insert(d, inner);
  Shape from = shape();
  return view_op(
      "unsqueeze", *this, s, st, offset(), [from](const Tensor& g) { return g.reshape(from); },
      [s](const Tensor& t) { return t.reshape(s); },
      [s](const Tensor& t) { return t.reshape(s.with_leading(t.shape()[0])); });
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape(Shape{1});
  int s0 = wrap_dim("flatten", start, dim()), s1 = wrap_dim("flatten", end, dim());
  DF_CHECK(s0 <= s1, "flatten: start dim {} is after end dim {}", s0, s1);
  Shape s;
  for (int i = 0; i < s0; ++i) s.push_back(shape()[i]);
  int64_t m = 1;
  for (int i = s0; i <= s1; ++i) m *= shape()[i];
  s.push_back(m);
  for (int i = s1 + 1; i < dim(); ++i) s.push_back(shape()[i]);
  return reshape(s);
}

Tensor alias(const Tensor& x) {
  check_defined("alias", x);
  return view_op(
      "alias", x, x.shape(), x.strides(), x.offset(), [](const Tensor& g) { return g; },
      [](const Tensor& t) { return t; }, [](const Tensor& t) { return t; });
}

Tensor slice_backward(const Tensor& g, const Shape& full_shape, int64_t dim, int64_t start, int64_t step) {
  Tensor out = zeros(full_shape, g.options());
  int64_t end = start + (g.shape()[int(dim)] - 1) * step + 1;
  {
    NoGradGuard ng;
    copy_(out.detach().slice(dim, start, end, step), g.detach());
  }
  return record(
      "slice_backward", {&g}, out,
      [dim, start, end, step](const Tensor& w, NeedsGrad) -> Grads { return {w.slice(dim, start, end, step)}; },
      [full_shape, dim, start, step](const Tangents& t, const Tensor&) {
        return slice_backward(t[0], full_shape, dim, start, step);
      });
}

}  // namespace dualflow
