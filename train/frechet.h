// The Fréchet distance between two feature sets, each summarised by a Gaussian (mean and
// covariance), as FID does with Inception features and as `dualflow eval` does with the
// Fashion-MNIST classifier's penultimate features:
//   FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^{1/2} S_b S_a^{1/2})^{1/2}).
// Everything is f64 on the CPU; the matrix square roots come from LAPACK's symmetric
// eigensolver (dsyevd, in OpenBLAS), so no non-symmetric sqrtm and no complex parts arise.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace dualflow {

struct GaussianStats {
  Tensor mean;        // f64 [D], on the CPU
  Tensor cov;         // f64 [D, D], unbiased (divides by N - 1), exactly symmetric
  int64_t count = 0;  // the N the statistics were taken over
  int64_t dim() const { return mean.defined() ? mean.size(0) : 0; }
};

// Mean and covariance of the rows of `features` [N, D] (any floating dtype and device; N >= 2),
// accumulated in f64 with the mean subtracted first. Refuses non-finite features, naming them.
GaussianStats gaussian_stats(const Tensor& features);

// The Fréchet distance between N(a.mean, a.cov) and N(b.mean, b.cov). Eigenvalues that rounding
// leaves slightly negative are taken as 0, and so is a result below 0 (identical sets).
// Symmetric in a and b up to rounding.
double frechet_distance(const GaussianStats& a, const GaussianStats& b);

// The symmetric eigendecomposition S = V diag(values) V^T of an f64 [D, D] symmetric matrix
// (only its lower triangle is read): values ascending, eigenvectors in the columns of V.
struct SymmetricEigen {
  Tensor values;   // f64 [D]
  Tensor vectors;  // f64 [D, D]
};
SymmetricEigen symmetric_eigen(const Tensor& symmetric);

// The symmetric positive semi-definite square root V diag(sqrt(max(values, 0))) V^T.
Tensor psd_sqrt(const Tensor& symmetric);

}  // namespace dualflow
