// MLP as a Sequential of Linear and Activation modules.
#include "models/mlp.h"

namespace dualflow {

MLP::MLP(const std::vector<int64_t>& widths, const std::string& activation, Generator& gen)
    : Sequential("MLP"), widths_(widths), activation_(activation) {
  DF_CHECK(widths.size() >= 2, "MLP: widths must list at least an input and an output size, got {}", widths.size());
  ActivationKind kind = parse_activation(activation);
  activation_op_ = activation_op(kind);
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    if (i > 0) push_back(std::make_shared<Activation>(kind));
    linears_.push_back(push_back(std::make_shared<Linear>(widths[i], widths[i + 1], gen)));
  }
}

std::string MLP::describe() const { return fmt::format("MLP(widths=[{}], {})", fmt::join(widths_, ","), activation_); }

Tensor MLP::forward(const Tensor& x) {
  DF_CHECK(x.defined() && x.dim() >= 1 && x.shape()[x.dim() - 1] == widths_.front(),
           "{}: input last dim expected {}, got shape {}", describe(), widths_.front(),
           x.defined() ? x.shape().str() : "undefined");
  // The Sequential's Linear and Activation modules, each hidden Linear with its activation as
  // one op: the GEMM applies it as it stores the layer's output.
  return forward_from(x, 0);
}

Tensor MLP::forward_parts(const std::vector<Tensor>& parts) {
  DF_CHECK(!parts.empty(), "{}: expected at least one input part, got none", describe());
  if (parts.size() == 1) return forward(parts[0]);
  const Tensor h = linears_[0]->forward_parts(parts, linears_.size() > 1 ? activation_op_ : std::nullopt);
  return forward_from(h, 1);
}

Tensor MLP::forward_from(const Tensor& x, size_t first) {
  Tensor h = x;
  for (size_t i = first; i < linears_.size(); ++i)
    h = i + 1 < linears_.size() ? linears_[i]->forward_activated(h, activation_op_) : linears_[i]->forward(h);
  return h;
}

}  // namespace dualflow
