// Small dense matrices for the closed-form references of the solver and likelihood tests:
// products, the matrix exponential (exact solutions of dx/dt = A x) and the trace.
#pragma once
#include <vector>

#include "engine/dualflow.h"

namespace dualflow::testing {

using Mat = std::vector<std::vector<double>>;

inline Mat mat_mul(const Mat& a, const Mat& b) {
  const size_t n = a.size();
  Mat c(n, std::vector<double>(n, 0.0));
  for (size_t i = 0; i < n; ++i)
    for (size_t k = 0; k < n; ++k)
      for (size_t j = 0; j < n; ++j) c[i][j] += a[i][k] * b[k][j];
  return c;
}

// exp(s·A) by scaling and squaring of a long Taylor series: exact to rounding for small A.
inline Mat expm(const Mat& a, double s) {
  const size_t n = a.size();
  const int squarings = 10;
  const double scale = s / double(1 << squarings);
  Mat result(n, std::vector<double>(n, 0.0)), term(n, std::vector<double>(n, 0.0));
  for (size_t i = 0; i < n; ++i) result[i][i] = term[i][i] = 1.0;
  for (int k = 1; k <= 20; ++k) {
    term = mat_mul(term, a);
    for (auto& row : term)
      for (double& v : row) v *= scale / k;
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j) result[i][j] += term[i][j];
  }
  for (int i = 0; i < squarings; ++i) result = mat_mul(result, result);
  return result;
}

inline Tensor to_tensor(const Mat& m) {
  std::vector<double> v;
  for (const auto& row : m) v.insert(v.end(), row.begin(), row.end());
  return from_vector(v, {int64_t(m.size()), int64_t(m.size())}, DType::f64);
}

inline double trace(const Mat& m) {
  double t = 0;
  for (size_t i = 0; i < m.size(); ++i) t += m[i][i];
  return t;
}

}  // namespace dualflow::testing
