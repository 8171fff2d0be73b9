// Reductions over any set of dims with keepdim: sum (the primitive, with its adjoint
// broadcast), max/min values and indices, and mean/var/norm composed from them.
#include "engine/ops/op_support.h"

namespace dualflow {
using namespace detail;

namespace {

Shape reduced_shape(const Shape& s, const std::vector<int>& dims, bool keepdim) {
  Shape out;
  for (int i = 0; i < s.size(); ++i) {
    bool r = std::find(dims.begin(), dims.end(), i) != dims.end();
    if (!r) out.push_back(s[i]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

// Runs the reduce kernel; returns the result with keepdim shape.
Tensor reduce_raw(const char* name, ReduceOp op, const Tensor& x, const std::vector<int>& dims) {
  const int nd = x.dim();
  Shape keep = reduced_shape(x.shape(), dims, true);
  bool is_arg = op == ReduceOp::ArgMax || op == ReduceOp::ArgMin;
  int64_t r = 1;
  for (int d : dims) r *= x.shape()[d];
  // Contiguous input whose reduced dims form one block: [outer, r, inner] with no copy.
  bool block = x.is_contiguous() && !dims.empty() && dims.back() - dims.front() + 1 == int(dims.size());
  if (!block && x.is_contiguous() && !dims.empty() && keep.numel() > 0 && r > 0 &&
      (op == ReduceOp::Sum || op == ReduceOp::Max || op == ReduceOp::Min)) {
    // Reduced dims in several blocks (a bias gradient sums [N, C, H, W] over {0, 2, 3}): reduce
    // the last block in place, then the rest of the smaller result, instead of copying the
    // input into a permuted layout.
    size_t first_of_last = dims.size() - 1;
    while (first_of_last > 0 && dims[first_of_last - 1] == dims[first_of_last] - 1) --first_of_last;
    const std::vector<int> last(dims.begin() + std::ptrdiff_t(first_of_last), dims.end());
    const std::vector<int> rest(dims.begin(), dims.begin() + std::ptrdiff_t(first_of_last));
    return reduce_raw(name, op, reduce_raw(name, op, x, last), rest);
  }
  Tensor out = Tensor::empty(keep, TensorOptions(is_arg ? DType::i64 : x.dtype(), x.device()));
  if (out.numel() == 0) return out;
  DF_CHECK(r > 0 || op == ReduceOp::Sum, "{}: cannot reduce over an empty dim of shape {}", name, x.shape().str());
  if (r == 0) {
    fill_(out, 0.0);
    return out;
  }
  Tensor src = x;
  int64_t outer = 1, inner = 1;
  if (block) {
    for (int i = 0; i < dims.front(); ++i) outer *= x.shape()[i];
    for (int i = dims.back() + 1; i < nd; ++i) inner *= x.shape()[i];
  } else {
    std::vector<int64_t> perm;
    for (int i = 0; i < nd; ++i)
      if (std::find(dims.begin(), dims.end(), i) == dims.end()) {
        perm.push_back(i);
        outer *= x.shape()[i];
      }
    for (int d : dims) perm.push_back(d);
    NoGradGuard ng;
    src = x.detach().permute(perm).contiguous();
  }
  be(x).reduce(dev_index(x), op, x.dtype(), src.raw_data(), out.raw_data(), outer, r, inner);
  return out;
}

Tensor squeeze_dims(const Tensor& t, const std::vector<int>& dims) {
  Shape s;
  for (int i = 0; i < t.dim(); ++i)
    if (std::find(dims.begin(), dims.end(), i) == dims.end()) s.push_back(t.shape()[i]);
  return t.reshape(s);
}

// Restores reduced dims as size 1 so a reduced tensor broadcasts against the input.
Tensor keep_dims(const Tensor& t, const Shape& input, const std::vector<int>& dims) {
  return t.reshape(reduced_shape(input, dims, true));
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  check_defined("sum", x);
  std::vector<int> dims = normalize_dims("sum", dims_in, x.dim());
  Tensor out = reduce_raw("sum", ReduceOp::Sum, x, dims);
  if (!keepdim)
    out = make_view(out, reduced_shape(x.shape(), dims, false),
                    contiguous_strides(reduced_shape(x.shape(), dims, false)), 0);
  if (!is_floating(x.dtype())) return out;
  return record(
      "sum", {&x}, out,
      [shape = x.shape(), dims](const Tensor& g, NeedsGrad) -> Grads {
        return {keep_dims(g, shape, dims).expand(shape)};
      },
      [dims_in, keepdim](const Tangents& t, const Tensor&) { return sum(t[0], dims_in, keepdim); },
      TangentBatch::Custom,
      [dims, keepdim](const Tangents& t, const Tensor&) { return sum(t[0], dims_after_batch(dims), keepdim); });
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  check_defined("mean", x);
  check_floating("mean", x);
  std::vector<int> dims = normalize_dims("mean", dims_in, x.dim());
  int64_t n = 1;
  for (int d : dims) n *= x.shape()[d];
  DF_CHECK(n > 0, "mean: cannot average over an empty dim of shape {}", x.shape().str());
  return sum(x, dims_in, keepdim) * (1.0 / double(n));
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  std::vector<int64_t> dims;
  int lead = x.dim() - shape.size();
  DF_CHECK(lead >= 0, "sum_to: cannot sum {} down to {}", x.shape().str(), shape.str());
  for (int i = 0; i < x.dim(); ++i) {
    if (i < lead) {
      dims.push_back(i);
      continue;
    }
    if (shape[i - lead] == 1 && x.shape()[i] != 1) dims.push_back(i);
    else
      DF_CHECK(shape[i - lead] == x.shape()[i] || shape[i - lead] == 1, "sum_to: cannot sum {} down to {}",
               x.shape().str(), shape.str());
  }
  if (dims.empty()) return x.reshape(shape);
  return sum(x, dims, true).reshape(shape);
}

namespace {
Tensor extremum(const char* name, ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  check_defined(name, x);
  DF_CHECK(x.numel() > 0, "{}: cannot reduce an empty tensor of shape {}", name, x.shape().str());
  std::vector<int> dims = normalize_dims(name, dims_in, x.dim());
  Tensor out = reduce_raw(name, op, x, dims);
  Shape final_shape = reduced_shape(x.shape(), dims, keepdim);
  out = make_view(out, final_shape, contiguous_strides(final_shape), 0);
  if (!is_floating(x.dtype()) || !x.impl()->autograd) return out;
  // The gradient is shared evenly among the elements that attain the extremum; the weights
  // are piecewise constant, so they are computed off the tape.
  Tensor weights;
  {
    NoGradGuard ng;
    Tensor hit = eq(x.detach(), keep_dims(out.detach(), x.shape(), dims)).to(x.dtype());
    weights = hit / sum(hit, std::vector<int64_t>(dims.begin(), dims.end()), true);
  }
  return record(
      name, {&x}, out,
      [weights, dims, shape = x.shape()](const Tensor& g, NeedsGrad) -> Grads {
        return {keep_dims(g, shape, dims) * weights};
      },
      [weights, dims_in, keepdim](const Tangents& t, const Tensor&) { return sum(t[0] * weights, dims_in, keepdim); },
      TangentBatch::Custom,
      [weights, dims, keepdim](const Tangents& t, const Tensor&) {
        return sum(t[0] * weights, dims_after_batch(dims), keepdim);
      });
}
}  // namespace

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extremum("amax", ReduceOp::Max, x, dims, keepdim);
}
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extremum("amin", ReduceOp::Min, x, dims, keepdim);
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  check_defined("argmax", x);
  int d = wrap_dim("argmax", dim, x.dim());
  DF_CHECK(x.numel() > 0, "argmax: cannot reduce an empty tensor of shape {}", x.shape().str());
  Tensor out = reduce_raw("argmax", ReduceOp::ArgMax, x.detach(), {d});
  return keepdim ? out : squeeze_dims(out, {d});
}

Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  check_defined("argmin", x);
  int d = wrap_dim("argmin", dim, x.dim());
  DF_CHECK(x.numel() > 0, "argmin: cannot reduce an empty tensor of shape {}", x.shape().str());
  Tensor out = reduce_raw("argmin", ReduceOp::ArgMin, x.detach(), {d});
  return keepdim ? out : squeeze_dims(out, {d});
}

Tensor var(const Tensor& x, const std::vector<int64_t>& dims_in, int64_t correction, bool keepdim) {
  check_defined("var", x);
  check_floating("var", x);
  std::vector<int> dims = normalize_dims("var", dims_in, x.dim());
  int64_t n = 1;
  for (int d : dims) n *= x.shape()[d];
  DF_CHECK(n - correction > 0, "var: {} elements with correction {} leave no degrees of freedom", n, correction);
  Tensor centered = x - mean(x, dims_in, true);
  return sum(square(centered), dims_in, keepdim) * (1.0 / double(n - correction));
}

Tensor norm(const Tensor& x, double p, const std::vector<int64_t>& dims, bool keepdim) {
  check_defined("norm", x);
  check_floating("norm", x);
  DF_CHECK(p > 0, "norm: p must be positive, got {}", p);
  if (p == 2.0) return sqrt(sum(square(x), dims, keepdim));
  if (p == 1.0) return sum(abs(x), dims, keepdim);
  return pow(sum(pow(abs(x), p), dims, keepdim), 1.0 / p);
}

}  // namespace dualflow
