// Gaussian statistics of feature sets and their Fréchet distance (see frechet.h).
#include "train/frechet.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <vector>

#include "engine/dualflow.h"

// LAPACK from OpenBLAS (Debian's libopenblas carries the LAPACK symbols). The trailing size_t
// arguments are the hidden lengths of the Fortran character arguments.
extern "C" void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
                        double* work, const int* lwork, int* iwork, const int* liwork, int* info, size_t jobz_len,
                        size_t uplo_len);

namespace dualflow {
namespace {

Tensor cpu_f64(const Tensor& x) { return x.detach().to(Device::cpu()).to(DType::f64).contiguous(); }

void check_square(const Tensor& s, const char* who) {
  DF_CHECK(s.defined() && s.dim() == 2 && s.size(0) == s.size(1), "{}: expected a square matrix [D, D], given {}", who,
           s.defined() ? s.shape().str() : std::string("undefined"));
  DF_CHECK(s.size(0) >= 1 && s.size(0) < INT_MAX / 4, "{}: matrix size {} is out of LAPACK's range", who, s.size(0));
}

double trace(const Tensor& s) {
  const int64_t d = s.size(0);
  const double* p = s.data<double>();
  double t = 0;
  for (int64_t i = 0; i < d; ++i) t += p[i * d + i];
  return t;
}

void check_stats(const GaussianStats& s, const char* which) {
  DF_CHECK(s.mean.defined() && s.cov.defined() && s.mean.dim() == 1 && s.cov.dim() == 2 &&
               s.cov.size(0) == s.mean.size(0) && s.cov.size(1) == s.mean.size(0),
           "frechet_distance: statistics {} expected mean [D] and cov [D, D], given {} and {}", which,
           s.mean.defined() ? s.mean.shape().str() : std::string("undefined"),
           s.cov.defined() ? s.cov.shape().str() : std::string("undefined"));
}

}  // namespace

GaussianStats gaussian_stats(const Tensor& features) {
  DF_CHECK(features.defined() && features.dim() == 2 && features.size(0) >= 2 && features.size(1) >= 1,
           "gaussian_stats: expected features [N, D] with N >= 2 and D >= 1, given {}",
           features.defined() ? features.shape().str() : std::string("undefined"));
  NoGradGuard ng;
  Tensor x = cpu_f64(features);
  {
    const double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i)
      DF_CHECK(std::isfinite(p[i]), "gaussian_stats: features {} hold a non-finite value ({}) at row {}, column {}",
               features.shape().str(), p[i], i / x.size(1), i % x.size(1));
  }
  const int64_t n = x.size(0);
  GaussianStats s;
  s.count = n;
  s.mean = mean(x, {0});
  Tensor centred = x - s.mean;
  Tensor cov = matmul(centred.t(), centred) * (1.0 / double(n - 1));
  // GEMM need not give an exactly symmetric result; the eigensolver reads one triangle only,
  // and symmetric input makes FD(a, b) and FD(b, a) agree to rounding.
  s.cov = ((cov + cov.t()) * 0.5).contiguous();
  return s;
}

SymmetricEigen symmetric_eigen(const Tensor& symmetric) {
  check_square(symmetric, "symmetric_eigen");
  Tensor a = cpu_f64(symmetric).clone();  // dsyevd overwrites its input with the eigenvectors
  const int n = int(a.size(0));
  Tensor w = Tensor::empty({int64_t(n)}, DType::f64);
  const char jobz = 'V', uplo = 'U';  // row-major lower triangle = column-major upper triangle
  int info = 0, lwork = -1, liwork = -1, iwork_query = 0;
  double work_query = 0;
  dsyevd_(&jobz, &uplo, &n, a.data<double>(), &n, w.data<double>(), &work_query, &lwork, &iwork_query, &liwork, &info,
          1, 1);
  DF_CHECK(info == 0, "symmetric_eigen: LAPACK dsyevd workspace query failed (info {}) for a [{}, {}] matrix", info, n,
           n);
  lwork = std::max(1, int(work_query));
  liwork = std::max(1, iwork_query);
  std::vector<double> work(static_cast<size_t>(lwork));
  std::vector<int> iwork(static_cast<size_t>(liwork));
  dsyevd_(&jobz, &uplo, &n, a.data<double>(), &n, w.data<double>(), work.data(), &lwork, iwork.data(), &liwork, &info,
          1, 1);
  DF_CHECK(info == 0, "symmetric_eigen: LAPACK dsyevd failed (info {}) on a [{}, {}] matrix: {}", info, n, n,
           info < 0 ? "an argument was illegal" : "the eigenvalues did not converge (non-finite entries?)");
  // Column-major eigenvectors read row-major are the rows; transpose them into columns.
  return {w, a.t().contiguous()};
}

Tensor psd_sqrt(const Tensor& symmetric) {
  NoGradGuard ng;
  SymmetricEigen e = symmetric_eigen(symmetric);
  Tensor root = sqrt(clamp(e.values, 0.0, std::numeric_limits<double>::infinity()));
  Tensor r = matmul(e.vectors * root, e.vectors.t());
  return ((r + r.t()) * 0.5).contiguous();
}

double frechet_distance(const GaussianStats& a, const GaussianStats& b) {
  check_stats(a, "a");
  check_stats(b, "b");
  DF_CHECK(a.dim() == b.dim(), "frechet_distance: the statistics have {} and {} dims", a.dim(), b.dim());
  NoGradGuard ng;
  Tensor mu_a = cpu_f64(a.mean), mu_b = cpu_f64(b.mean), sa = cpu_f64(a.cov), sb = cpu_f64(b.cov);
  const double mean_term = sum(square(mu_a - mu_b)).item();
  // tr((Sa^1/2 Sb Sa^1/2)^1/2): the middle matrix is symmetric PSD, so its eigenvalues are real
  // and >= 0 up to rounding, and the trace of its root is the sum of their roots.
  Tensor root_a = psd_sqrt(sa);
  Tensor middle = matmul(matmul(root_a, sb), root_a);
  middle = ((middle + middle.t()) * 0.5).contiguous();
  const std::vector<double> eig = symmetric_eigen(middle).values.to_vector<double>();
  double trace_root = 0;
  for (double v : eig) trace_root += std::sqrt(std::max(v, 0.0));
  const double fd = mean_term + trace(sa) + trace(sb) - 2 * trace_root;
  return std::max(fd, 0.0);
}

}  // namespace dualflow
