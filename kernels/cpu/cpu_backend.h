// Internal to kernels/cpu: each file of the CPU backend registers its kernels into the table.
#pragma once
#include "kernels/common/backend.h"

namespace dualflow::cpu {
void register_elementwise(Backend& b);
void register_reduce(Backend& b);
void register_rowwise(Backend& b);
void register_gemm(Backend& b);
void register_indexing(Backend& b);
void register_conv(Backend& b);
void register_conv_direct(Backend& b);
// The 3x3 weight gradient of conv_direct.cpp's geometries without a window matrix (AVX-512
// builds); false, writing nothing, for anything else, which conv.cpp then computes itself.
bool conv2d_direct_weight_grad(DType t, const void* x, const void* gout, void* dw, void* db, const ConvGeometry& g,
                               int64_t out_channels);
// F(4x4, 3x3) Winograd for conv_direct.cpp's geometries with at least 16 channels on each side
// (AVX-512 builds; conv_winograd.cpp); conv2d_direct takes it where supported.
bool conv2d_winograd_supports(DType t, const ConvGeometry& g, int64_t out_channels);
void conv2d_winograd(const float* x, const float* w, const float* bias, float* out, const ConvGeometry& g,
                     int64_t out_channels);
// Its weight gradient, and the bias gradient (summed in f64, as conv.cpp does) where db is set.
void conv2d_winograd_weight_grad(const float* x, const float* gout, float* dw, float* db, const ConvGeometry& g,
                                 int64_t out_channels);
void register_group_norm(Backend& b);
void register_layer_norm(Backend& b);
void register_random(Backend& b);
void register_optim(Backend& b);
}  // namespace dualflow::cpu
