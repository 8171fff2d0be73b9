// MLP: Linear layers through a list of widths with an activation between them (none after
// the last), numbered like a torch.nn.Sequential: "0.weight", "2.weight", ...
#pragma once
#include <string>
#include <vector>

#include "models/activation.h"
#include "models/linear.h"

namespace dualflow {

class MLP : public Sequential {
 public:
  // widths = {in, hidden..., out} (at least two); activation by name (silu|gelu|gelu_tanh|relu|tanh).
  MLP(const std::vector<int64_t>& widths, const std::string& activation, Generator& gen);
  std::string describe() const override;
  const std::vector<int64_t>& widths() const { return widths_; }
  // The Linear layers in order (the activations sit between them).
  const std::vector<std::shared_ptr<Linear>>& linears() const { return linears_; }
  Tensor forward(const Tensor& x) override;
  // forward(cat(parts, -1)) with the first layer over the parts (Linear::forward_parts): the
  // same values and gradients, and tangents that multiply only the parts that have one.
  Tensor forward_parts(const std::vector<Tensor>& parts);

 private:
  // Layers first.. on x, the layer before having run.
  Tensor forward_from(const Tensor& x, size_t first);
  std::vector<int64_t> widths_;
  std::string activation_;
  std::optional<UnaryOp> activation_op_;  // what each hidden Linear's GEMM applies
  std::vector<std::shared_ptr<Linear>> linears_;
};

}  // namespace dualflow
