// Helpers of the models tests: end-to-end derivative checks of a module in f64 — the VJP
// against central finite differences (sampled entries of every input and parameter), the JVP
// with respect to inputs and parameters together against a finite difference along the same
// direction, and the adjoint identity <w, J v> = <J^T w, v>.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "models/module.h"
#include "tests/engine/test_util.h"

namespace dualflow::testing {

struct DerivativeCheck {
  double eps = 1e-6;
  double rtol = 1e-5;
  double atol = 1e-7;
  int entries_per_tensor = 4;  // sampled finite-difference entries per input / parameter
  uint64_t seed = 1234;
};

// `f(inputs)` evaluates the module at the given inputs (its parameters taken from the module).
// Inputs and parameters must be contiguous f64 on the CPU.
inline void check_module_derivatives(Module& module, const std::vector<std::pair<std::string, Tensor>>& inputs,
                                     const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     const DerivativeCheck& opt = {}) {
  NamedTensors params = module.named_parameters();
  std::vector<std::string> names;
  std::vector<Tensor> vars;  // inputs, then parameters
  for (const auto& [n, t] : inputs) {
    names.push_back("input " + n);
    vars.push_back(t);
  }
  for (const auto& [n, t] : params) {
    names.push_back(n);
    vars.push_back(t);
  }
  const size_t num_inputs = inputs.size();
  for (size_t k = 0; k < vars.size(); ++k) {
    INFO(names[k]);
    REQUIRE(vars[k].dtype() == DType::f64);
    REQUIRE(vars[k].is_contiguous());
  }
  std::vector<Tensor> input_values;
  for (size_t k = 0; k < num_inputs; ++k) input_values.push_back(vars[k]);
  auto evaluate = [&]() {
    NoGradGuard ng;
    return f(input_values);
  };
  Generator gen(opt.seed);
  const Tensor y0 = evaluate();
  const Tensor w = uniform(y0.shape(), -1, 1, gen, DType::f64);

  // Reverse mode: gradients of <w, f> with respect to every input and parameter.
  std::vector<Tensor> leaves;
  for (size_t k = 0; k < vars.size(); ++k) {
    Tensor leaf = k < num_inputs ? vars[k].detach() : vars[k];
    if (k < num_inputs) leaf.set_requires_grad(true);
    leaves.push_back(leaf);
  }
  std::vector<Tensor> leaf_inputs(leaves.begin(), leaves.begin() + long(num_inputs));
  Tensor y = f(leaf_inputs);
  REQUIRE(y.shape() == y0.shape());
  std::vector<Tensor> grads = grad({sum(y * w)}, leaves);

  // ... against central differences at sampled entries of each tensor.
  for (size_t k = 0; k < vars.size(); ++k) {
    const Tensor& v = vars[k];
    double* data = v.data<double>();
    const int64_t n = v.numel();
    std::vector<int64_t> picks;
    if (n <= opt.entries_per_tensor) {
      for (int64_t i = 0; i < n; ++i) picks.push_back(i);
    } else {
      Tensor r = randint(0, n, Shape{opt.entries_per_tensor}, gen);
      picks = r.to_vector<int64_t>();
    }
    std::vector<double> g = grads[k].to_vector<double>();
    for (int64_t i : picks) {
      const double keep = data[i];
      data[i] = keep + opt.eps;
      const double plus = dot(w, evaluate());
      data[i] = keep - opt.eps;
      const double minus = dot(w, evaluate());
      data[i] = keep;
      const double fd = (plus - minus) / (2 * opt.eps);
      INFO("VJP of " << names[k] << " at element " << i << ": autodiff " << g[size_t(i)] << ", finite differences "
                     << fd);
      REQUIRE(std::abs(g[size_t(i)] - fd) <= opt.atol + opt.rtol * std::abs(fd));
    }
  }

  // Forward mode along one random direction of all inputs and parameters at once.
  std::vector<Tensor> tangents;
  for (const Tensor& v : vars) tangents.push_back(uniform(v.shape(), -1, 1, gen, DType::f64));
  JvpResult jv = jvp(
      [&](const std::vector<Tensor>& a) {
        NamedTensors replaced;
        for (size_t j = 0; j < params.size(); ++j) replaced.emplace_back(params[j].first, a[num_inputs + j]);
        ScopedParameters scope(module, replaced);
        return std::vector<Tensor>{f(std::vector<Tensor>(a.begin(), a.begin() + long(num_inputs)))};
      },
      vars, tangents);
  require_close(jv.outputs[0], y0, 1e-12, 1e-12, "jvp's primal output equals the plain forward");
  auto shift_all = [&](double s) {
    for (size_t k = 0; k < vars.size(); ++k) {
      double* d = vars[k].data<double>();
      std::vector<double> t = tangents[k].to_vector<double>();
      for (size_t i = 0; i < t.size(); ++i) d[i] += s * t[i];
    }
  };
  // Snapshot to restore exactly (adding and subtracting would leave rounding behind).
  std::vector<Tensor> saved;
  for (const Tensor& v : vars) saved.push_back(v.clone());
  shift_all(opt.eps);
  Tensor plus = evaluate();
  shift_all(-2 * opt.eps);
  Tensor minus = evaluate();
  {
    NoGradGuard ng;
    for (size_t k = 0; k < vars.size(); ++k) copy_(vars[k], saved[k]);
  }
  Tensor fd = (plus - minus) * (1.0 / (2 * opt.eps));
  require_close(jv.tangents[0], fd, opt.rtol, opt.atol + 1e-6 * max_abs(fd),
                "JVP (inputs and parameters) vs finite differences");

  // <w, J v> = <J^T w, v>
  double lhs = dot(w, jv.tangents[0]), rhs = 0;
  for (size_t k = 0; k < vars.size(); ++k) rhs += dot(grads[k], tangents[k]);
  INFO("<w, Jv> = " << lhs << ", <J^T w, v> = " << rhs);
  REQUIRE(std::abs(lhs - rhs) <= 1e-10 * (1 + std::abs(lhs)));
}

}  // namespace dualflow::testing
