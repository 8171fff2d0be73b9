// Helpers shared by the engine tests: deterministic inputs and closeness checks.
#pragma once
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <vector>

#include "engine/dualflow.h"
#include "engine/threads.h"

namespace dualflow::testing {

// Uniform values in [lo, hi) from a fixed seed, in f64 on the CPU.
inline Tensor uniform_f64(const Shape& s, double lo, double hi, uint64_t seed) {
  Generator g(seed);
  return uniform(s, lo, hi, g, DType::f64);
}

inline double max_abs_diff(const Tensor& a, const Tensor& b) {
  auto x = a.to_vector<double>(), y = b.to_vector<double>();
  REQUIRE(x.size() == y.size());
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

inline double max_abs(const Tensor& a) {
  double m = 0;
  for (double v : a.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

// |a - b| <= atol + rtol * |b| elementwise.
inline void require_close(const Tensor& a, const Tensor& b, double rtol, double atol, const std::string& what) {
  INFO(what);
  REQUIRE(a.shape() == b.shape());
  auto x = a.to_vector<double>(), y = b.to_vector<double>();
  for (size_t i = 0; i < x.size(); ++i) {
    INFO("element " << i << ": " << x[i] << " vs " << y[i]);
    REQUIRE(std::abs(x[i] - y[i]) <= atol + rtol * std::abs(y[i]));
  }
}

inline double dot(const Tensor& a, const Tensor& b) { return sum(a * b).item(); }

// `run` (an op's output and gradients) gives the same bits on 1 and on 4 CPU threads.
inline void require_same_bits_at_any_thread_count(const std::function<std::vector<Tensor>()>& run) {
  const int threads = cpu_threads();
  set_cpu_threads(1);
  const std::vector<Tensor> one = run();
  set_cpu_threads(4);
  const std::vector<Tensor> four = run();
  set_cpu_threads(threads);
  REQUIRE(one.size() == four.size());
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("result " << i);
    CHECK(max_abs_diff(one[i], four[i]) == 0.0);
  }
}

}  // namespace dualflow::testing
