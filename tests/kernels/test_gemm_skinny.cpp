// The skinny GEMM loops (kernels/cpu/gemm_skinny.h) against an f64 triple loop, for each of the
// three forms (small k, small N, small M), every transpose pair they take, f32 and f64, alpha,
// beta (C unread where beta == 0) and the bias row; the layouts they leave to BLAS; and the same
// bits for any split of C into blocks of rows or columns (how the engine's threads divide a
// product).
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/gemm_skinny.h"

using namespace dualflow;

namespace {

struct Problem {
  bool ta, tb;
  int64_t m, n, k;
  double alpha, beta;
  bool bias;
};

template <class T>
std::vector<T> random_vector(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<T> v(n);
  for (T& x : v) x = T(u(rng));
  return v;
}

// Leading dimensions 3 wider than the stored rows.
struct Operands {
  int64_t lda, ldb, ldc;
};
Operands layout(const Problem& p) { return {(p.ta ? p.m : p.k) + 3, (p.tb ? p.k : p.n) + 3, p.n + 3}; }

template <class T>
void check_against_f64(const Problem& p, unsigned seed, double tolerance) {
  INFO("trans " << p.ta << p.tb << ", m " << p.m << ", n " << p.n << ", k " << p.k << ", alpha " << p.alpha << ", beta "
                << p.beta << ", bias " << p.bias);
  const Operands o = layout(p);
  const std::vector<T> a = random_vector<T>(size_t((p.ta ? p.k : p.m) * o.lda), seed);
  const std::vector<T> b = random_vector<T>(size_t((p.tb ? p.n : p.k) * o.ldb), seed + 100);
  const std::vector<T> bias = random_vector<T>(size_t(p.n), seed + 300);
  std::vector<T> c = random_vector<T>(size_t(p.m * o.ldc), seed + 200);
  if (p.beta == 0.0 || p.bias)
    for (T& x : c) x = std::numeric_limits<T>::quiet_NaN();  // never read
  const std::vector<T> c0 = c;
  REQUIRE(cpu::gemm_skinny<T>(p.ta, p.tb, p.m, p.n, p.k, T(p.alpha), a.data(), o.lda, b.data(), o.ldb, T(p.beta),
                              c.data(), o.ldc, p.bias ? bias.data() : nullptr));
  double worst = 0;
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double want = 0;
      for (int64_t q = 0; q < p.k; ++q)
        want += double(p.ta ? a[size_t(q * o.lda + i)] : a[size_t(i * o.lda + q)]) *
                double(p.tb ? b[size_t(j * o.ldb + q)] : b[size_t(q * o.ldb + j)]);
      want = p.alpha * want + (p.bias          ? double(bias[size_t(j)])
                               : p.beta == 0.0 ? 0.0
                                               : p.beta * double(c0[size_t(i * o.ldc + j)]));
      const double got = double(c[size_t(i * o.ldc + j)]);
      REQUIRE(std::isfinite(got));
      worst = std::max(worst, std::abs(want - got) / std::sqrt(double(p.k)));
    }
    for (int64_t j = p.n; j < o.ldc; ++j) {  // the padding between rows is left alone
      INFO("row " << i << ", padding column " << j);
      REQUIRE(std::isnan(c[size_t(i * o.ldc + j)]) == std::isnan(c0[size_t(i * o.ldc + j)]));
    }
  }
  REQUIRE(worst < tolerance);
}

std::vector<Problem> skinny_problems() {
  std::vector<Problem> problems;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      // small k: any layout; k from 1 to 8, rows off the vector width
      for (int64_t k : {1, 2, 5, 8}) problems.push_back({ta, tb, 37, 45, k, 1.0, 0.0, false});
      problems.push_back({ta, tb, 20, 300, 2, -0.5, 0.75, false});
      problems.push_back({ta, tb, 20, 33, 3, 1.0, 0.0, true});
    }
  for (bool tb : {false, true}) {
    // small N, op(A) = A: every N from 1 to 8, k off and on the vector width, row blocks of 4 and 2
    for (int64_t n = 1; n <= 8; ++n) problems.push_back({false, tb, 23, n, 67, 1.0, 0.0, false});
    problems.push_back({false, tb, 768, 2, 256, 1.0, 0.0, true});
    problems.push_back({false, tb, 9, 3, 16, 2.0, -1.0, false});
  }
  for (bool ta : {false, true}) {
    // small M, op(B) = B: past one block of 256 columns
    for (int64_t m = 1; m <= 8; ++m) problems.push_back({ta, false, m, 45, 70, 1.0, 0.0, false});
    problems.push_back({ta, false, 2, 600, 768, 1.0, 0.0, false});
    problems.push_back({ta, false, 3, 257, 9, -1.5, 0.25, true});
  }
  return problems;
}

}  // namespace

TEST_CASE("gemm_skinny equals the f64 product in f32 and f64 for each form and layout", "[kernels][gemm]") {
  const std::vector<Problem> problems = skinny_problems();
  for (size_t t = 0; t < problems.size(); ++t) {
    check_against_f64<float>(problems[t], 1 + unsigned(t), 2e-6);
    check_against_f64<double>(problems[t], 1 + unsigned(t), 1e-14);
  }
}

TEST_CASE("gemm_skinny leaves the layouts it does not take to BLAS", "[kernels][gemm]") {
  std::vector<float> a(64 * 64, 1.0f), b(64 * 64, 1.0f), c(64 * 64, 7.0f);
  // Neither side at most 8; small N with op(A) transposed; small M with op(B) transposed;
  // alpha = 0 (BLAS then reads neither operand).
  for (const Problem& p :
       {Problem{false, false, 9, 9, 9, 1, 0, false}, Problem{true, false, 40, 2, 40, 1, 0, false},
        Problem{false, true, 2, 40, 40, 1, 0, false}, Problem{false, false, 40, 40, 2, 0, 0, false}}) {
    INFO("trans " << p.ta << p.tb << ", m " << p.m << ", n " << p.n << ", k " << p.k);
    REQUIRE_FALSE(cpu::gemm_skinny<float>(p.ta, p.tb, p.m, p.n, p.k, float(p.alpha), a.data(), 64, b.data(), 64, 0.0f,
                                          c.data(), 64, nullptr));
  }
  for (float x : c) REQUIRE(x == 7.0f);  // nothing written
}

TEST_CASE("gemm_skinny gives the same bits for any split of C into row and column blocks", "[kernels][gemm]") {
  for (const Problem& p : {Problem{false, true, 50, 2, 256, 1, 0, true}, Problem{true, false, 2, 300, 100, 1, 0, false},
                           Problem{false, false, 61, 70, 2, 1, 0, true}}) {
    INFO("trans " << p.ta << p.tb << ", m " << p.m << ", n " << p.n << ", k " << p.k);
    const Operands o = layout(p);
    const std::vector<float> a = random_vector<float>(size_t((p.ta ? p.k : p.m) * o.lda), 5);
    const std::vector<float> b = random_vector<float>(size_t((p.tb ? p.n : p.k) * o.ldb), 6);
    const std::vector<float> bias = random_vector<float>(size_t(p.n), 7);
    const float* bias_ptr = p.bias ? bias.data() : nullptr;
    std::vector<float> whole(size_t(p.m * o.ldc)), split(whole.size());
    REQUIRE(cpu::gemm_skinny<float>(p.ta, p.tb, p.m, p.n, p.k, 1.0f, a.data(), o.lda, b.data(), o.ldb, 0.0f,
                                    whole.data(), o.ldc, bias_ptr));
    // Split the long side in two, as the engine's threads do (rows for small N and small k,
    // columns for small M).
    if (p.m >= p.n) {
      const int64_t h = p.m / 2 + 1;
      for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, h}, {h, p.m}}) {
        const float* a_block = a.data() + (p.ta ? r0 : r0 * o.lda);
        REQUIRE(cpu::gemm_skinny<float>(p.ta, p.tb, r1 - r0, p.n, p.k, 1.0f, a_block, o.lda, b.data(), o.ldb, 0.0f,
                                        split.data() + r0 * o.ldc, o.ldc, bias_ptr));
      }
    } else {
      const int64_t h = p.n / 2 + 3;
      for (auto [c0, c1] : {std::pair<int64_t, int64_t>{0, h}, {h, p.n}}) {
        const float* b_block = b.data() + (p.tb ? c0 * o.ldb : c0);
        REQUIRE(cpu::gemm_skinny<float>(p.ta, p.tb, p.m, c1 - c0, p.k, 1.0f, a.data(), o.lda, b_block, o.ldb, 0.0f,
                                        split.data() + c0, o.ldc, bias_ptr ? bias_ptr + c0 : nullptr));
      }
    }
    for (int64_t i = 0; i < p.m; ++i)
      for (int64_t j = 0; j < p.n; ++j) REQUIRE(whole[size_t(i * o.ldc + j)] == split[size_t(i * o.ldc + j)]);
  }
}
