// The Fréchet distance of feature sets against closed forms: identical sets, diagonal and
// jointly rotated (commuting) covariances, the 2x2 non-commuting formula, symmetry, and the
// estimate from samples of two known Gaussians; Gaussian statistics and the eigensolver.
#include <catch2/catch.hpp>

#include <cmath>

#include "engine/dualflow.h"
#include "tests/engine/test_util.h"
#include "train/frechet.h"

namespace dualflow::testing {
namespace {

using Catch::Matchers::Contains;

GaussianStats stats_of(const std::vector<double>& mean, const Tensor& cov) {
  const int64_t d = int64_t(mean.size());
  return GaussianStats{from_vector(mean, {d}, DType::f64), cov.to(DType::f64).contiguous(), 100};
}

Tensor diag(const std::vector<double>& v) {
  const int64_t d = int64_t(v.size());
  std::vector<double> m(size_t(d * d), 0.0);
  for (int64_t i = 0; i < d; ++i) m[size_t(i * d + i)] = v[size_t(i)];
  return from_vector(m, {d, d}, DType::f64);
}

// A random orthogonal matrix: the eigenvectors of a random symmetric one.
Tensor random_rotation(int64_t d, uint64_t seed) {
  Tensor a = uniform_f64({d, d}, -1, 1, seed);
  return symmetric_eigen(a + a.t()).vectors;
}

// sum (mu_a - mu_b)^2 + sum (sqrt(a_i) - sqrt(b_i))^2: FD of Gaussians whose covariances share
// their eigenvectors, with eigenvalues a and b.
double commuting_fd(const std::vector<double>& mu_a, const std::vector<double>& mu_b, const std::vector<double>& a,
                    const std::vector<double>& b) {
  double fd = 0;
  for (size_t i = 0; i < mu_a.size(); ++i) fd += (mu_a[i] - mu_b[i]) * (mu_a[i] - mu_b[i]);
  for (size_t i = 0; i < a.size(); ++i) fd += (std::sqrt(a[i]) - std::sqrt(b[i])) * (std::sqrt(a[i]) - std::sqrt(b[i]));
  return fd;
}

}  // namespace

TEST_CASE("gaussian_stats: mean and unbiased covariance in f64", "[frechet]") {
  // Rows (1, 2), (3, 0), (5, 4): mean (3, 2); deviations (-2, 0), (0, -2), (2, 2).
  Tensor x = from_vector(std::vector<float>{1, 2, 3, 0, 5, 4}, {3, 2});
  GaussianStats s = gaussian_stats(x);
  REQUIRE(s.count == 3);
  REQUIRE(s.dim() == 2);
  REQUIRE(s.mean.dtype() == DType::f64);
  require_close(s.mean, from_vector(std::vector<double>{3, 2}, {2}, DType::f64), 0, 1e-12, "mean");
  require_close(s.cov, from_vector(std::vector<double>{4, 2, 2, 4}, {2, 2}, DType::f64), 0, 1e-12, "cov / (N - 1)");

  // A large common offset does not cost precision (the mean is subtracted before the products).
  GaussianStats shifted = gaussian_stats(from_vector(std::vector<double>{1, 2, 3, 0, 5, 4}, {3, 2}, DType::f64) + 1e8);
  require_close(shifted.cov, s.cov, 0, 1e-6, "cov of shifted rows");

  REQUIRE_THROWS_WITH(gaussian_stats(zeros({1, 4})), Contains("N >= 2"));
  REQUIRE_THROWS_WITH(gaussian_stats(zeros({4})), Contains("expected features [N, D]"));
  Tensor bad = zeros({3, 2});
  bad.data<float>()[3] = NAN;
  REQUIRE_THROWS_WITH(gaussian_stats(bad), Contains("non-finite") && Contains("row 1, column 1"));
}

TEST_CASE("symmetric_eigen and psd_sqrt reconstruct their matrix", "[frechet]") {
  Tensor a = uniform_f64({6, 6}, -1, 1, 3);
  Tensor s = matmul(a, a.t()) + eye(6, DType::f64) * 0.1;
  SymmetricEigen e = symmetric_eigen(s);
  auto values = e.values.to_vector<double>();
  for (size_t i = 1; i < values.size(); ++i) REQUIRE(values[i - 1] <= values[i]);
  require_close(matmul(e.vectors * e.values, e.vectors.t()), s, 0, 1e-10, "V diag(w) V^T");
  require_close(matmul(e.vectors.t(), e.vectors), eye(6, DType::f64), 0, 1e-10, "V^T V");
  Tensor r = psd_sqrt(s);
  require_close(matmul(r, r), s, 0, 1e-10, "sqrt(S)^2");
  require_close(r, r.t(), 0, 0, "sqrt(S) is symmetric");
  // A rank-deficient matrix: rounding may leave tiny negative eigenvalues, which count as 0.
  Tensor low = matmul(a.narrow(1, 0, 2), a.narrow(1, 0, 2).t());
  Tensor rl = psd_sqrt(low);
  require_close(matmul(rl, rl), low, 0, 1e-7, "sqrt of a rank-2 matrix");
  REQUIRE_THROWS_WITH(symmetric_eigen(zeros({2, 3}, DType::f64)), Contains("square matrix"));
}

TEST_CASE("frechet_distance of identical sets is ~0", "[frechet]") {
  Generator gen(11);
  Tensor x = randn({500, 16}, gen) * 2.0 + 1.0;
  GaussianStats s = gaussian_stats(x);
  const double fd = frechet_distance(s, s);
  REQUIRE(fd >= 0);
  REQUIRE(fd < 1e-8);
  // Rank-deficient covariance (fewer samples than dims) still gives ~0.
  GaussianStats few = gaussian_stats(randn({8, 32}, gen));
  REQUIRE(frechet_distance(few, few) < 1e-6);
}

TEST_CASE("frechet_distance: diagonal covariances have the closed form", "[frechet]") {
  const std::vector<double> mu_a{0, 1, -2, 0.5}, mu_b{1, 1, 0, 0}, a{1, 4, 0.25, 2}, b{9, 1, 0.25, 0.5};
  const double want = commuting_fd(mu_a, mu_b, a, b);  // 1 + 0 + 4 + 0.25 + 4 + 1 + 0 + 0.5 = 10.75
  REQUIRE(want == Approx(10.75));
  REQUIRE(frechet_distance(stats_of(mu_a, diag(a)), stats_of(mu_b, diag(b))) == Approx(want).epsilon(1e-12));
  // A zero variance (a degenerate Gaussian) is allowed.
  REQUIRE(frechet_distance(stats_of({0, 0}, diag({0, 1})), stats_of({0, 0}, diag({4, 1}))) ==
          Approx(4.0).epsilon(1e-12));
}

TEST_CASE("frechet_distance: covariances rotated together keep the closed form", "[frechet]") {
  const std::vector<double> mu_a{0.5, -1, 2, 0, 1}, mu_b{0, 0, 0, 1, 1}, a{1, 2, 3, 0.1, 5}, b{2, 2, 0.5, 1, 0.2};
  Tensor q = random_rotation(5, 7);
  Tensor sa = matmul(q * from_vector(a, {5}, DType::f64), q.t());
  Tensor sb = matmul(q * from_vector(b, {5}, DType::f64), q.t());
  sa = ((sa + sa.t()) * 0.5).contiguous();
  sb = ((sb + sb.t()) * 0.5).contiguous();
  REQUIRE(frechet_distance(stats_of(mu_a, sa), stats_of(mu_b, sb)) ==
          Approx(commuting_fd(mu_a, mu_b, a, b)).epsilon(1e-10));
}

TEST_CASE("frechet_distance: 2x2 non-commuting covariances", "[frechet]") {
  // For 2x2 PSD M, tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); with M = Sa^1/2 Sb Sa^1/2,
  // tr M = tr(Sa Sb) and det M = det Sa det Sb.
  Tensor sa = from_vector(std::vector<double>{2, 0.8, 0.8, 1}, {2, 2}, DType::f64);
  Tensor sb = from_vector(std::vector<double>{1, -0.3, -0.3, 3}, {2, 2}, DType::f64);
  const double tr_ab = 2 * 1 + 0.8 * -0.3 + 0.8 * -0.3 + 1 * 3;
  const double det_a = 2 - 0.64, det_b = 3 - 0.09;
  const double want = 1.0 + 4.0 + 3 + 4 - 2 * std::sqrt(tr_ab + 2 * std::sqrt(det_a * det_b));
  REQUIRE(frechet_distance(stats_of({1, 0}, sa), stats_of({0, 2}, sb)) == Approx(want).epsilon(1e-12));
}

TEST_CASE("frechet_distance is symmetric", "[frechet]") {
  Generator gen(5);
  Tensor mix = uniform({12, 12}, -1, 1, gen, DType::f64);
  GaussianStats a = gaussian_stats(randn({300, 12}, gen, DType::f64));
  GaussianStats b = gaussian_stats(matmul(randn({200, 12}, gen, DType::f64), mix) + 0.3);
  const double ab = frechet_distance(a, b), ba = frechet_distance(b, a);
  REQUIRE(ab > 0.5);
  REQUIRE(ab == Approx(ba).epsilon(1e-10));
  REQUIRE_THROWS_WITH(frechet_distance(a, gaussian_stats(randn({10, 3}, gen))), Contains("12 and 3 dims"));
}

TEST_CASE("frechet_distance from samples converges to the Gaussians' closed form", "[frechet]") {
  // a = N(mu_a, Q diag(va) Q^T), b = N(mu_b, Q diag(vb) Q^T) drawn as mu + (z * sqrt(v)) Q^T.
  const int64_t d = 4, n = 40000;
  const std::vector<double> mu_a{0, 1, 0, -1}, mu_b{1, 1, -1, 0}, va{1, 2, 0.5, 3}, vb{4, 1, 0.25, 3};
  Tensor q = random_rotation(d, 21);
  Generator gen(8);
  auto draw = [&](const std::vector<double>& mu, const std::vector<double>& v) {
    Tensor z = randn({n, d}, gen, DType::f64) * sqrt(from_vector(v, {d}, DType::f64));
    return matmul(z, q.t()) + from_vector(mu, {d}, DType::f64);
  };
  const double want = commuting_fd(mu_a, mu_b, va, vb);
  const double fd = frechet_distance(gaussian_stats(draw(mu_a, va)), gaussian_stats(draw(mu_b, vb)));
  INFO("closed form " << want << ", from samples " << fd);
  // The estimate's error is O(1/sqrt(n)) in the means and covariances: a few hundredths here.
  REQUIRE(std::abs(fd - want) < 0.1);
  // Two draws of one Gaussian: FD near 0, its bias about O(d / n).
  const double floor = frechet_distance(gaussian_stats(draw(mu_a, va)), gaussian_stats(draw(mu_a, va)));
  REQUIRE(floor < 0.01);
}

}  // namespace dualflow::testing
