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
