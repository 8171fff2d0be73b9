// Linear layer.
#include "models/linear.h"

#include "models/init.h"

namespace dualflow {

Linear::Linear(int64_t in_features, int64_t out_features, Generator& gen, bool with_bias)
    : UnaryModule("Linear"), in_(in_features), out_(out_features) {
  DF_CHECK(in_features > 0 && out_features > 0, "Linear: sizes must be positive, got in={} out={}", in_features,
           out_features);
  weight = register_parameter("weight", zeros(Shape{out_, in_}));
  init::fan_in_uniform_(weight, in_, gen);
  if (with_bias) {
    bias = register_parameter("bias", zeros(Shape{out_}));
    init::fan_in_uniform_(bias, in_, gen);
  }
}

std::string Linear::describe() const {
  return fmt::format("Linear(in={}, out={}{})", in_, out_, bias.defined() ? "" : ", bias=false");
}

Tensor Linear::forward(const Tensor& x) { return forward_activated(x, std::nullopt); }

Tensor Linear::forward_activated(const Tensor& x, std::optional<UnaryOp> activation) {
  DF_CHECK(x.defined() && x.dim() >= 1, "{}: expected an input [..., {}], got {}", describe(), in_,
           x.defined() ? x.shape().str() : "undefined");
  DF_CHECK(x.shape()[x.dim() - 1] == in_, "{}: input last dim expected {}, got {} (input shape {})", describe(), in_,
           x.shape()[x.dim() - 1], x.shape().str());
  return activation ? linear_activation(x, weight, bias, *activation) : linear(x, weight, bias);
}

Tensor Linear::forward_parts(const std::vector<Tensor>& parts, std::optional<UnaryOp> activation) {
  int64_t features = 0;
  std::vector<std::string> shapes;
  for (const Tensor& p : parts) {
    DF_CHECK(p.defined() && p.dim() >= 1, "{}: expected input parts [..., features], got {}", describe(),
             p.defined() ? p.shape().str() : "undefined");
    features += p.shape()[p.dim() - 1];
    shapes.push_back(p.shape().str());
  }
  DF_CHECK(features == in_, "{}: the input parts' last dims expected to sum to {}, got {} (parts {})", describe(), in_,
           features, fmt::join(shapes, ", "));
  return linear_parts(parts, weight, bias, activation);
}

}  // namespace dualflow
