// Argument checks, broadcasting and layout coalescing shared by all op files.
#include "engine/ops/op_support.h"

namespace dualflow::detail {

void check_defined(const char* op, const Tensor& t, const char* what) {
  DF_CHECK(t.defined(), "{}: {} is an undefined tensor", op, what);
}

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  DF_CHECK(a.device() == b.device(), "{}: operands are on different devices: {} and {}", op, a.device().str(),
           b.device().str());
}

void check_same_dtype(const char* op, const Tensor& a, const Tensor& b) {
  DF_CHECK(a.dtype() == b.dtype(), "{}: dtype mismatch: {} and {} (convert one with .to(dtype))", op,
           dtype_name(a.dtype()), dtype_name(b.dtype()));
}

void check_floating(const char* op, const Tensor& t) {
  DF_CHECK(is_floating(t.dtype()), "{}: expected a floating dtype (f32, f64, bf16, f16), got {}", op,
           dtype_name(t.dtype()));
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  int n = std::max(a.size(), b.size());
  Shape out;
  out.resize(n);
  for (int i = 0; i < n; ++i) {
    int ia = a.size() - n + i, ib = b.size() - n + i;
    int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
    DF_CHECK(da == db || da == 1 || db == 1, "{}: shapes {} and {} cannot be broadcast together", op, a.str(), b.str());
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Dims broadcast_strides(const char* op, const Tensor& t, const Shape& shape) {
  const Shape& ts = t.shape();
  DF_CHECK(ts.size() <= shape.size(), "{}: cannot broadcast {} to {}", op, ts.str(), shape.str());
  Dims s;
  s.resize(shape.size());
  int off = shape.size() - ts.size();
  for (int i = 0; i < shape.size(); ++i) {
    if (i < off) {
      s[i] = 0;
      continue;
    }
    int64_t d = ts[i - off];
    DF_CHECK(d == shape[i] || d == 1, "{}: cannot broadcast {} to {}", op, ts.str(), shape.str());
    s[i] = (d == 1 && shape[i] != 1) ? 0 : t.strides()[i - off];
  }
  return s;
}

ElemLayout make_layout(const char* op, const Tensor& out, std::initializer_list<const Tensor*> inputs) {
  const Shape& shape = out.shape();
  const int nops = 1 + int(inputs.size());
  Dims strides[4];
  strides[0] = out.strides();
  int k = 1;
  for (const Tensor* t : inputs) strides[k++] = broadcast_strides(op, *t, shape);
  ElemLayout l;
  // Drop size-1 dims, then merge neighbours that are contiguous in every operand.
  int n = 0;
  for (int d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (n > 0) {
      bool mergeable = true;
      for (int o = 0; o < nops; ++o)
        if (l.strides[o][n - 1] != strides[o][d] * shape[d]) {
          mergeable = false;
          break;
        }
      if (mergeable) {
        l.sizes[n - 1] *= shape[d];
        for (int o = 0; o < nops; ++o) l.strides[o][n - 1] = strides[o][d];
        continue;
      }
    }
    l.sizes[n] = shape[d];
    for (int o = 0; o < nops; ++o) l.strides[o][n] = strides[o][d];
    ++n;
  }
  if (n == 0 && shape.numel() == 1) {
    // scalar: represent as one element
    l.ndim = 1;
    l.sizes[0] = 1;
    for (int o = 0; o < nops; ++o) l.strides[o][0] = 1;
    return l;
  }
  if (shape.numel() == 0) {
    l.ndim = 1;
    l.sizes[0] = 0;
    return l;
  }
  l.ndim = n;
  return l;
}

std::vector<int> normalize_dims(const char* op, const std::vector<int64_t>& dims, int ndim) {
  std::vector<int> out;
  if (dims.empty()) {
    for (int i = 0; i < ndim; ++i) out.push_back(i);
    return out;
  }
  for (int64_t d : dims) {
    int w = wrap_dim(op, d, ndim);
    DF_CHECK(std::find(out.begin(), out.end(), w) == out.end(), "{}: dim {} appears twice", op, d);
    out.push_back(w);
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool rule_is_plain() { return !GradMode::enabled() && !autodiff_detail::any_forward_level_visible(); }

}  // namespace dualflow::detail
