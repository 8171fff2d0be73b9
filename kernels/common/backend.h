// The contract between engine/ and a device backend: plain functions over raw pointers,
// sizes and element strides. A backend (kernels/cpu, kernels/cuda) fills one `Backend` table;
// the engine picks the table by device and never sees a kernel's inside.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "kernels/common/dtype.h"
#include "kernels/common/limits.h"
#include "kernels/common/optim_args.h"
#include "kernels/common/philox.h"
#include "kernels/common/scalar_ops.h"

namespace dualflow {

// An n-d iteration space shared by one output (operand 0) and up to three inputs. Strides are
// in elements and may be 0 (broadcast). The engine coalesces dims before calling a kernel.
struct ElemLayout {
  int ndim = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[4][kMaxDims] = {};
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= sizes[i];
    return n;
  }
};

enum class ReduceOp : uint8_t { Sum, Max, Min, ArgMax, ArgMin };
enum class RowOp : uint8_t { Softmax, LogSoftmax, LogSumExp };

struct GemmArgs {
  DType dtype = DType::f32;
  bool trans_a = false, trans_b = false;  // row-major: C[M,N] = op(A)[M,K] * op(B)[K,N]
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int64_t lda = 0, stride_a = 0;
  const void* b = nullptr;
  int64_t ldb = 0, stride_b = 0;
  void* c = nullptr;
  int64_t ldc = 0, stride_c = 0;
  int64_t batch = 1;
  double alpha = 1.0, beta = 0.0;
  // Optional: a row of n values (dtype, contiguous, one for every batch entry) added to each row
  // of C in place of beta * C, which must then be 0: C = alpha op(A) op(B) + bias. A Linear's
  // bias, added as the product is stored instead of copied into C beforehand and read back.
  const void* bias = nullptr;
  // Optional, on a backend with gemm_activations: each value v = alpha op(A) op(B) (+ bias) is
  // stored as f(v) for the unary op `activation` (one of DF_FOR_EACH_GEMM_ACTIVATION; beta must
  // be 0), and f'(v) at the same place in `derivative` (C's layout; f32 and f64) where that is given: a
  // Linear and the activation after it in one pass over the output, with the derivative its
  // gradient and tangents multiply by instead of evaluating the activation again.
  std::optional<UnaryOp> activation;
  void* derivative = nullptr;
  // Optional, on a backend with gemm_multipliers, in place of an activation: each value v =
  // alpha op(A) op(B) (+ bias) is stored as v * M, one rounding, for the matrix M at
  // `multiplier` (dtype f32 or f64; C's offsets and row stride ldc in each batch entry, entries
  // stride_multiplier apart, which may be 0). A tangent's product with an activation's saved
  // derivative, made as the tangent's GEMM stores it instead of in a second pass.
  const void* multiplier = nullptr;
  int64_t stride_multiplier = 0;
  bool allow_tf32 = false;  // CUDA f32: TF32 tensor cores (ignored on CPU)
};

// The unary ops a GEMM may apply as it stores its output (GemmArgs::activation): the networks'
// activations, which take no scalar parameters.
#define DF_FOR_EACH_GEMM_ACTIVATION(X) X(Relu) X(Tanh) X(Sigmoid) X(Silu) X(GeluTanh) X(GeluErf)
inline bool gemm_activation_supported(UnaryOp op) {
  switch (op) {
#define DF_GEMM_ACTIVATION_CASE(NAME) case UnaryOp::NAME:
    DF_FOR_EACH_GEMM_ACTIVATION(DF_GEMM_ACTIVATION_CASE)
#undef DF_GEMM_ACTIVATION_CASE
    return true;
    default: return false;
  }
}

// A 2-D convolution window over a contiguous NCHW image.
struct ConvGeometry {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
  int64_t out_h = 0, out_w = 0;
};

struct Backend {
  const char* name;
  // memory
  void* (*alloc)(int device, size_t bytes);
  void (*free)(int device, void* ptr, size_t bytes);
  void (*copy_to_host)(int device, void* host_dst, const void* src, size_t bytes);
  void (*copy_from_host)(int device, void* dst, const void* host_src, size_t bytes);
  void (*copy_same_device)(int device, void* dst, const void* src, size_t bytes);
  void (*synchronize)(int device);
  // elementwise over an ElemLayout
  void (*fill)(int device, DType t, void* out, const ElemLayout& l, double value);
  void (*copy)(int device, DType src_t, const void* src, DType dst_t, void* dst, const ElemLayout& l);
  void (*unary)(int device, UnaryOp op, DType t, const void* x, void* y, const ElemLayout& l, double a, double b);
  // out = g * f'(x) for the unary op `op`
  void (*unary_backward)(int device, UnaryOp op, DType t, const void* g, const void* x, void* out, const ElemLayout& l,
                         double a, double b);
  // comparisons write bool; arithmetic writes dtype t
  void (*binary)(int device, BinaryOp op, DType t, const void* x, const void* y, void* out, const ElemLayout& l);
  void (*where)(int device, DType t, const void* cond, const void* x, const void* y, void* out, const ElemLayout& l);
  // Optional (nullptr: the engine composes x + a * b): out = x + a * b, operands 1.. = x, a, b.
  void (*addcmul)(int device, DType t, const void* x, const void* a, const void* b, void* out, const ElemLayout& l);
  // contiguous [outer, r, inner] -> [outer, inner]; ArgMax/ArgMin write i64
  void (*reduce)(int device, ReduceOp op, DType t, const void* in, void* out, int64_t outer, int64_t r, int64_t inner);
  // contiguous rows of `cols`; LogSumExp writes one value per row
  void (*rowwise)(int device, RowOp op, DType t, const void* in, void* out, int64_t rows, int64_t cols);
  // y = (x - mean) * rstd * w + b per row (rms: no mean, no b); w/b may be null
  void (*normalize_rows)(int device, DType t, const void* x, const void* w, const void* b, void* y, int64_t rows,
                         int64_t cols, double eps, bool rms);
  void (*gemm)(int device, const GemmArgs& args);
  // Whether gemm applies GemmArgs::activation (otherwise the engine runs the activation as its
  // own op after the product).
  bool gemm_activations;
  // Whether gemm applies GemmArgs::multiplier (otherwise the engine multiplies after the product).
  bool gemm_multipliers;
  // [outer, n_in, inner] gathered by idx[n_idx] along the middle dim -> [outer, n_idx, inner]
  void (*index_select)(int device, DType t, const void* in, const int64_t* idx, void* out, int64_t outer, int64_t n_in,
                       int64_t n_idx, int64_t inner);
  // out[outer, idx[j], inner] += src[outer, j, inner]
  void (*index_add)(int device, DType t, const void* src, const int64_t* idx, void* out, int64_t outer, int64_t n_out,
                    int64_t n_idx, int64_t inner);
  // out[o, j, i] = in[o, idx[o, j, i], i]; in is [outer, n_in, inner], idx/out [outer, n_idx, inner]
  void (*gather)(int device, DType t, const void* in, const int64_t* idx, void* out, int64_t outer, int64_t n_in,
                 int64_t n_idx, int64_t inner);
  // out[o, idx[o, j, i], i] += src[o, j, i]
  void (*scatter_add)(int device, DType t, const void* src, const int64_t* idx, void* out, int64_t outer, int64_t n_out,
                      int64_t n_idx, int64_t inner);
  // x [n, c, h, w] -> cols [n, c*kh*kw, out_h*out_w], zeros where the window leaves the image
  void (*im2col)(int device, DType t, const void* x, void* cols, const ConvGeometry& g);
  // its adjoint: x[n, c, i, j] = sum of the cols entries im2col read from it (x overwritten)
  void (*col2im)(int device, DType t, const void* cols, void* x, const ConvGeometry& g);
  // Optional (nullptr: the engine multiplies the batch's window matrix itself): the weight
  // gradient of a one-group convolution, dw [o, c*kh*kw] = sum over images of gout[i] [o, L]
  // times im2col(x[i])^T, f32 and f64, all contiguous; and, where db is not null, the bias
  // gradient db [o] = gout summed over images and positions, from the same pass over gout.
  void (*conv2d_weight_grad)(int device, DType t, const void* x, const void* gout, void* dw, void* db,
                             const ConvGeometry& g, int64_t out_channels);
  // Optional (nullptr, or false from _supports, sends the engine to im2col + GEMM): a direct
  // convolution out [n, o, out_h, out_w] = w [o, c, kh, kw] (*) x [n, c, h, w] + bias [o]
  // (bias may be null), all contiguous, one group.
  bool (*conv2d_direct_supports)(DType t, const ConvGeometry& g, int64_t out_channels);
  void (*conv2d_direct)(int device, DType t, const void* x, const void* w, const void* bias, void* out,
                        const ConvGeometry& g, int64_t out_channels);
  // Optional (nullptr sends the engine to layer_norm and affine ops): GroupNorm of contiguous
  // x [n, c, s] in `groups` groups of c / groups channels, y = (x - mean) * rstd * w[c] + b[c]
  // (w, b may be null), writing each group's mean and rstd ([n * groups], f64 whatever t is).
  // silu: y = silu(that), the activation that follows it in a U-Net's blocks, in the same pass.
  void (*group_norm)(int device, DType t, const void* x, const void* w, const void* b, void* y, double* mean,
                     double* rstd, int64_t n, int64_t c, int64_t s, int64_t groups, double eps, bool silu);
  // Its gradients from dy (contiguous like x): dx, and dw, db summed over n and s; any of the
  // three may be null (not needed). Sums run in a fixed order, whatever the thread count. With
  // silu, dy is first multiplied by silu' of the pre-activation, recomputed from x, w and b.
  void (*group_norm_backward)(int device, DType t, const void* dy, const void* x, const double* mean,
                              const double* rstd, const void* w, const void* b, void* dx, void* dw, void* db,
                              int64_t n, int64_t c, int64_t s, int64_t groups, bool silu);
  // Optional (nullptr sends the engine to the row normalisation and affine ops): LayerNorm of
  // contiguous rows x [rows, n], y = (x - mean) * rstd * w + b, where w and b (may be null) are
  // [rows / group, n]: one affine row per `group` consecutive rows. Writes each row's mean and
  // rstd ([rows], f64 whatever t is). f32 and f64.
  void (*layer_norm)(int device, DType t, const void* x, const void* w, const void* b, void* y, double* mean,
                     double* rstd, int64_t rows, int64_t n, int64_t group, double eps);
  // Its gradients from dy (like x): dx, and dw, db [rows / group, n] summed over each group's
  // rows; any of the three may be null (not needed). Sums run in a fixed order, whatever the
  // thread count.
  void (*layer_norm_backward)(int device, DType t, const void* dy, const void* x, const double* mean,
                              const double* rstd, const void* w, void* dx, void* dw, void* db, int64_t rows, int64_t n,
                              int64_t group);
  // Its tangent ty (like x) from tx (like x) and tw, tb (like w); any of the three may be null.
  void (*layer_norm_jvp)(int device, DType t, const void* tx, const void* tw, const void* tb, const void* x,
                         const double* mean, const double* rstd, const void* w, void* ty, int64_t rows, int64_t n,
                         int64_t group);
  // contiguous n elements of element i = philox::sample(...) (or start + step * i for Arange)
  void (*random)(int device, philox::Dist dist, DType t, void* out, int64_t n, uint64_t seed, uint64_t offset, double a,
                 double b);
  void (*arange)(int device, DType t, void* out, int64_t n, double start, double step);
  // Reads an index tensor and reports the first value outside [0, limit), or -1 if none.
  int64_t (*find_out_of_range)(int device, const int64_t* idx, int64_t n, int64_t limit);
  // Fused optimizer updates over n contiguous elements, in place (f32 and f64). The state
  // buffers have n elements too; momentum_buf is unused (may be null) when momentum == 0.
  void (*adam_step)(int device, DType t, void* param, const void* grad, void* exp_avg, void* exp_avg_sq, int64_t n,
                    const AdamStepArgs& a);
  void (*sgd_step)(int device, DType t, void* param, const void* grad, void* momentum_buf, int64_t n,
                   const SgdStepArgs& a);
  // shadow <- lerp(shadow, x, weight) over n contiguous elements (an EMA with decay 1 - weight).
  void (*lerp_)(int device, DType t, void* shadow, const void* x, int64_t n, double weight);
};

const Backend& cpu_backend();
// Null when the CUDA backend was not compiled in.
const Backend* cuda_backend();
// Number of CUDA devices that answer (0 without a GPU or without the CUDA backend).
int cuda_device_count();
// "not built" or the CUDA runtime/driver, cuBLAS and cuDNN versions; and a device's name.
std::string cuda_build_info();
std::string cuda_device_name(int device);

}  // namespace dualflow
