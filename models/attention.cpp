// Multi-head self-attention.
#include "models/attention.h"

namespace dualflow {

MultiheadSelfAttention::MultiheadSelfAttention(int64_t dim, int64_t heads, Generator& gen, bool qkv_bias)
    : UnaryModule("MultiheadSelfAttention"), dim_(dim), heads_(heads) {
  DF_CHECK(dim > 0 && heads > 0 && dim % heads == 0,
           "MultiheadSelfAttention: dim must be a positive multiple of heads, got dim={} heads={}", dim, heads);
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim, gen, qkv_bias));
  proj = register_module("proj", std::make_shared<Linear>(dim, dim, gen));
}

std::string MultiheadSelfAttention::describe() const {
  return fmt::format("MultiheadSelfAttention(dim={}, heads={})", dim_, heads_);
}

Tensor MultiheadSelfAttention::forward(const Tensor& x) {
  DF_CHECK(x.defined() && x.dim() == 3, "{}: expected an input [N, L, {}], got {}", describe(), dim_,
           x.defined() ? x.shape().str() : "undefined");
  DF_CHECK(x.shape()[2] == dim_, "{}: input last dim expected {}, got {} (input shape {})", describe(), dim_,
           x.shape()[2], x.shape().str());
  const int64_t n = x.shape()[0], l = x.shape()[1], head_dim = dim_ / heads_;
  // q, k and v each from its rows of the qkv weight, [N, L, D] viewed as [N, heads, L, head_dim]
  // (matmul reads the view in place). Slicing the [3 D, D] weight rather than the [N, L, 3 D]
  // output keeps the backward's zero-fill-and-copy of each slice on the weight's size.
  auto heads_of = [&](int64_t part) {
    const Tensor bias = qkv->bias.defined() ? qkv->bias.narrow(0, part * dim_, dim_) : Tensor();
    return linear(x, qkv->weight.narrow(0, part * dim_, dim_), bias)
        .reshape(Shape{n, l, heads_, head_dim})
        .permute({0, 2, 1, 3});
  };
  Tensor out = scaled_dot_product_attention(heads_of(0), heads_of(1), heads_of(2));
  // [N, heads, L, head_dim] -> [N, L, D]
  return proj->forward(out.transpose(1, 2).reshape(Shape{n, l, dim_}));
}

}  // namespace dualflow
