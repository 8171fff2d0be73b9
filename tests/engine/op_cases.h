// The op-test harness's declarations: every differentiable op is declared once here as a case
// (input shapes and value ranges, and the function under test); tests/engine/test_ops.cpp
// derives finite-difference, dual-mode, second-order and CUDA-parity checks from each case.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "engine/dualflow.h"

namespace dualflow::testing {

struct InputSpec {
  Shape shape;
  double lo = -2.0, hi = 2.0;
};

struct OpCase {
  std::string name;
  std::vector<InputSpec> inputs;
  std::function<Tensor(const std::vector<Tensor>&)> f;
  // Ops whose f'' is a sum of Dirac terms (relu, abs, max...) skip the second-order FD check.
  bool smooth = true;
};

std::vector<OpCase> all_op_cases();

}  // namespace dualflow::testing
