// Linear: y = x W^T + b over the last dim, weight [out, in] as in PyTorch.
#pragma once
#include <optional>
#include <vector>

#include "models/module.h"

namespace dualflow {

class Linear : public UnaryModule {
 public:
  // PyTorch's default initialisation: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)).
  Linear(int64_t in_features, int64_t out_features, Generator& gen, bool bias = true);
  std::string describe() const override;
  // x [..., in] -> [..., out]
  Tensor forward(const Tensor& x) override;
  // activation(forward(x)) as one op (linear_activation): the GEMM applies the activation as it
  // stores the output. Without an activation, forward(x).
  Tensor forward_activated(const Tensor& x, std::optional<UnaryOp> activation);
  // forward_activated(cat(parts, -1), activation) as one op (linear_parts): the same values and
  // gradients, and a tangent that multiplies only the parts that have one.
  Tensor forward_parts(const std::vector<Tensor>& parts, std::optional<UnaryOp> activation);

  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  Tensor weight;
  Tensor bias;  // undefined without bias

 private:
  int64_t in_, out_;
};

}  // namespace dualflow
