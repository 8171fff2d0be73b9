// Activations chosen by name ("silu", "gelu", "gelu_tanh", "relu", "tanh", "identity"), as a
// function and as a parameter-free module that can sit in a Sequential.
#pragma once
#include <optional>
#include <string>

#include "models/module.h"

namespace dualflow {

enum class ActivationKind { SiLU, GELU, GELUTanh, ReLU, Tanh, Identity };

// Refuses unknown names, listing the accepted ones.
ActivationKind parse_activation(const std::string& name);
std::string activation_name(ActivationKind kind);
Tensor activate(ActivationKind kind, const Tensor& x);
// The engine's unary op of an activation (none for identity): what Linear::forward_activated
// hands to the GEMM.
std::optional<UnaryOp> activation_op(ActivationKind kind);

class Activation : public UnaryModule {
 public:
  explicit Activation(ActivationKind kind) : UnaryModule("Activation"), kind_(kind) {}
  explicit Activation(const std::string& name) : Activation(parse_activation(name)) {}
  ActivationKind kind() const { return kind_; }
  std::string describe() const override { return "Activation(" + activation_name(kind_) + ")"; }
  Tensor forward(const Tensor& x) override { return activate(kind_, x); }

 private:
  ActivationKind kind_;
};

}  // namespace dualflow
