// Every differentiable op of the engine. Each is defined once (engine/ops/*.cpp) with its
// forward dispatch, its JVP rule and its VJP rule; the rules use these same functions.
#pragma once
#include <array>
#include <optional>
#include <vector>

#include "engine/autograd.h"
#include "engine/tensor.h"
#include "kernels/common/scalar_ops.h"  // UnaryOp: the op vocabulary the backends share

namespace dualflow {

// ---- elementwise (NumPy broadcasting; operands must share dtype and device) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, double exponent);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log1p(const Tensor& x);
Tensor expm1(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor silu(const Tensor& x);
enum class GeluApprox { Erf, Tanh };
Tensor gelu(const Tensor& x, GeluApprox approx = GeluApprox::Erf);
Tensor softplus(const Tensor& x);
Tensor reciprocal(const Tensor& x);
Tensor square(const Tensor& x);
Tensor clamp(const Tensor& x, double lo, double hi);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
// x + a * b in one pass (broadcasting all three), as torch.addcmul: a gated residual
// x + gate * y, and the tangent rules' sums of products.
Tensor addcmul(const Tensor& x, const Tensor& a, const Tensor& b);
// g * f'(x) for the unary op `op` in one fused pass (the VJP of every unary op).
Tensor unary_backward(UnaryOp op, const Tensor& g, const Tensor& x, double a = 0, double b = 0);

// comparisons and logic (bool results, not differentiable)
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& a);

// ---- reductions (dims may be negative; empty dims = all) ----
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, int64_t correction = 1, bool keepdim = false);
Tensor norm(const Tensor& x, double p = 2.0, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Sums `x` down to `shape` (the adjoint of broadcasting).
Tensor sum_to(const Tensor& x, const Shape& shape);

// ---- linear algebra ----
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] @ weight[out, in]^T + bias [out] (bias may be undefined), the bias added by the GEMM
// as it stores the product: no pass over the output besides the product's own.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);
// activation(linear(x, weight, bias)) as one op, for an activation that is relu, tanh, sigmoid,
// silu or gelu (UnaryOp::Relu .. GeluErf): on the CPU the GEMM applies it as it stores the
// product (the bits of the two ops), and, when something is differentiated, stores the
// activation's derivative beside it, which the gradient and tangents multiply by instead of
// evaluating the activation again. Other backends, and 16-bit floats under differentiation,
// run the two ops.
Tensor linear_activation(const Tensor& x, const Tensor& weight, const Tensor& bias, UnaryOp activation);
// linear (or linear_activation) of cat(parts, -1), as one op whose tangent multiplies only the
// parts that have one, each by its own columns of the weight: a first layer over [z, embedding
// of t, ...] differentiated in z alone costs a GEMM over z's few columns, not over the zeros a
// cat gives the embedding's tangent. Its values and gradients are those of the two ops.
Tensor linear_parts(const std::vector<Tensor>& parts, const Tensor& weight, const Tensor& bias,
                    std::optional<UnaryOp> activation = std::nullopt);
void set_allow_tf32(bool on);  // CUDA f32 GEMM through TF32 tensor cores; off by default
bool allow_tf32();

// ---- rows ----
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
Tensor logsumexp(const Tensor& x, int64_t dim = -1, bool keepdim = false);
Tensor layer_norm(const Tensor& x, int64_t normalized_size, const Tensor& weight = Tensor(),
                  const Tensor& bias = Tensor(), double eps = 1e-5);
Tensor rms_norm(const Tensor& x, int64_t normalized_size, const Tensor& weight = Tensor(), double eps = 1e-6);

// ---- shape ----
Tensor alias(const Tensor& x);  // a differentiable identity view
// Zeros of `full_shape` with `g` written at x.slice(dim, start, ..., step): the adjoint of slicing.
Tensor slice_backward(const Tensor& g, const Shape& full_shape, int64_t dim, int64_t start, int64_t step);
Tensor cat(const std::vector<Tensor>& xs, int64_t dim = 0);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim = 0);
std::vector<Tensor> split(const Tensor& x, int64_t size, int64_t dim = 0);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor one_hot(const Tensor& labels, int64_t num_classes, DType dtype = DType::f32);
Tensor flip(const Tensor& x, const std::vector<int64_t>& dims);
// pad = {before_last, after_last, before_second_last, after_second_last, ...} like PyTorch
Tensor pad(const Tensor& x, const std::vector<int64_t>& pad, double value = 0.0);

// ---- images (NCHW) ----
using Pair = std::array<int64_t, 2>;  // (height, width) of a kernel, stride, padding or dilation
// Sliding windows (torch.nn.functional.unfold): x [N, C, H, W] -> [N, C*kh*kw, Ho*Wo].
Tensor im2col(const Tensor& x, Pair kernel, Pair stride = {1, 1}, Pair padding = {0, 0}, Pair dilation = {1, 1});
// The adjoint of im2col (torch.nn.functional.fold): sums windows back into [N, C, H, W].
Tensor col2im(const Tensor& cols, Pair image_size, Pair kernel, Pair stride = {1, 1}, Pair padding = {0, 0},
              Pair dilation = {1, 1});
// weight [out, in / groups, kh, kw]; bias [out] or undefined. Like torch.nn.functional.conv2d.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(), Pair stride = {1, 1},
              Pair padding = {0, 0}, Pair dilation = {1, 1}, int64_t groups = 1);
// x [N, C, *]: normalised over each group of C / groups channels and the spatial dims;
// weight/bias [C] or undefined.
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                  double eps = 1e-5);
// silu(group_norm(...)) as one op: the U-Net block's norm and activation in one pass each way
// on backends with the fused kernels.
Tensor group_norm_silu(const Tensor& x, int64_t groups, const Tensor& weight = Tensor(), const Tensor& bias = Tensor(),
                       double eps = 1e-5);
enum class UpsampleMode { Nearest, Bilinear };
// [N, C, H, W] -> [N, C, H*scale, W*scale]; bilinear uses half-pixel centres (align_corners=False).
Tensor upsample2d(const Tensor& x, int64_t scale, UpsampleMode mode = UpsampleMode::Nearest);
// Mean over non-overlapping kernel x kernel windows: [N, C, H, W] -> [N, C, H/k, W/k].
Tensor avg_pool2d(const Tensor& x, int64_t kernel);

// ---- attention ----
// softmax(q k^T * scale) v over the last two dims: q [..., Lq, D], k [..., Lk, D], v [..., Lk, Dv].
// scale <= 0 means 1/sqrt(D).
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale = 0.0);

// ---- autodiff cuts ----
Tensor stop_gradient(const Tensor& x);
inline Tensor detach(const Tensor& x) { return x.detach(); }

// ---- operators ----
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator+(double a, const Tensor& b) { return add(b, a); }
inline Tensor operator-(const Tensor& a, double b) { return add(a, -b); }
inline Tensor operator-(double a, const Tensor& b) { return add(neg(b), a); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator/(const Tensor& a, double b) { return mul(a, 1.0 / b); }
Tensor operator/(double a, const Tensor& b);

// Adds a and b treating undefined as zero (for JVP/VJP rules with optional terms).
Tensor add_opt(const Tensor& a, const Tensor& b);

// ---- in-place, non-differentiable updates (optimizers, gradient buffers) ----
// dst (any strides) <- src broadcast and cast to dst's dtype; refuses tensors that require grad.
void copy_(const Tensor& dst, const Tensor& src);
void fill_(const Tensor& dst, double value);

}  // namespace dualflow
