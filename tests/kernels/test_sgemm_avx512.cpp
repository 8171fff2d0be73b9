// The engine's AVX-512 f32 GEMM (kernels/cpu/sgemm_avx512.h) against an f64 triple loop: every
// transpose pair, sizes off its 12x32 tiles and 144/256/2048 blocks, leading dimensions wider
// than the rows, alpha and beta (C unread where beta == 0), and the same bits for any split of
// C into blocks of rows and columns (how the engine's threads divide a product), or into pieces
// of rows that threads take from their own share and steal from the others' (RowShares).
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "kernels/common/backend.h"
#include "kernels/cpu/gemm_epilogue.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/row_shares.h"
#include "kernels/cpu/sgemm_avx512.h"

using namespace dualflow;

namespace {

struct Problem {
  bool ta, tb;
  int64_t m, n, k;
  float alpha, beta;
};

std::vector<float> random_vector(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = u(rng);
  return v;
}

// The products the threading tests run: every transpose pair (with alpha and beta), and
// linear's layout (A B^T) with the bias, without and with SiLU and its derivative.
struct Variant {
  bool ta, tb, bias, activation;
};

std::vector<Variant> variants() {
  std::vector<Variant> v;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) v.push_back({ta, tb, false, false});
  v.push_back({false, true, true, false});
  v.push_back({false, true, true, true});
  return v;
}

}  // namespace

TEST_CASE("sgemm_avx512 equals the f64 product for every transpose, edge and block size", "[kernels][gemm]") {
  if (!cpu::sgemm_avx512_supported()) {
    SUCCEED("no AVX-512 here: OpenBLAS runs every GEMM");
    return;
  }
  std::vector<Problem> problems;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      problems.push_back({ta, tb, 1, 1, 1, 1.0f, 0.0f});
      problems.push_back({ta, tb, 13, 33, 9, 1.0f, 0.0f});
      problems.push_back({ta, tb, 12, 32, 256, 0.5f, 1.0f});
      problems.push_back({ta, tb, 145, 65, 257, -1.5f, 0.25f});
      problems.push_back({ta, tb, 30, 17, 600, 1.0f, 1.0f});
    }
  problems.push_back({false, false, 3, 2050, 5, 1.0f, 0.0f});  // past one 2048-column block
  problems.push_back({false, false, 300, 40, 20, 2.0f, -1.0f});
  for (size_t t = 0; t < problems.size(); ++t) {
    const Problem& p = problems[t];
    INFO("problem " << t << ": trans " << p.ta << p.tb << ", m " << p.m << ", n " << p.n << ", k " << p.k);
    // Leading dimensions 3 wider than the stored rows.
    const int64_t lda = (p.ta ? p.m : p.k) + 3, ldb = (p.tb ? p.k : p.n) + 3, ldc = p.n + 3;
    const std::vector<float> a = random_vector(size_t((p.ta ? p.k : p.m) * lda), 1 + unsigned(t));
    const std::vector<float> b = random_vector(size_t((p.tb ? p.n : p.k) * ldb), 100 + unsigned(t));
    std::vector<float> c = random_vector(size_t(p.m * ldc), 200 + unsigned(t));
    if (p.beta == 0.0f)
      for (float& x : c) x = std::numeric_limits<float>::quiet_NaN();  // never read
    const std::vector<float> c0 = c;
    cpu::sgemm_avx512(p.ta, p.tb, p.m, p.n, p.k, p.alpha, a.data(), lda, b.data(), ldb, p.beta, c.data(), ldc);
    double worst = 0;
    for (int64_t i = 0; i < p.m; ++i) {
      for (int64_t j = 0; j < p.n; ++j) {
        double want = 0;
        for (int64_t q = 0; q < p.k; ++q)
          want += double(p.ta ? a[size_t(q * lda + i)] : a[size_t(i * lda + q)]) *
                  double(p.tb ? b[size_t(j * ldb + q)] : b[size_t(q * ldb + j)]);
        want = p.alpha * want + (p.beta == 0.0f ? 0.0 : p.beta * double(c0[size_t(i * ldc + j)]));
        worst = std::max(worst, std::abs(want - double(c[size_t(i * ldc + j)])) / std::sqrt(double(p.k)));
      }
      for (int64_t j = p.n; j < ldc; ++j) {  // the padding between rows is left alone
        INFO("row " << i << ", padding column " << j);
        REQUIRE(std::isnan(c[size_t(i * ldc + j)]) == std::isnan(c0[size_t(i * ldc + j)]));
        if (!std::isnan(c0[size_t(i * ldc + j)])) REQUIRE(c[size_t(i * ldc + j)] == c0[size_t(i * ldc + j)]);
      }
    }
    REQUIRE(worst < 2e-6);  // f32 rounding of sums of k products of values up to 1
  }
}

TEST_CASE("sgemm_avx512 gives the same bits for any split of C into row and column blocks", "[kernels][gemm]") {
  if (!cpu::sgemm_avx512_supported()) return;
  const int64_t m = 100, n = 90, k = 300;
  const std::vector<float> a = random_vector(size_t(m * k), 7), b = random_vector(size_t(k * n), 8);
  std::vector<float> whole(size_t(m * n)), parts(size_t(m * n));
  cpu::sgemm_avx512(false, false, m, n, k, 1.0f, a.data(), k, b.data(), n, 0.0f, whole.data(), n);
  for (int64_t r0 : {int64_t(0), int64_t(37)})
    for (int64_t c0 : {int64_t(0), int64_t(45)}) {
      const int64_t r1 = r0 == 0 ? 37 : m, c1 = c0 == 0 ? 45 : n;
      cpu::sgemm_avx512(false, false, r1 - r0, c1 - c0, k, 1.0f, a.data() + r0 * k, k, b.data() + c0, n, 0.0f,
                        parts.data() + r0 * n + c0, n);
    }
  REQUIRE(parts == whole);
}

TEST_CASE("the CPU backend's f32 GEMM gives the same bits at 1, 2 and 3 threads, and inside a pool job",
          "[kernels][gemm]") {
  // At 2 and 3 threads gemm_parallel splits the rows between the threads: two column blocks of
  // the kernel (1024 + 6), two k blocks, rows off the 12-row tile; every transpose pair with alpha
  // and beta, and linear's layout with the bias and an activation with its derivative.
  const int64_t m = 75, n = 1030, k = 300;
  const int threads_before = cpu::num_threads();
  for (const Variant& v : variants()) {
    INFO("trans " << v.ta << v.tb << ", bias " << v.bias << ", activation " << v.activation);
    const std::vector<float> a = random_vector(size_t(m * k), 21), b = random_vector(size_t(k * n), 22);
    const std::vector<float> bias = random_vector(size_t(n), 23), c0 = random_vector(size_t(m * n), 24);
    std::vector<std::vector<float>> outputs, derivatives;
    for (int threads : {1, 2, 3}) {
      cpu::set_num_threads(threads);
      std::vector<float> c = c0, derivative(size_t(m * n));
      GemmArgs g;
      g.trans_a = v.ta;
      g.trans_b = v.tb;
      g.m = m, g.n = n, g.k = k;
      g.a = a.data(), g.lda = v.ta ? m : k;
      g.b = b.data(), g.ldb = v.tb ? k : n;
      g.c = c.data(), g.ldc = n;
      g.alpha = v.bias ? 1.0 : 0.75;
      g.beta = v.bias ? 0.0 : -0.5;
      if (v.bias) g.bias = bias.data();
      if (v.activation) {
        g.activation = UnaryOp::Silu;
        g.derivative = derivative.data();
      }
      cpu_backend().gemm(0, g);
      outputs.push_back(c);
      derivatives.push_back(derivative);
      if (threads == 2) {
        // From inside a job of the pool, where the product's own loops run on this thread alone.
        c = c0;
        cpu::parallel_for_chunks(2, 2, [&](int64_t first, int64_t) {
          if (first == 0) cpu_backend().gemm(0, g);
        });
        REQUIRE(c == outputs.back());
      }
    }
    REQUIRE(outputs[1] == outputs[0]);
    REQUIRE(outputs[2] == outputs[0]);
    REQUIRE(derivatives[1] == derivatives[0]);
    REQUIRE(derivatives[2] == derivatives[0]);
  }
  cpu::set_num_threads(threads_before);
}

TEST_CASE("sgemm_avx512's bias row gives the bits of C filled with the bias and beta = 1 (alpha = 1)",
          "[kernels][gemm]") {
  if (!cpu::sgemm_avx512_supported()) return;
  // k = 300 spans two 256-step blocks: the bias enters with the first only. n = 70 ends in a
  // partial tile, whose bias lanes past n must not be read into C.
  for (int64_t k : {int64_t(5), int64_t(300)})
    for (bool tb : {false, true}) {
      const int64_t m = 29, n = 70, ldc = n + 2;
      const std::vector<float> a = random_vector(size_t(m * k), 11), b = random_vector(size_t(k * n), 12);
      const std::vector<float> bias = random_vector(size_t(n), 13);
      std::vector<float> fused(size_t(m * ldc), std::numeric_limits<float>::quiet_NaN()), filled = fused;
      for (int64_t i = 0; i < m; ++i) std::copy(bias.begin(), bias.end(), filled.begin() + i * ldc);
      cpu::sgemm_avx512(false, tb, m, n, k, 1.0f, a.data(), k, b.data(), tb ? k : n, 1.0f, filled.data(), ldc);
      cpu::sgemm_avx512(false, tb, m, n, k, 1.0f, a.data(), k, b.data(), tb ? k : n, 0.0f, fused.data(), ldc,
                        bias.data());
      INFO("k " << k << ", trans_b " << tb);
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < n; ++j) REQUIRE(fused[size_t(i * ldc + j)] == filled[size_t(i * ldc + j)]);
        for (int64_t j = n; j < ldc; ++j) REQUIRE(std::isnan(fused[size_t(i * ldc + j)]));  // padding untouched
      }
    }
}

TEST_CASE("sgemm_avx512's bias row with alpha != 1 equals alpha * the f64 product + bias", "[kernels][gemm]") {
  if (!cpu::sgemm_avx512_supported()) return;
  const int64_t m = 13, n = 40, k = 270;
  const std::vector<float> a = random_vector(size_t(m * k), 21), b = random_vector(size_t(k * n), 22);
  const std::vector<float> bias = random_vector(size_t(n), 23);
  std::vector<float> c(size_t(m * n), std::numeric_limits<float>::quiet_NaN());  // never read
  cpu::sgemm_avx512(false, false, m, n, k, -0.75f, a.data(), k, b.data(), n, 0.0f, c.data(), n, bias.data());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double want = 0;
      for (int64_t q = 0; q < k; ++q) want += double(a[size_t(i * k + q)]) * double(b[size_t(q * n + j)]);
      REQUIRE(double(c[size_t(i * n + j)]) == Approx(-0.75 * want + double(bias[size_t(j)])).margin(2e-6 * 17));
    }
}

TEST_CASE("the CPU backend's GEMM multiplier gives the bits of the product times the matrix, at 1, 2 and 3 threads",
          "[kernels][gemm]") {
  // The engine's kernel (75 x 70 x 300), the skinny loops (n = 2, and k = 2) and f64 through
  // BLAS; two batch entries with their own multiplier or one shared by both (stride 0).
  struct Variant {
    DType dtype;
    int64_t m, n, k;
    bool shared;
  };
  const std::vector<Variant> variants{{DType::f32, 75, 70, 300, false},
                                      {DType::f32, 75, 70, 300, true},
                                      {DType::f32, 64, 2, 40, true},
                                      {DType::f32, 64, 40, 2, false},
                                      {DType::f64, 75, 70, 300, true}};
  const int threads_before = cpu::num_threads();
  for (const Variant& v : variants) {
    INFO("dtype " << int(v.dtype) << ", " << v.m << " x " << v.n << " x " << v.k << ", shared " << v.shared);
    const int64_t batch = 2, m = v.m, n = v.n, k = v.k;
    const std::vector<float> a32 = random_vector(size_t(batch * m * k), 31), b32 = random_vector(size_t(k * n), 32);
    const std::vector<float> f32 = random_vector(size_t((v.shared ? 1 : batch) * m * n), 33);
    auto run = [&](auto zero) {
      using T = decltype(zero);
      const std::vector<T> a(a32.begin(), a32.end()), b(b32.begin(), b32.end()), f(f32.begin(), f32.end());
      std::vector<std::vector<T>> outputs;
      for (int threads : {1, 2, 3}) {
        cpu::set_num_threads(threads);
        for (bool fused : {false, true}) {
          std::vector<T> c(size_t(batch * m * n), T(7));  // never read: beta = 0
          GemmArgs g;
          g.dtype = v.dtype;
          g.m = m, g.n = n, g.k = k, g.batch = batch;
          g.a = a.data(), g.lda = k, g.stride_a = m * k;
          g.b = b.data(), g.ldb = n, g.stride_b = 0;
          g.c = c.data(), g.ldc = n, g.stride_c = m * n;
          if (fused) {
            g.multiplier = f.data();
            g.stride_multiplier = v.shared ? 0 : m * n;
          }
          cpu_backend().gemm(0, g);
          if (!fused)
            for (int64_t e = 0; e < batch; ++e)
              for (int64_t i = 0; i < m * n; ++i) c[size_t(e * m * n + i)] *= f[size_t((v.shared ? 0 : e * m * n) + i)];
          outputs.push_back(c);
        }
      }
      for (const std::vector<T>& c : outputs) REQUIRE(c == outputs[0]);
    };
    if (v.dtype == DType::f32) run(0.0f);
    else run(0.0);
  }
  cpu::set_num_threads(threads_before);
}

TEST_CASE("RowShares hands out every row exactly once, however threads take and steal them", "[kernels][gemm]") {
  struct Case {
    int64_t rows;
    int shares;
    int64_t own, stolen;
    int threads;  // threads that claim; shares without one are left to thieves
  };
  const std::vector<Case> cases{{256, 2, 48, 24, 2}, {1000, 3, 48, 24, 3}, {100, 2, 48, 24, 1},
                                {37, 4, 5, 3, 2},    {1, 2, 48, 24, 2},    {0, 2, 48, 24, 2}};
  for (const Case& c : cases) {
    INFO("rows " << c.rows << ", shares " << c.shares << ", threads " << c.threads);
    for (int round = 0; round < 20; ++round) {
      cpu::RowShares shares(c.rows, c.shares, c.own, c.stolen);
      std::vector<std::atomic<int>> taken(size_t(c.rows));
      std::atomic<int> empty_pieces{0};  // counted, not asserted: Catch2's assertions are for one thread
      std::vector<std::thread> threads;
      for (int t = 0; t < c.threads; ++t)
        threads.emplace_back([&, t] {
          int64_t begin = 0, end = 0;
          while (shares.next(t, begin, end)) {
            if (begin >= end) empty_pieces++;
            for (int64_t r = begin; r < end; ++r) taken[size_t(r)]++;
          }
        });
      for (std::thread& t : threads) t.join();
      REQUIRE(empty_pieces.load() == 0);
      for (int64_t r = 0; r < c.rows; ++r) REQUIRE(taken[size_t(r)].load() == 1);
    }
  }
  // On one thread a share is taken front to back in pieces of `own`; a remainder of less than
  // half a piece goes with the piece before it (110 = 48 + 62, 130 = 48 + 48 + 34).
  for (const auto& [rows, expected] : std::vector<std::pair<int64_t, std::vector<std::pair<int64_t, int64_t>>>>{
           {110, {{0, 48}, {48, 110}}}, {130, {{0, 48}, {48, 96}, {96, 130}}}}) {
    cpu::RowShares alone(rows, 1, 48, 24);
    int64_t begin = 0, end = 0;
    std::vector<std::pair<int64_t, int64_t>> pieces;
    while (alone.next(0, begin, end)) pieces.emplace_back(begin, end);
    REQUIRE(pieces == expected);
  }
}

TEST_CASE("sgemm_avx512_shared gives the bits of sgemm_avx512 however its rows are shared out", "[kernels][gemm]") {
  if (!cpu::sgemm_avx512_supported()) return;
  // Two column blocks (1024 + 6) and three k blocks, rows off the 12-row tile; every transpose
  // pair with alpha and beta, and linear's layout with the bias and SiLU with its derivative.
  const int64_t m = 101, n = 1030, k = 600;
  for (const Variant& v : variants()) {
    INFO("trans " << v.ta << v.tb << ", bias " << v.bias << ", activation " << v.activation);
    const std::vector<float> a = random_vector(size_t(m * k), 41), b = random_vector(size_t(k * n), 42);
    const std::vector<float> bias = random_vector(size_t(n), 43), c0 = random_vector(size_t(m * n), 44);
    const float alpha = v.bias ? 1.0f : 0.75f, beta = v.bias ? 0.0f : -0.5f;
    const int64_t lda = v.ta ? m : k, ldb = v.tb ? k : n;
    const cpu::BlockEpilogue<float> epilogue = v.activation ? cpu::block_activation<float>(UnaryOp::Silu) : nullptr;
    std::vector<float> whole = c0, whole_derivative(size_t(m * n));
    cpu::sgemm_avx512(v.ta, v.tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, whole.data(), n,
                      v.bias ? bias.data() : nullptr, epilogue, v.activation ? whole_derivative.data() : nullptr);
    // Shares run one after another in a given order: the first to run takes its own rows and
    // steals all the others' (or, with pieces of one tile, shares run in turns).
    for (int shares : {1, 2, 3})
      for (bool reversed : {false, true}) {
        std::vector<float> c = c0, derivative(size_t(m * n));
        cpu::RowShares rows(m, shares, 24, 12);
        for (int i = 0; i < shares; ++i)
          cpu::sgemm_avx512_shared(v.ta, v.tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), n,
                                   v.bias ? bias.data() : nullptr, epilogue, v.activation ? derivative.data() : nullptr,
                                   rows, reversed ? shares - 1 - i : i);
        REQUIRE(c == whole);
        REQUIRE(derivative == whole_derivative);
      }
  }
}

TEST_CASE("the CPU backend's f32 GEMM that threads share by pieces of rows gives the bits of 1 thread",
          "[kernels][gemm]") {
  // 150 x 100 x 300: op(B) packed is under the size at which the threads share the rows out in
  // pieces (gemm.cpp); every transpose pair, and linear's layout with the bias and SiLU.
  const int64_t m = 150, n = 100, k = 300;
  const int threads_before = cpu::num_threads();
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool linear : {false, true}) {
        if (linear && (ta || !tb)) continue;
        INFO("trans " << ta << tb << ", linear " << linear);
        const std::vector<float> a = random_vector(size_t(m * k), 51), b = random_vector(size_t(k * n), 52);
        const std::vector<float> bias = random_vector(size_t(n), 53), c0 = random_vector(size_t(m * n), 54);
        std::vector<std::vector<float>> outputs, derivatives;
        for (int threads : {1, 2, 3}) {
          cpu::set_num_threads(threads);
          for (int repeat = 0; repeat < 5; ++repeat) {
            std::vector<float> c = c0, derivative(size_t(m * n));
            GemmArgs g;
            g.trans_a = ta, g.trans_b = tb;
            g.m = m, g.n = n, g.k = k;
            g.a = a.data(), g.lda = ta ? m : k;
            g.b = b.data(), g.ldb = tb ? k : n;
            g.c = c.data(), g.ldc = n;
            g.alpha = linear ? 1.0 : -1.25;
            g.beta = linear ? 0.0 : 0.5;
            if (linear) {
              g.bias = bias.data();
              g.activation = UnaryOp::Silu;
              g.derivative = derivative.data();
            }
            if (repeat == 4 && threads == 2) {
              // From inside a job of the pool: one thread takes every share in turn.
              cpu::parallel_for_chunks(2, 2, [&](int64_t first, int64_t) {
                if (first == 0) cpu_backend().gemm(0, g);
              });
            } else {
              cpu_backend().gemm(0, g);
            }
            outputs.push_back(c);
            derivatives.push_back(derivative);
          }
        }
        for (size_t i = 1; i < outputs.size(); ++i) {
          REQUIRE(outputs[i] == outputs[0]);
          REQUIRE(derivatives[i] == derivatives[0]);
        }
      }
  cpu::set_num_threads(threads_before);
}
