// Image ops on NCHW tensors. im2col / col2im are the two primitives with kernels (each the
// other's adjoint); conv2d is im2col + GEMM, and group_norm, upsampling and pooling are
// compositions of existing ops. Every rule is therefore written in engine ops and nests.
#include <cmath>

#include "engine/ops/op_support.h"

namespace dualflow {
using namespace detail;

namespace {

std::string pair_str(Pair p) { return fmt::format("({}, {})", p[0], p[1]); }

ConvGeometry geometry(const char* name, const Shape& image, Pair kernel, Pair stride, Pair padding, Pair dilation) {
  DF_CHECK(kernel[0] >= 1 && kernel[1] >= 1, "{}: kernel size must be >= 1, got {}", name, pair_str(kernel));
  DF_CHECK(stride[0] >= 1 && stride[1] >= 1, "{}: stride must be >= 1, got {}", name, pair_str(stride));
  DF_CHECK(padding[0] >= 0 && padding[1] >= 0, "{}: padding must be >= 0, got {}", name, pair_str(padding));
  DF_CHECK(dilation[0] >= 1 && dilation[1] >= 1, "{}: dilation must be >= 1, got {}", name, pair_str(dilation));
  ConvGeometry g;
  g.n = image[0], g.c = image[1], g.h = image[2], g.w = image[3];
  g.kh = kernel[0], g.kw = kernel[1];
  g.stride_h = stride[0], g.stride_w = stride[1];
  g.pad_h = padding[0], g.pad_w = padding[1];
  g.dil_h = dilation[0], g.dil_w = dilation[1];
  const int64_t span_h = g.dil_h * (g.kh - 1) + 1, span_w = g.dil_w * (g.kw - 1) + 1;
  DF_CHECK(g.h + 2 * g.pad_h >= span_h && g.w + 2 * g.pad_w >= span_w,
           "{}: kernel {} (dilation {}) is larger than the padded image {}x{} (padding {})", name, pair_str(kernel),
           pair_str(dilation), g.h, g.w, pair_str(padding));
  g.out_h = (g.h + 2 * g.pad_h - span_h) / g.stride_h + 1;
  g.out_w = (g.w + 2 * g.pad_w - span_w) / g.stride_w + 1;
  return g;
}

void check_image(const char* name, const Tensor& x, const char* what = "input") {
  check_defined(name, x, what);
  check_floating(name, x);
  DF_CHECK(x.dim() == 4, "{}: {} must be 4-D [N, C, H, W], got shape {}", name, what, x.shape().str());
}

}  // namespace

Tensor im2col(const Tensor& x, Pair kernel, Pair stride, Pair padding, Pair dilation) {
  const char* name = "im2col";
  check_image(name, x);
  ConvGeometry g = geometry(name, x.shape(), kernel, stride, padding, dilation);
  Tensor out = Tensor::empty({g.n, g.c * g.kh * g.kw, g.out_h * g.out_w}, x.options());
  if (out.numel()) {
    Tensor xc = x.detach().contiguous();
    be(x).im2col(dev_index(x), x.dtype(), xc.raw_data(), out.raw_data(), g);
  }
  Pair image{g.h, g.w};
  return record(
      name, {&x}, out,
      [=](const Tensor& gout, NeedsGrad) -> Grads { return {col2im(gout, image, kernel, stride, padding, dilation)}; },
      [=](const Tangents& t, const Tensor&) { return im2col(t[0], kernel, stride, padding, dilation); });
}

Tensor col2im(const Tensor& cols, Pair image_size, Pair kernel, Pair stride, Pair padding, Pair dilation) {
  const char* name = "col2im";
  check_defined(name, cols);
  check_floating(name, cols);
  DF_CHECK(cols.dim() == 3, "{}: input must be 3-D [N, C*kh*kw, L], got shape {}", name, cols.shape().str());
  const int64_t kk = kernel[0] * kernel[1];
  DF_CHECK(kk >= 1 && cols.shape()[1] % kk == 0, "{}: dim 1 ({}) must be a multiple of kh*kw = {}", name,
           cols.shape()[1], kk);
  Shape image{cols.shape()[0], cols.shape()[1] / kk, image_size[0], image_size[1]};
  ConvGeometry g = geometry(name, image, kernel, stride, padding, dilation);
  DF_CHECK(cols.shape()[2] == g.out_h * g.out_w, "{}: expected {} = {}x{} windows for image {}x{}, got {}", name,
           g.out_h * g.out_w, g.out_h, g.out_w, g.h, g.w, cols.shape()[2]);
  Tensor out = Tensor::empty(image, cols.options());
  if (out.numel()) {
    Tensor cc = cols.detach().contiguous();
    be(cols).col2im(dev_index(cols), cols.dtype(), cc.raw_data(), out.raw_data(), g);
  }
  return record(
      name, {&cols}, out,
      [=](const Tensor& gout, NeedsGrad) -> Grads { return {im2col(gout, kernel, stride, padding, dilation)}; },
      [=](const Tangents& t, const Tensor&) { return col2im(t[0], image_size, kernel, stride, padding, dilation); });
}

namespace {

struct ConvSpec {
  Pair stride, padding, dilation;
  int64_t groups;
};

// The sliding windows of x as GEMM operand [N, groups, C/groups*kh*kw, L]; a 1x1 window with
// unit stride and no padding reads the image as it is (no copy).
Tensor conv_columns(const Tensor& x, Pair kernel, const ConvSpec& c, int64_t out_len) {
  const int64_t n = x.shape()[0], ch = x.shape()[1];
  const bool pointwise = kernel == Pair{1, 1} && c.stride == Pair{1, 1} && c.padding == Pair{0, 0};
  Tensor cols = pointwise ? x.reshape({n, ch, out_len}) : im2col(x, kernel, c.stride, c.padding, c.dilation);
  return cols.reshape({n, c.groups, ch / c.groups * kernel[0] * kernel[1], out_len});
}

// Whether the backend convolves this geometry directly (kernels/cpu/conv_direct.cpp: 3x3,
// stride 1, padding 1, f32) rather than through im2col + GEMM.
bool direct_conv(const Tensor& x, const ConvGeometry& g, int64_t out_channels, int64_t groups) {
  const Backend& b = be(x);
  return groups == 1 && b.conv2d_direct_supports && b.conv2d_direct &&
         b.conv2d_direct_supports(x.dtype(), g, out_channels);
}

// out = W * cols per image and group: [groups, O/g, K] x [N, groups, K, L] -> [N, O, Ho, Wo].
Tensor conv_forward(const Tensor& x, const Tensor& w, const Tensor& b, const ConvSpec& c, const ConvGeometry& g) {
  const int64_t n = x.shape()[0], o = w.shape()[0], l = g.out_h * g.out_w;
  if (direct_conv(x, g, o, c.groups)) {
    Tensor out = Tensor::empty({n, o, g.out_h, g.out_w}, x.options());
    if (out.numel()) {
      Tensor xc = x.contiguous(), wc = w.contiguous(), bc = b.defined() ? b.contiguous() : Tensor();
      be(x).conv2d_direct(dev_index(x), x.dtype(), xc.raw_data(), wc.raw_data(), bc.defined() ? bc.raw_data() : nullptr,
                          out.raw_data(), g, o);
    }
    return out;
  }
  Tensor cols = conv_columns(x, {g.kh, g.kw}, c, l);
  Tensor out = matmul(w.reshape({c.groups, o / c.groups, cols.shape()[2]}), cols).reshape({n, o, g.out_h, g.out_w});
  if (b.defined()) out = out + b.reshape({1, o, 1, 1});
  return out;
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Pair stride, Pair padding, Pair dilation,
              int64_t groups) {
  const char* name = "conv2d";
  check_image(name, x);
  check_image(name, weight, "weight");
  check_same_device(name, x, weight);
  check_same_dtype(name, x, weight);
  const int64_t c = x.shape()[1], o = weight.shape()[0];
  const int64_t kh = weight.shape()[2], kw = weight.shape()[3];
  DF_CHECK(groups >= 1 && c % groups == 0 && o % groups == 0,
           "{}: groups ({}) must divide the input channels ({}) and output channels ({})", name, groups, c, o);
  DF_CHECK(weight.shape()[1] == c / groups, "{}: weight {} expects {} input channels, input {} has {}", name,
           weight.shape().str(), weight.shape()[1] * groups, x.shape().str(), c);
  if (bias.defined()) {
    check_same_device(name, x, bias);
    check_same_dtype(name, x, bias);
    DF_CHECK(bias.dim() == 1 && bias.shape()[0] == o, "{}: bias must have shape [{}], got {}", name, o,
             bias.shape().str());
  }
  const ConvGeometry g = geometry(name, x.shape(), {kh, kw}, stride, padding, dilation);
  const ConvSpec spec{stride, padding, dilation, groups};
  // The forward runs on detached operands, so the window matrix is freed at once instead of
  // being saved for backward; the rules recompute it (one im2col) when they need it.
  Tensor out = conv_forward(x.detach(), weight.detach(), bias.defined() ? bias.detach() : Tensor(), spec, g);
  return record(
      name, {&x, &weight, &bias}, out,
      [x, weight, spec, g](const Tensor& gout_in, NeedsGrad need) -> Grads {
        // A strided output gradient (a slice of a concatenation's gradient) is copied once
        // here rather than by each of the input, weight and bias gradients below.
        const Tensor gout = gout_in.contiguous();
        const int64_t n = x.shape()[0], o = weight.shape()[0], l = g.out_h * g.out_w;
        const int64_t k = weight.shape()[1] * g.kh * g.kw;
        Tensor go = gout.reshape({n, spec.groups, o / spec.groups, l});
        Grads r(3);
        if (need[0]) {
          // With unit stride and dilation and padding (k - 1) / 2 the adjoint is the same
          // convolution of the output gradient with the flipped, transposed weights; take
          // it where the backend convolves that directly (no column matrix at all).
          const ConvGeometry gt{n, o, g.out_h, g.out_w, g.kh, g.kw, 1, 1, g.pad_h, g.pad_w, 1, 1, g.h, g.w};
          if (spec.groups == 1 && spec.stride == Pair{1, 1} && spec.dilation == Pair{1, 1} && 2 * g.pad_h == g.kh - 1 &&
              2 * g.pad_w == g.kw - 1 && direct_conv(gout, gt, x.shape()[1], 1))
            r[0] = conv2d(gout, flip(weight, {2, 3}).transpose(0, 1), Tensor(), {1, 1}, spec.padding, {1, 1}, 1);
        }
        if (need[0] && !r[0].defined()) {
          // d cols = W^T g, summed back onto the image by the adjoint of im2col
          Tensor dcols = matmul(weight.reshape({spec.groups, o / spec.groups, k}).transpose(-2, -1), go)
                             .reshape({n, x.shape()[1] * g.kh * g.kw, l});
          const bool pointwise = g.kh == 1 && g.kw == 1 && spec.stride == Pair{1, 1} && spec.padding == Pair{0, 0};
          r[0] = pointwise ? dcols.reshape(x.shape())
                           : col2im(dcols, {g.h, g.w}, {g.kh, g.kw}, spec.stride, spec.padding, spec.dilation);
        }
        const Backend& be_x = be(x);
        if (need[1] && spec.groups == 1 && be_x.conv2d_weight_grad && rule_is_plain() &&
            (x.dtype() == DType::f32 || x.dtype() == DType::f64)) {
          // The backend interleaves the window matrix and the GEMM image by image (or convolves
          // directly), and sums the bias gradient in the same pass over gout.
          Tensor xc = x.detach().contiguous(), gc = gout.detach().contiguous();
          r[1] = Tensor::empty(weight.shape(), weight.options());
          if (need[2]) r[2] = Tensor::empty({o}, weight.options());
          if (n == 0) {
            fill_(r[1], 0.0);
            if (need[2]) fill_(r[2], 0.0);
          } else {
            be_x.conv2d_weight_grad(dev_index(x), x.dtype(), xc.raw_data(), gc.raw_data(), r[1].raw_data(),
                                    need[2] ? r[2].raw_data() : nullptr, g, o);
          }
        } else if (need[1]) {
          Tensor cols = conv_columns(x, {g.kh, g.kw}, spec, l);  // [N, groups, K, L]
          r[1] = sum(matmul(go, cols.transpose(-2, -1)), {0}).reshape(weight.shape());
        }
        if (need[2] && !r[2].defined()) r[2] = sum(gout, {0, 2, 3});
        return r;
      },
      [x, weight, stride, padding, dilation, groups](const Tangents& t, const Tensor& out) {
        Tensor r;
        if (t[0].defined()) r = conv2d(t[0], weight, Tensor(), stride, padding, dilation, groups);
        if (t[1].defined()) r = add_opt(r, conv2d(x, t[1], Tensor(), stride, padding, dilation, groups));
        if (t[2].defined()) r = add_opt(r, t[2].reshape({1, out.shape()[1], 1, 1}).expand(out.shape()));
        return r;
      });
}

namespace {

// GroupNorm's rules in engine ops, on x viewed as [n * groups, per_group]: with
// xhat = (x - mean) * rstd, d xhat = rstd * (dx - mean(dx) - xhat * mean(dx * xhat)).
struct GroupNormRule {
  Tensor x, weight, bias;
  int64_t groups;
  double eps;
  Shape affine_shape;  // [1, c, 1, ...]: broadcasts a per-channel vector against x

  Shape grouped() const { return {x.shape()[0] * groups, x.numel() / std::max<int64_t>(x.shape()[0] * groups, 1)}; }
  std::pair<Tensor, Tensor> xhat_rstd() const {
    Tensor xg = x.reshape(grouped());
    Tensor rstd = rsqrt(var(xg, {-1}, 0, true) + eps);
    return {(xg - mean(xg, {-1}, true)) * rstd, rstd};
  }
  // d xhat for a change d of x, both in x's shape.
  Tensor normalized_change(const Tensor& d, const Tensor& xhat_g, const Tensor& rstd) const {
    Tensor dg = d.reshape(grouped());
    return (rstd * (dg - mean(dg, {-1}, true) - xhat_g * mean(dg * xhat_g, {-1}, true))).reshape(x.shape());
  }
  Tensor per_channel_sum(const Tensor& t) const { return sum_to(t, affine_shape).reshape({x.shape()[1]}); }
  // The normalised and affine output in engine ops (SiLU's argument in group_norm_silu).
  Tensor output() const {
    Tensor y = xhat_rstd().first.reshape(x.shape());
    if (weight.defined()) y = y * weight.reshape(affine_shape);
    if (bias.defined()) y = y + bias.reshape(affine_shape);
    return y;
  }

  Grads vjp(const Tensor& g, NeedsGrad need) const {
    auto [xhat_g, rstd] = xhat_rstd();
    Grads r(3);
    if (need[0]) r[0] = normalized_change(weight.defined() ? g * weight.reshape(affine_shape) : g, xhat_g, rstd);
    if (need[1]) r[1] = per_channel_sum(g * xhat_g.reshape(x.shape()));
    if (need[2]) r[2] = per_channel_sum(g);
    return r;
  }
  Tensor jvp(const Tangents& t) const {
    auto [xhat_g, rstd] = xhat_rstd();
    Tensor r;
    if (t[0].defined()) {
      Tensor th = normalized_change(t[0], xhat_g, rstd);
      r = weight.defined() ? th * weight.reshape(affine_shape) : th;
    }
    if (t[1].defined()) r = add_opt(r, xhat_g.reshape(x.shape()) * t[1].reshape(affine_shape));
    if (t[2].defined()) r = add_opt(r, t[2].reshape(affine_shape).expand(x.shape()));
    return r;
  }
};

}  // namespace

namespace {

// GroupNorm, followed by SiLU when `silu` (one pass each way on backends with the fused kernels).
Tensor group_norm_maybe_silu(const char* name, const Tensor& x, int64_t groups, const Tensor& weight,
                             const Tensor& bias, double eps, bool silu) {
  check_defined(name, x);
  check_floating(name, x);
  DF_CHECK(x.dim() >= 2, "{}: input must be [N, C, ...], got shape {}", name, x.shape().str());
  const int64_t n = x.shape()[0], c = x.shape()[1];
  DF_CHECK(groups >= 1 && c % groups == 0, "{}: groups ({}) must divide the channels ({}) of input {}", name, groups, c,
           x.shape().str());
  Shape affine_shape(std::vector<int64_t>(size_t(x.dim()), 1));
  affine_shape[1] = c;
  for (const Tensor* p : {&weight, &bias}) {
    if (!p->defined()) continue;
    check_same_device(name, x, *p);
    check_same_dtype(name, x, *p);
    DF_CHECK(p->dim() == 1 && p->shape()[0] == c, "{}: {} must have shape [{}], got {}", name,
             p == &weight ? "weight" : "bias", c, p->shape().str());
  }
  const Backend& b = be(x);
  const bool fused = b.group_norm && b.group_norm_backward && (x.dtype() == DType::f32 || x.dtype() == DType::f64);
  if (!fused) {
    // Backends without the fused kernels: the row normalisation over groups, then the affine ops.
    const int64_t per_group = n * groups != 0 ? x.numel() / (n * groups) : 0;
    Tensor y = layer_norm(x.reshape({n * groups, per_group}), per_group, Tensor(), Tensor(), eps).reshape(x.shape());
    if (weight.defined()) y = y * weight.reshape(affine_shape);
    if (bias.defined()) y = y + bias.reshape(affine_shape);
    return silu ? dualflow::silu(y) : y;
  }
  const int64_t spatial = n * c != 0 ? x.numel() / (n * c) : 0;
  Tensor xc = x.contiguous().detach();
  Tensor wc = weight.defined() ? weight.contiguous() : Tensor(), bc = bias.defined() ? bias.contiguous() : Tensor();
  Tensor out = Tensor::empty(x.shape(), x.options());
  const TensorOptions stats_options(DType::f64, x.device());
  Tensor group_mean = Tensor::empty({n * groups}, stats_options),
         group_rstd = Tensor::empty({n * groups}, stats_options);
  if (x.numel())
    b.group_norm(dev_index(x), x.dtype(), xc.raw_data(), wc.defined() ? wc.raw_data() : nullptr,
                 bc.defined() ? bc.raw_data() : nullptr, out.raw_data(), static_cast<double*>(group_mean.raw_data()),
                 static_cast<double*>(group_rstd.raw_data()), n, c, spatial, groups, eps, silu);
  const GroupNormRule rule{x, weight, bias, groups, eps, affine_shape};
  return record(
      name, {&x, &weight, &bias}, out,
      [rule, xc, wc, bc, group_mean, group_rstd, spatial, silu](const Tensor& g, NeedsGrad need) -> Grads {
        if (!rule_is_plain()) return rule.vjp(silu ? unary_backward(UnaryOp::Silu, g, rule.output()) : g, need);
        // The fused backward kernel, from the saved statistics.
        const Tensor& x = rule.x;
        const int64_t n = x.shape()[0], c = x.shape()[1];
        Tensor gc = g.contiguous();
        Grads r(3);
        if (need[0]) r[0] = Tensor::empty(x.shape(), x.options());
        if (need[1]) r[1] = Tensor::empty({c}, x.options());
        if (need[2]) r[2] = Tensor::empty({c}, x.options());
        if (x.numel())
          be(x).group_norm_backward(
              dev_index(x), x.dtype(), gc.raw_data(), xc.raw_data(), static_cast<const double*>(group_mean.raw_data()),
              static_cast<const double*>(group_rstd.raw_data()), wc.defined() ? wc.raw_data() : nullptr,
              bc.defined() ? bc.raw_data() : nullptr, need[0] ? r[0].raw_data() : nullptr,
              need[1] ? r[1].raw_data() : nullptr, need[2] ? r[2].raw_data() : nullptr, n, c, spatial, rule.groups,
              silu);
        else
          for (size_t i = 1; i < 3; ++i)
            if (need[i]) fill_(r[i], 0.0);
        return r;
      },
      [rule, silu](const Tangents& t, const Tensor&) {
        Tensor th = rule.jvp(t);
        return silu && th.defined() ? unary_backward(UnaryOp::Silu, th, rule.output()) : th;
      });
}

}  // namespace

Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, double eps) {
  return group_norm_maybe_silu("group_norm", x, groups, weight, bias, eps, false);
}

Tensor group_norm_silu(const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, double eps) {
  return group_norm_maybe_silu("group_norm_silu", x, groups, weight, bias, eps, true);
}


namespace {
// Rows of the [out, in] matrix that resamples a length-`in` axis by `scale` with linear
// interpolation at half-pixel centres (PyTorch's bilinear, align_corners=False).
Tensor linear_resample_matrix(int64_t in, int64_t scale, const Tensor& like) {
  const int64_t out = in * scale;
  std::vector<double> m(out * in, 0.0);
  for (int64_t i = 0; i < out; ++i) {
    double src = std::max((i + 0.5) / double(scale) - 0.5, 0.0);
    int64_t i0 = std::min<int64_t>(int64_t(std::floor(src)), in - 1);
    int64_t i1 = std::min<int64_t>(i0 + 1, in - 1);
    double frac = src - double(i0);
    m[i * in + i0] += 1.0 - frac;
    m[i * in + i1] += frac;
  }
  return from_vector(m, {out, in}, DType::f64).to(like.dtype()).to(like.device());
}
}  // namespace

Tensor upsample2d(const Tensor& x, int64_t scale, UpsampleMode mode) {
  const char* name = "upsample2d";
  check_image(name, x);
  DF_CHECK(scale >= 1, "{}: scale must be >= 1, got {}", name, scale);
  const int64_t h = x.shape()[2], w = x.shape()[3];
  if (mode == UpsampleMode::Nearest) {
    // Row i of the output reads row i / scale, along each axis: two gathers, whose inner loops
    // run along whole rows (copying an expanded [.., w, scale] view instead runs `scale`
    // elements at a time, about five times slower), and whose adjoint is index_add.
    auto repeat_each = [&](int64_t size) {
      std::vector<int64_t> source(size_t(size * scale));
      for (int64_t i = 0; i < size * scale; ++i) source[size_t(i)] = i / scale;
      return from_vector(source, {size * scale}, TensorOptions(DType::i64, x.device()));
    };
    return index_select(index_select(x, 3, repeat_each(w)), 2, repeat_each(h));
  }
  // Bilinear resampling is separable: rows by A_h, then columns by A_w^T.
  Tensor a_h = linear_resample_matrix(h, scale, x), a_w = linear_resample_matrix(w, scale, x);
  return matmul(matmul(a_h, x), a_w.t());
}

Tensor avg_pool2d(const Tensor& x, int64_t kernel) {
  const char* name = "avg_pool2d";
  check_image(name, x);
  DF_CHECK(kernel >= 1, "{}: kernel must be >= 1, got {}", name, kernel);
  const int64_t n = x.shape()[0], c = x.shape()[1], ho = x.shape()[2] / kernel, wo = x.shape()[3] / kernel;
  DF_CHECK(ho >= 1 && wo >= 1, "{}: kernel {} is larger than the image {}", name, kernel, x.shape().str());
  // Like PyTorch, rows and columns that do not fill a window are dropped.
  Tensor xs = x.narrow(2, 0, ho * kernel).narrow(3, 0, wo * kernel);
  return mean(xs.reshape({n, c, ho, kernel, wo, kernel}), {3, 5});
}

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  const char* name = "scaled_dot_product_attention";
  check_defined(name, q, "query");
  check_defined(name, k, "key");
  check_defined(name, v, "value");
  DF_CHECK(q.dim() >= 2 && k.dim() >= 2 && v.dim() >= 2, "{}: q, k, v must be [..., L, D], got {}, {}, {}", name,
           q.shape().str(), k.shape().str(), v.shape().str());
  const int64_t d = q.shape()[q.dim() - 1];
  DF_CHECK(k.shape()[k.dim() - 1] == d, "{}: key dim {} differs from query dim {} ({} vs {})", name,
           k.shape()[k.dim() - 1], d, k.shape().str(), q.shape().str());
  DF_CHECK(k.shape()[k.dim() - 2] == v.shape()[v.dim() - 2], "{}: key length {} differs from value length {}", name,
           k.shape()[k.dim() - 2], v.shape()[v.dim() - 2]);
  if (scale <= 0) scale = 1.0 / std::sqrt(double(d));
  // Scaling q (L x D) is cheaper than scaling the L x L scores.
  Tensor scores = matmul(q * scale, k.transpose(-2, -1));
  return matmul(softmax(scores, -1), v);
}

}  // namespace dualflow
