// Ops that build new tensors from pieces of others: cat/stack/split/chunk, index_select and
// index_add, gather and scatter_add, one_hot, flip and pad. Each gathering op has its
// scattering op as adjoint and vice versa.
#include "engine/ops/op_support.h"

namespace dualflow {
using namespace detail;

namespace {

void check_index(const char* op, const Tensor& index, int64_t limit) {
  check_defined(op, index, "index");
  DF_CHECK(index.dtype() == DType::i64, "{}: index must be i64, got {}", op, dtype_name(index.dtype()));
  Tensor idx = index.contiguous();
  int64_t bad = be(idx).find_out_of_range(dev_index(idx), idx.data<int64_t>(), idx.numel(), limit);
  if (bad >= 0) {
    double v = idx.reshape(Shape{-1}).narrow(0, bad, 1).item();
    fail("{}: index {} is out of range for a dim of size {} (at position {})", op, int64_t(v), limit, bad);
  }
}

// [outer, n, inner] sizes of `t` around dim d.
void split_around(const Shape& s, int d, int64_t* outer, int64_t* inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < d; ++i) *outer *= s[i];
  for (int i = d + 1; i < s.size(); ++i) *inner *= s[i];
}

}  // namespace

Tensor cat(const std::vector<Tensor>& xs, int64_t dim_) {
  DF_CHECK(!xs.empty(), "cat: expected at least one tensor, got none");
  for (size_t i = 0; i < xs.size(); ++i) check_defined("cat", xs[i]);
  const Tensor& x0 = xs[0];
  int d = wrap_dim("cat", dim_, x0.dim());
  Shape shape = x0.shape();
  int64_t total = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    check_same_device("cat", x0, xs[i]);
    check_same_dtype("cat", x0, xs[i]);
    DF_CHECK(xs[i].dim() == x0.dim(), "cat: tensor {} has {} dims, expected {}", i, xs[i].dim(), x0.dim());
    for (int k = 0; k < x0.dim(); ++k)
      DF_CHECK(k == d || xs[i].shape()[k] == shape[k], "cat: tensor {} has shape {}, expected {} except along dim {}",
               i, xs[i].shape().str(), shape.str(), d);
    total += xs[i].shape()[d];
  }
  if (xs.size() > kMaxOpInputs) {
    // More inputs than one node records: groups of kMaxOpInputs first (one extra copy).
    std::vector<Tensor> groups;
    for (size_t at = 0; at < xs.size(); at += kMaxOpInputs)
      groups.push_back(cat(
          std::vector<Tensor>(xs.begin() + long(at), xs.begin() + long(std::min(xs.size(), at + kMaxOpInputs))), d));
    return cat(groups, d);
  }
  shape[d] = total;
  Tensor out = Tensor::empty(shape, x0.options());
  std::vector<int64_t> sizes;
  {
    NoGradGuard ng;
    int64_t at = 0;
    for (const Tensor& x : xs) {
      int64_t n = x.shape()[d];
      sizes.push_back(n);
      if (n) copy_(out.detach().narrow(d, at, n), x.detach());
      at += n;
    }
  }
  std::vector<const Tensor*> inputs;
  for (const Tensor& x : xs) inputs.push_back(&x);
  auto vjp = [sizes, d](const Tensor& g, NeedsGrad n) -> Grads {
    Grads r(sizes.size());
    int64_t at = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      if (n[int(i)]) r[i] = g.narrow(d, at, sizes[i]);
      at += sizes[i];
    }
    return r;
  };
  // The JVP needs the inputs' shapes (a missing tangent is zeros), not their values.
  std::vector<Shape> shapes;
  for (const Tensor& x : xs) shapes.push_back(x.shape());
  auto jvp = [shapes, options = x0.options(), d](const Tangents& t, const Tensor&) {
    std::vector<Tensor> parts;
    for (size_t i = 0; i < shapes.size(); ++i) parts.push_back(t[i].defined() ? t[i] : zeros(shapes[i], options));
    return cat(parts, d);
  };
  // K directions (jvp_batched): the same, one dim to the right.
  auto jvp_batched = [shapes, options = x0.options(), d](const Tangents& t, const Tensor&) {
    int64_t k = 0;
    for (const Tensor& ti : t)
      if (ti.defined()) k = ti.shape()[0];
    std::vector<Tensor> parts;
    for (size_t i = 0; i < shapes.size(); ++i)
      parts.push_back(t[i].defined() ? t[i] : zeros(shapes[i].with_leading(k), options));
    return cat(parts, d + 1);
  };
  return record("cat", std::span<const Tensor* const>(inputs), out, vjp, jvp, TangentBatch::Custom, jvp_batched);
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim_) {
  DF_CHECK(!xs.empty(), "stack: expected at least one tensor, got none");
  int64_t lim = xs[0].dim() + 1;
  DF_CHECK(dim_ >= -lim && dim_ < lim, "stack: dim {} is out of range for {} dims", dim_, lim);
  int64_t d = dim_ < 0 ? dim_ + lim : dim_;
  std::vector<Tensor> us;
  for (size_t i = 0; i < xs.size(); ++i) {
    check_defined("stack", xs[i]);
    DF_CHECK(xs[i].shape() == xs[0].shape(), "stack: tensor {} has shape {}, expected {}", i, xs[i].shape().str(),
             xs[0].shape().str());
    us.push_back(xs[i].unsqueeze(d));
  }
  return cat(us, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim_) {
  check_defined("split", x);
  DF_CHECK(size > 0, "split: size must be positive, got {}", size);
  int d = wrap_dim("split", dim_, x.dim());
  std::vector<Tensor> out;
  for (int64_t at = 0; at < x.shape()[d]; at += size) out.push_back(x.narrow(d, at, std::min(size, x.shape()[d] - at)));
  return out;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim_) {
  check_defined("chunk", x);
  DF_CHECK(chunks > 0, "chunk: chunks must be positive, got {}", chunks);
  int d = wrap_dim("chunk", dim_, x.dim());
  int64_t n = x.shape()[d];
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), d);
}

Tensor index_select(const Tensor& x, int64_t dim_, const Tensor& index) {
  const char* name = "index_select";
  check_defined(name, x);
  int d = wrap_dim(name, dim_, x.dim());
  DF_CHECK(index.defined() && index.dim() == 1, "{}: index must be 1-D, got shape {}", name,
           index.defined() ? index.shape().str() : std::string("undefined"));
  check_same_device(name, x, index);
  check_index(name, index, x.shape()[d]);
  Shape shape = x.shape();
  shape[d] = index.numel();
  Tensor out = Tensor::empty(shape, x.options());
  Tensor xc = x.contiguous(), ic = index.contiguous();
  int64_t outer, inner;
  split_around(x.shape(), d, &outer, &inner);
  if (out.numel())
    be(x).index_select(dev_index(x), x.dtype(), xc.raw_data(), ic.data<int64_t>(), out.raw_data(), outer, x.shape()[d],
                       index.numel(), inner);
  return record(
      name, {&x}, out,
      [shape = x.shape(), d, ic](const Tensor& g, NeedsGrad) -> Grads {
        return {index_add(zeros(shape, g.options()), d, ic, g)};
      },
      [d, ic](const Tangents& t, const Tensor&) { return index_select(t[0], d, ic); });
}

Tensor index_add(const Tensor& x, int64_t dim_, const Tensor& index, const Tensor& src) {
  const char* name = "index_add";
  check_defined(name, x);
  check_defined(name, src, "source");
  int d = wrap_dim(name, dim_, x.dim());
  check_same_device(name, x, src);
  check_same_dtype(name, x, src);
  DF_CHECK(index.defined() && index.dim() == 1, "{}: index must be 1-D", name);
  Shape expect = x.shape();
  expect[d] = index.numel();
  DF_CHECK(src.shape() == expect, "{}: source has shape {}, expected {}", name, src.shape().str(), expect.str());
  check_index(name, index, x.shape()[d]);
  Tensor out = x.detach().contiguous().clone();
  Tensor sc = src.contiguous(), ic = index.contiguous();
  int64_t outer, inner;
  split_around(x.shape(), d, &outer, &inner);
  if (sc.numel())
    be(x).index_add(dev_index(x), x.dtype(), sc.raw_data(), ic.data<int64_t>(), out.raw_data(), outer, x.shape()[d],
                    index.numel(), inner);
  out = out.detach();
  return record(
      name, {&x, &src}, out,
      [d, ic](const Tensor& g, NeedsGrad n) -> Grads {
        return {n[0] ? g : Tensor(), n[1] ? index_select(g, d, ic) : Tensor()};
      },
      [x, src, d, ic](const Tangents& t, const Tensor&) {
        return index_add(t[0].defined() ? t[0] : zeros_like(x), d, ic, t[1].defined() ? t[1] : zeros_like(src));
      });
}

Tensor gather(const Tensor& x, int64_t dim_, const Tensor& index) {
  const char* name = "gather";
  check_defined(name, x);
  int d = wrap_dim(name, dim_, x.dim());
  check_defined(name, index, "index");
  check_same_device(name, x, index);
  DF_CHECK(index.dim() == x.dim(), "{}: index has {} dims, expected {}", name, index.dim(), x.dim());
  for (int i = 0; i < x.dim(); ++i)
    DF_CHECK(i == d || index.shape()[i] == x.shape()[i],
             "{}: index shape {} must match input shape {} except along dim {}", name, index.shape().str(),
             x.shape().str(), d);
  check_index(name, index, x.shape()[d]);
  Tensor out = Tensor::empty(index.shape(), x.options());
  Tensor xc = x.contiguous(), ic = index.contiguous();
  int64_t outer, inner;
  split_around(x.shape(), d, &outer, &inner);
  if (out.numel())
    be(x).gather(dev_index(x), x.dtype(), xc.raw_data(), ic.data<int64_t>(), out.raw_data(), outer, x.shape()[d],
                 index.shape()[d], inner);
  return record(
      name, {&x}, out,
      [shape = x.shape(), d, ic](const Tensor& g, NeedsGrad) -> Grads {
        return {scatter_add(zeros(shape, g.options()), d, ic, g)};
      },
      [d, ic](const Tangents& t, const Tensor&) { return gather(t[0], d, ic); });
}

Tensor scatter_add(const Tensor& x, int64_t dim_, const Tensor& index, const Tensor& src) {
  const char* name = "scatter_add";
  check_defined(name, x);
  check_defined(name, src, "source");
  check_defined(name, index, "index");
  int d = wrap_dim(name, dim_, x.dim());
  check_same_device(name, x, src);
  check_same_dtype(name, x, src);
  DF_CHECK(index.shape() == src.shape(), "{}: index shape {} must equal source shape {}", name, index.shape().str(),
           src.shape().str());
  DF_CHECK(src.dim() == x.dim(), "{}: source has {} dims, expected {}", name, src.dim(), x.dim());
  for (int i = 0; i < x.dim(); ++i)
    DF_CHECK(i == d || src.shape()[i] == x.shape()[i], "{}: source shape {} must match {} except along dim {}", name,
             src.shape().str(), x.shape().str(), d);
  check_index(name, index, x.shape()[d]);
  Tensor out = x.detach().contiguous().clone();
  Tensor sc = src.contiguous(), ic = index.contiguous();
  int64_t outer, inner;
  split_around(x.shape(), d, &outer, &inner);
  if (sc.numel())
    be(x).scatter_add(dev_index(x), x.dtype(), sc.raw_data(), ic.data<int64_t>(), out.raw_data(), outer, x.shape()[d],
                      src.shape()[d], inner);
  out = out.detach();
  return record(
      name, {&x, &src}, out,
      [d, ic](const Tensor& g, NeedsGrad n) -> Grads {
        return {n[0] ? g : Tensor(), n[1] ? gather(g, d, ic) : Tensor()};
      },
      [x, src, d, ic](const Tangents& t, const Tensor&) {
        return scatter_add(t[0].defined() ? t[0] : zeros_like(x), d, ic, t[1].defined() ? t[1] : zeros_like(src));
      });
}

Tensor one_hot(const Tensor& labels, int64_t num_classes, DType dtype) {
  check_defined("one_hot", labels, "labels");
  DF_CHECK(num_classes > 0, "one_hot: num_classes must be positive, got {}", num_classes);
  check_index("one_hot", labels, num_classes);
  Tensor classes = arange(num_classes, TensorOptions(DType::i64, labels.device()));
  return eq(labels.unsqueeze(-1), classes).to(dtype);
}

Tensor flip(const Tensor& x, const std::vector<int64_t>& dims_in) {
  check_defined("flip", x);
  std::vector<int> dims = normalize_dims("flip", dims_in, x.dim());
  if (dims_in.empty()) dims.clear();
  Dims st = x.strides();
  int64_t off = x.offset();
  for (int d : dims) {
    if (x.shape()[d] == 0) continue;
    off += (x.shape()[d] - 1) * st[d];
    st[d] = -st[d];
  }
  Tensor reversed = make_view(x, x.shape(), st, off);
  Tensor out = Tensor::empty(x.shape(), x.options());
  if (out.numel()) {
    ElemLayout l = make_layout("flip", out, {&reversed});
    be(x).copy(dev_index(x), x.dtype(), reversed.raw_data(), x.dtype(), out.raw_data(), l);
  }
  return record(
      "flip", {&x}, out, [dims_in](const Tensor& g, NeedsGrad) -> Grads { return {flip(g, dims_in)}; },
      [dims_in](const Tangents& t, const Tensor&) { return flip(t[0], dims_in); });
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  check_defined("pad", x);
  DF_CHECK(pads.size() % 2 == 0 && int(pads.size() / 2) <= x.dim(),
           "pad: expected an even number of pads covering at most {} dims, got {}", x.dim(), pads.size());
  Shape shape = x.shape();
  std::vector<int64_t> before(size_t(x.dim()), 0);
  for (size_t i = 0; i < pads.size() / 2; ++i) {
    int d = x.dim() - 1 - int(i);
    DF_CHECK(pads[2 * i] >= 0 && pads[2 * i + 1] >= 0, "pad: negative padding {} / {} is not supported", pads[2 * i],
             pads[2 * i + 1]);
    before[size_t(d)] = pads[2 * i];
    shape[d] += pads[2 * i] + pads[2 * i + 1];
  }
  Tensor out = full(shape, value, x.options());
  auto interior = [before](const Tensor& t, const Shape& inner) {
    Tensor v = t;
    for (int d = 0; d < inner.size(); ++d) v = v.narrow(d, before[size_t(d)], inner[d]);
    return v;
  };
  {
    NoGradGuard ng;
    if (x.numel()) copy_(interior(out.detach(), x.shape()), x.detach());
  }
  return record(
      "pad", {&x}, out,
      [interior, inner = x.shape()](const Tensor& g, NeedsGrad) -> Grads { return {interior(g, inner)}; },
      [pads](const Tangents& t, const Tensor&) { return pad(t[0], pads, 0.0); });
}

}  // namespace dualflow
