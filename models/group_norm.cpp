// GroupNorm module.
#include "models/group_norm.h"

namespace dualflow {

GroupNorm::GroupNorm(int64_t groups, int64_t channels, double eps, bool affine)
    : UnaryModule("GroupNorm"), groups_(groups), channels_(channels), eps_(eps) {
  DF_CHECK(groups > 0 && channels > 0 && channels % groups == 0,
           "GroupNorm: channels must be a positive multiple of groups, got groups={} channels={}", groups, channels);
  if (affine) {
    weight = register_parameter("weight", ones(Shape{channels}));
    bias = register_parameter("bias", zeros(Shape{channels}));
  }
}

std::string GroupNorm::describe() const {
  return fmt::format("GroupNorm(groups={}, channels={}{})", groups_, channels_,
                     weight.defined() ? "" : ", affine=false");
}

void GroupNorm::check_input(const Tensor& x) const {
  DF_CHECK(x.defined() && x.dim() >= 2, "{}: expected an input [N, {}, ...], got {}", describe(), channels_,
           x.defined() ? x.shape().str() : "undefined");
  DF_CHECK(x.shape()[1] == channels_, "{}: input channels expected {}, got {} (input shape {})", describe(), channels_,
           x.shape()[1], x.shape().str());
}

Tensor GroupNorm::forward(const Tensor& x) {
  check_input(x);
  return group_norm(x, groups_, weight, bias, eps_);
}

Tensor GroupNorm::forward_silu(const Tensor& x) {
  check_input(x);
  return group_norm_silu(x, groups_, weight, bias, eps_);
}

}  // namespace dualflow
