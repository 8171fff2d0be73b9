// LayerNorm and RMSNorm modules over the fused engine ops.
#include "models/norms.h"

namespace dualflow {

namespace {
void check_last_dim(const std::string& who, const Tensor& x, int64_t dim) {
  DF_CHECK(x.defined() && x.dim() >= 1, "{}: expected an input [..., {}], got {}", who, dim,
           x.defined() ? x.shape().str() : "undefined");
  DF_CHECK(x.shape()[x.dim() - 1] == dim, "{}: input last dim expected {}, got {} (input shape {})", who, dim,
           x.shape()[x.dim() - 1], x.shape().str());
}
}  // namespace

LayerNorm::LayerNorm(int64_t dim, double eps, bool affine) : UnaryModule("LayerNorm"), dim_(dim), eps_(eps) {
  DF_CHECK(dim > 0, "LayerNorm: dim must be positive, got {}", dim);
  if (affine) {
    weight = register_parameter("weight", ones(Shape{dim}));
    bias = register_parameter("bias", zeros(Shape{dim}));
  }
}

std::string LayerNorm::describe() const {
  return fmt::format("LayerNorm(dim={}, eps={}{})", dim_, eps_, weight.defined() ? "" : ", affine=false");
}

Tensor LayerNorm::forward(const Tensor& x) {
  check_last_dim(describe(), x, dim_);
  return layer_norm(x, dim_, weight, bias, eps_);
}

Tensor LayerNorm::forward_modulated(const Tensor& x, const Tensor& shift, const Tensor& scale) {
  check_last_dim(describe(), x, dim_);
  const int64_t n = x.shape()[0];
  DF_CHECK(x.dim() >= 2 && shift.defined() && scale.defined() && shift.shape() == Shape({n, dim_}) &&
               scale.shape() == shift.shape(),
           "{}: modulation expects x [N, ..., {}] with shift and scale [N, {}], got x {}, shift {}, scale {}",
           describe(), dim_, dim_, x.shape().str(), shift.defined() ? shift.shape().str() : "undefined",
           scale.defined() ? scale.shape().str() : "undefined");
  // [N, dim] -> [N, 1, ..., 1, dim]: one affine row per sample, which layer_norm fuses.
  Shape per_sample(std::vector<int64_t>(size_t(x.dim()), 1));
  per_sample[0] = n;
  per_sample[size_t(x.dim() - 1)] = dim_;
  Tensor gain = scale.reshape(per_sample) + 1.0, offset = shift.reshape(per_sample);
  // (xhat * w + b) * gain + offset = xhat * (w * gain) + (b * gain + offset)
  if (weight.defined()) gain = weight * gain;
  if (bias.defined()) offset = bias * (scale.reshape(per_sample) + 1.0) + offset;
  return layer_norm(x, dim_, gain, offset, eps_);
}

RMSNorm::RMSNorm(int64_t dim, double eps, bool affine) : UnaryModule("RMSNorm"), dim_(dim), eps_(eps) {
  DF_CHECK(dim > 0, "RMSNorm: dim must be positive, got {}", dim);
  if (affine) weight = register_parameter("weight", ones(Shape{dim}));
}

std::string RMSNorm::describe() const {
  return fmt::format("RMSNorm(dim={}, eps={}{})", dim_, eps_, weight.defined() ? "" : ", affine=false");
}

Tensor RMSNorm::forward(const Tensor& x) {
  check_last_dim(describe(), x, dim_);
  return rms_norm(x, dim_, weight, eps_);
}

}  // namespace dualflow
