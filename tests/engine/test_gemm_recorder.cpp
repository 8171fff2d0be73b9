// GemmRecorder and gemm_runner: the GEMMs that matmul, linear and their rules issue are counted
// with their true shapes, layouts and batch sharing, and a runner repeats exactly that GEMM.
#include "engine/gemm_recorder.h"
#include "test_util.h"

namespace dualflow::testing {
namespace {

GemmShape only_shape(const GemmRecorder& r) {
  const auto counts = r.counts();
  REQUIRE(counts.size() == 1);
  REQUIRE(counts.begin()->second == 1);
  return counts.begin()->first;
}

}  // namespace

TEST_CASE("GemmRecorder counts each GEMM with its shape, transposes and sharing", "[gemm]") {
  Generator gen(3);
  Tensor a = randn({5, 3}, gen), b = randn({3, 4}, gen);
  SECTION("a plain product") {
    GemmRecorder r;
    matmul(a, b);
    const GemmShape s = only_shape(r);
    CHECK((s.m == 5 && s.n == 4 && s.k == 3 && s.batch == 1));
    CHECK_FALSE((s.trans_a || s.trans_b || s.accumulate));
    CHECK(s.dtype == DType::f32);
    CHECK(r.calls() == 1);
    CHECK(r.flops() == 2.0 * 5 * 4 * 3);
  }
  SECTION("a transposed view goes in as a transpose flag") {
    GemmRecorder r;
    matmul(a, randn({4, 3}, gen).t());
    const GemmShape s = only_shape(r);
    CHECK((s.trans_b && !s.trans_a && s.m == 5 && s.n == 4 && s.k == 3));
  }
  SECTION("a batch against one matrix folds into rows; two batches stay a batch") {
    GemmRecorder r;
    matmul(randn({2, 5, 3}, gen), b);
    matmul(randn({2, 5, 3}, gen), randn({2, 3, 4}, gen));
    matmul(b.unsqueeze(0).expand(Shape{2, 3, 4}).transpose(1, 2), randn({2, 3, 6}, gen));
    const auto counts = r.counts();
    REQUIRE(counts.size() == 3);
    std::vector<GemmShape> shapes;
    for (const auto& [s, n] : counts) shapes.push_back(s);
    const auto has = [&](auto pred) { return std::any_of(shapes.begin(), shapes.end(), pred); };
    CHECK(has([](const GemmShape& s) { return s.batch == 1 && s.m == 10 && s.k == 3 && s.n == 4; }));
    CHECK(has([](const GemmShape& s) { return s.batch == 2 && s.m == 5 && !s.shared_a && !s.shared_b; }));
    CHECK(has([](const GemmShape& s) { return s.batch == 2 && s.m == 4 && s.n == 6 && s.shared_a && s.trans_a; }));
  }
  SECTION("linear's GEMM adds its bias, and the runner times that form") {
    GemmRecorder r;
    linear(a, randn({7, 3}, gen), randn({7}, gen));
    const GemmShape s = only_shape(r);
    CHECK((s.bias && !s.accumulate && s.trans_b && s.m == 5 && s.n == 7 && s.k == 3));
    CHECK(s.str().find("+bias") != std::string::npos);
    gemm_runner(s)();  // makes and passes a bias row of n values
  }
  SECTION("backward's GEMMs are counted too") {
    Tensor w = randn({3, 4}, gen), x = randn({5, 3}, gen);
    w.set_requires_grad();
    x.set_requires_grad();
    GemmRecorder r;
    sum(matmul(x, w)).backward();
    CHECK(r.calls() == 3);  // the product, then the gradients of x and of w
    CHECK(r.flops() == 3 * 2.0 * 5 * 4 * 3);
  }
}

TEST_CASE("GemmRecorder: nothing is counted outside a recorder's life; one at a time", "[gemm]") {
  Generator gen(4);
  Tensor a = randn({4, 4}, gen);
  { GemmRecorder r; }
  matmul(a, a);  // no recorder: not counted anywhere
  GemmRecorder r;
  CHECK(r.calls() == 0);
  CHECK_THROWS_WITH(GemmRecorder(), Catch::Contains("another recorder is already alive"));
  matmul(a, a);
  CHECK(r.calls() == 1);
}

TEST_CASE("gemm_runner repeats the recorded GEMM exactly", "[gemm]") {
  Generator gen(5);
  std::vector<std::function<void()>> products = {
      [&] {
        matmul(randn({6, 5}, gen), randn({5, 3}, gen));
      },
      [&] {
        matmul(randn({5, 6}, gen).t(), randn({3, 5}, gen).t());
      },
      [&] {
        matmul(randn({4, 6, 5}, gen), randn({4, 5, 3}, gen));
      },
      [&] {
        matmul(randn({5, 3}, gen).unsqueeze(0).expand(Shape{2, 5, 3}), randn({2, 3, 4}, gen));
      },
      [&] {
        linear(randn({6, 5}, gen, DType::f64), randn({3, 5}, gen, DType::f64), randn({3}, gen, DType::f64));
      },
  };
  for (size_t i = 0; i < products.size(); ++i) {
    CAPTURE(i);
    GemmShape recorded;
    {
      GemmRecorder r;
      products[i]();
      recorded = only_shape(r);
    }
    const std::function<void()> run = gemm_runner(recorded);
    GemmRecorder again;
    run();
    CHECK(only_shape(again) == recorded);
    CHECK_FALSE(recorded.str().empty());
  }
}

}  // namespace dualflow::testing

namespace dualflow::testing {

TEST_CASE("matmul reads batch dims that do not collapse into one stride in place, looping over the outer ones",
          "[gemm]") {
  // Attention's heads: [N, L, heads, hd] viewed as [N, heads, L, hd] has batch strides L * D and
  // hd, which no single batch stride describes. The product loops over N, each a batch of heads.
  Generator gen(5);
  const int64_t n = 3, l = 5, heads = 2, hd = 4;
  Tensor q = randn({n, l, heads, hd}, gen, TensorOptions(DType::f64)).permute({0, 2, 1, 3});
  Tensor k = randn({n, l, heads, hd}, gen, TensorOptions(DType::f64)).permute({0, 2, 3, 1});
  // A three-level batch whose inner two dims collapse but whose outer one does not.
  Tensor a3 = randn({4, 3, 2, 5, 6}, gen, TensorOptions(DType::f64)).permute({2, 0, 1, 3, 4});
  Tensor b3 = randn({2, 4, 3, 6, 2}, gen, TensorOptions(DType::f64));
  Tensor scores;
  {
    GemmRecorder r;
    scores = matmul(q, k);
    const std::map<GemmShape, int64_t> counts = r.counts();
    REQUIRE(counts.size() == 1);
    CHECK(counts.begin()->first.batch == heads);
    CHECK(counts.begin()->second == n);
  }
  CHECK(max_abs_diff(scores, matmul(q.contiguous(), k.contiguous())) < 1e-14);
  {
    GemmRecorder r3;
    CHECK(max_abs_diff(matmul(a3, b3), matmul(a3.contiguous(), b3)) < 1e-14);
    const std::map<GemmShape, int64_t> c3 = r3.counts();
    REQUIRE(c3.size() == 2);  // the view: 2 outer entries of 4 x 3; the copy: one batch of 24
    CHECK(c3.begin()->first.batch * c3.begin()->second + c3.rbegin()->first.batch * c3.rbegin()->second == 48);
  }
  // Against the definition, entry by entry.
  const Tensor qc = q.contiguous(), kc = k.contiguous();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t h = 0; h < heads; ++h) {
      Tensor want = matmul(qc.select(0, i).select(0, h), kc.select(0, i).select(0, h));
      CHECK(max_abs_diff(scores.select(0, i).select(0, h), want) < 1e-14);
    }
}

}  // namespace dualflow::testing
