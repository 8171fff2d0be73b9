// Multi-head self-attention over token sequences [N, L, D]: one qkv Linear (its weight read in
// three row blocks), heads split, softmax(q k^T / sqrt(D/heads)) v per head, an output Linear
// "proj" (names as in DiT/timm).
#pragma once
#include "models/linear.h"

namespace dualflow {

class MultiheadSelfAttention : public UnaryModule {
 public:
  MultiheadSelfAttention(int64_t dim, int64_t heads, Generator& gen, bool qkv_bias = true);
  std::string describe() const override;
  // x [N, L, dim] -> [N, L, dim]
  Tensor forward(const Tensor& x) override;
  int64_t dim() const { return dim_; }
  int64_t heads() const { return heads_; }
  std::shared_ptr<Linear> qkv, proj;

 private:
  int64_t dim_, heads_;
};

}  // namespace dualflow
