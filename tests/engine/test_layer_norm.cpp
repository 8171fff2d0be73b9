// layer_norm with a per-sample affine (adaLN modulation) and its fused CPU kernels: the forward
// against normalisation then affine ops, the fused backward and tangent against the rules in
// engine ops (which the op harness holds to finite differences), and the same bits at any
// thread count.
#include <catch2/catch.hpp>

#include "tests/engine/test_util.h"

using namespace dualflow;
using namespace dualflow::testing;

namespace {

struct AffineCase {
  Shape x, w, b;  // an empty shape: no weight (bias)
};

// Per-sample rows (groups of 7 and of 70 rows, more than one block of the backward's sums),
// one shared row, none, a mixed pair, and an affine with no per-group form (broadcast in full).
const std::vector<AffineCase> kCases = {
    {{4, 7, 16}, {4, 1, 16}, {4, 1, 16}},
    {{3, 70, 8}, {3, 1, 8}, {3, 1, 8}},
    {{2, 3, 4, 6}, {2, 1, 1, 6}, {}},
    {{50, 12}, {12}, {12}},
    {{5, 9}, {}, {}},
    {{4, 7, 16}, {16}, {4, 1, 16}},
    {{2, 3, 5}, {3, 5}, {2, 3, 5}},
};

Tensor maybe(const Shape& s, double lo, double hi, uint64_t seed, DType t) {
  return s.empty() ? Tensor() : uniform_f64(s, lo, hi, seed).to(t).set_requires_grad();
}

std::vector<Tensor> defined_of(std::initializer_list<Tensor> ts) {
  std::vector<Tensor> out;
  for (const Tensor& t : ts)
    if (t.defined()) out.push_back(t);
  return out;
}

}  // namespace

TEST_CASE("layer_norm with a per-sample affine equals the normalisation followed by the affine ops", "[layer_norm]") {
  for (const AffineCase& c : kCases) {
    INFO(c.x.str() << " w " << c.w.str() << " b " << c.b.str());
    Tensor x = uniform_f64(c.x, -2, 3, 1);
    Tensor w = c.w.empty() ? Tensor() : uniform_f64(c.w, 0.5, 2, 2),
           b = c.b.empty() ? Tensor() : uniform_f64(c.b, -1, 1, 3);
    Tensor expected = layer_norm(x, c.x.back());
    if (w.defined()) expected = expected * w;
    if (b.defined()) expected = expected + b;
    require_close(layer_norm(x, c.x.back(), w, b), expected, 1e-13, 1e-13, "forward");
  }
}

TEST_CASE("layer_norm's fused backward and tangent kernels equal its rules in engine ops", "[layer_norm]") {
  // A plain backward and a tangent pass without tape run the backend's fused kernels (the CPU
  // has them); with create_graph, or differentiable tangents, the rules in engine ops run.
  for (DType t : {DType::f64, DType::f32}) {
    const double tol = t == DType::f64 ? 1e-12 : 3e-5;
    for (const AffineCase& c : kCases) {
      INFO(dtype_name(t) << " " << c.x.str() << " w " << c.w.str() << " b " << c.b.str());
      Tensor x = uniform_f64(c.x, -2, 3, 11).to(t).set_requires_grad();
      Tensor w = maybe(c.w, 0.5, 2, 12, t), b = maybe(c.b, -1, 1, 13, t);
      const int64_t n = c.x.back();
      Tensor dy = uniform_f64(c.x, -1, 1, 14).to(t);
      std::vector<Tensor> inputs = defined_of({x, w, b});
      std::vector<Tensor> fused = grad({layer_norm(x, n, w, b)}, inputs, {dy});
      std::vector<Tensor> composed = grad({layer_norm(x, n, w, b)}, inputs, {dy}, false, true);
      for (size_t i = 0; i < inputs.size(); ++i)
        require_close(fused[i].detach().to(DType::f64), composed[i].detach().to(DType::f64), tol, tol, "gradient");
      // Only the input's gradient asked for.
      Tensor x_only = grad({layer_norm(x, n, w, b)}, {x}, {dy})[0];
      require_close(x_only.detach().to(DType::f64), composed[0].detach().to(DType::f64), tol, tol, "input only");

      // Tangents: all inputs moving, then only the input, then only the affine.
      auto f = [&](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{
            layer_norm(in[0], n, w.defined() ? in[1] : Tensor(), b.defined() ? in.back() : Tensor())};
      };
      std::vector<Tensor> primals =
          defined_of({x.detach(), w.defined() ? w.detach() : Tensor(), b.defined() ? b.detach() : Tensor()});
      std::vector<Tensor> all, x_moves, affine_moves;
      for (size_t i = 0; i < primals.size(); ++i) {
        Tensor dir = uniform_f64(primals[i].shape(), -1, 1, 20 + i).to(t);
        all.push_back(dir);
        x_moves.push_back(i == 0 ? dir : Tensor());
        affine_moves.push_back(i == 0 ? Tensor() : dir);
      }
      for (const auto* tangents : {&all, &x_moves, &affine_moves}) {
        if (tangents == &affine_moves && primals.size() == 1) continue;
        JvpResult plain = jvp(f, primals, *tangents, JvpOptions{.differentiable_tangents = false});
        JvpResult taped = jvp(f, primals, *tangents);
        require_close(plain.tangents[0].to(DType::f64), taped.tangents[0].detach().to(DType::f64), tol, tol, "tangent");
      }
    }
  }
}

TEST_CASE("layer_norm's fused kernels give the same bits at any thread count", "[layer_norm]") {
  // Enough rows per group that the backward's sums split into several blocks and threads.
  Tensor x = uniform_f64({6, 300, 24}, -2, 3, 31).to(DType::f32).set_requires_grad();
  Tensor w = uniform_f64({6, 1, 24}, 0.5, 2, 32).to(DType::f32).set_requires_grad();
  Tensor shared_b = uniform_f64({24}, -1, 1, 33).to(DType::f32).set_requires_grad();
  Tensor dy = uniform_f64({6, 300, 24}, -1, 1, 34).to(DType::f32);
  require_same_bits_at_any_thread_count([&] {
    Tensor y = layer_norm(x, 24, w, shared_b);
    std::vector<Tensor> g = grad({y}, {x, w, shared_b}, {dy});
    g.push_back(y.detach());
    return g;
  });
}

TEST_CASE("layer_norm refuses an affine that does not broadcast to the input", "[layer_norm]") {
  Tensor x = zeros({2, 3, 4});
  REQUIRE_THROWS_WITH(layer_norm(x, 4, zeros({5})), Catch::Contains("weight must have shape [4]"));
  REQUIRE_THROWS_WITH(
      layer_norm(x, 4, Tensor(), zeros({3, 3, 4})),
      Catch::Contains("bias must have shape [4] or broadcast to the input [2,3,4]") && Catch::Contains("got [3,3,4]"));
  REQUIRE_THROWS_WITH(layer_norm(x, 4, zeros({1, 2, 3, 4})), Catch::Contains("got [1,2,3,4]"));
}
