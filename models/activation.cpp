// Activation names and their engine ops.
#include "models/activation.h"

namespace dualflow {

namespace {
constexpr const char* kAccepted = "silu, gelu, gelu_tanh, relu, tanh, identity";
}

ActivationKind parse_activation(const std::string& name) {
  if (name == "silu") return ActivationKind::SiLU;
  if (name == "gelu") return ActivationKind::GELU;
  if (name == "gelu_tanh") return ActivationKind::GELUTanh;
  if (name == "relu") return ActivationKind::ReLU;
  if (name == "tanh") return ActivationKind::Tanh;
  if (name == "identity") return ActivationKind::Identity;
  fail("activation: unknown name '{}', expected one of {}", name, kAccepted);
}

std::string activation_name(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::SiLU: return "silu";
    case ActivationKind::GELU: return "gelu";
    case ActivationKind::GELUTanh: return "gelu_tanh";
    case ActivationKind::ReLU: return "relu";
    case ActivationKind::Tanh: return "tanh";
    case ActivationKind::Identity: return "identity";
  }
  return "?";
}

std::optional<UnaryOp> activation_op(ActivationKind kind) {
  switch (kind) {
    case ActivationKind::SiLU: return UnaryOp::Silu;
    case ActivationKind::GELU: return UnaryOp::GeluErf;
    case ActivationKind::GELUTanh: return UnaryOp::GeluTanh;
    case ActivationKind::ReLU: return UnaryOp::Relu;
    case ActivationKind::Tanh: return UnaryOp::Tanh;
    case ActivationKind::Identity: return std::nullopt;
  }
  return std::nullopt;
}

Tensor activate(ActivationKind kind, const Tensor& x) {
  switch (kind) {
    case ActivationKind::SiLU: return silu(x);
    case ActivationKind::GELU: return gelu(x, GeluApprox::Erf);
    case ActivationKind::GELUTanh: return gelu(x, GeluApprox::Tanh);
    case ActivationKind::ReLU: return relu(x);
    case ActivationKind::Tanh: return tanh(x);
    case ActivationKind::Identity: return x;
  }
  return x;
}

}  // namespace dualflow
