// Forward values of the image and attention ops against direct definitions (the op harness
// checks their derivatives; this checks that the forward computes the right function).
#include <catch2/catch.hpp>

#include "tests/engine/test_util.h"

using namespace dualflow;
using namespace dualflow::testing;

namespace {

// out[n, o, y, x] = b[o] + sum_{c, ky, kx} w[o, c, ky, kx] * in[n, g*C/G + c, y*s - p + ky*d, x*s - p + kx*d]
Tensor direct_conv(const Tensor& x, const Tensor& w, const Tensor& b, Pair s, Pair p, Pair d, int64_t groups) {
  auto X = x.to_vector<double>(), W = w.to_vector<double>();
  const int64_t N = x.shape()[0], C = x.shape()[1], H = x.shape()[2], Wd = x.shape()[3];
  const int64_t O = w.shape()[0], Cg = w.shape()[1], KH = w.shape()[2], KW = w.shape()[3];
  const int64_t HO = (H + 2 * p[0] - d[0] * (KH - 1) - 1) / s[0] + 1;
  const int64_t WO = (Wd + 2 * p[1] - d[1] * (KW - 1) - 1) / s[1] + 1;
  std::vector<double> B = b.defined() ? b.to_vector<double>() : std::vector<double>(O, 0.0);
  std::vector<double> out(N * O * HO * WO);
  const int64_t Og = O / groups;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oy = 0; oy < HO; ++oy)
        for (int64_t ox = 0; ox < WO; ++ox) {
          double acc = B[o];
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t ky = 0; ky < KH; ++ky)
              for (int64_t kx = 0; kx < KW; ++kx) {
                int64_t iy = oy * s[0] - p[0] + ky * d[0], ix = ox * s[1] - p[1] + kx * d[1];
                if (iy < 0 || iy >= H || ix < 0 || ix >= Wd) continue;
                int64_t ci = (o / Og) * Cg + c;
                acc += W[((o * Cg + c) * KH + ky) * KW + kx] * X[((n * C + ci) * H + iy) * Wd + ix];
              }
          out[((n * O + o) * HO + oy) * WO + ox] = acc;
        }
  return from_vector(out, {N, O, HO, WO}, DType::f64);
}

}  // namespace

TEST_CASE("conv2d equals the direct sum over windows", "[image]") {
  struct Case {
    Shape x, w;
    Pair s, p, d;
    int64_t groups;
    bool bias;
  };
  std::vector<Case> cases = {
      {{2, 3, 7, 6}, {4, 3, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 1, true},
      {{1, 2, 9, 8}, {3, 2, 3, 2}, {2, 3}, {0, 1}, {1, 1}, 1, false},
      {{1, 2, 9, 9}, {2, 2, 3, 3}, {1, 1}, {2, 2}, {2, 2}, 1, true},
      {{2, 4, 5, 5}, {6, 2, 3, 3}, {1, 1}, {1, 1}, {1, 1}, 2, true},
      {{2, 3, 4, 5}, {5, 3, 1, 1}, {1, 1}, {0, 0}, {1, 1}, 1, true},
      {{1, 1, 4, 4}, {1, 1, 4, 4}, {4, 4}, {0, 0}, {1, 1}, 1, false},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& k = cases[i];
    INFO("case " << i);
    Tensor x = uniform_f64(k.x, -1, 1, 10 + i), w = uniform_f64(k.w, -1, 1, 20 + i);
    Tensor b = k.bias ? uniform_f64({k.w[0]}, -1, 1, 30 + i) : Tensor();
    Tensor want = direct_conv(x, w, b, k.s, k.p, k.d, k.groups);
    require_close(conv2d(x, w, b, k.s, k.p, k.d, k.groups), want, 1e-12, 1e-12, "f64");
    Tensor got32 =
        conv2d(x.to(DType::f32), w.to(DType::f32), b.defined() ? b.to(DType::f32) : b, k.s, k.p, k.d, k.groups);
    require_close(got32.to(DType::f64), want, 1e-4, 1e-5, "f32");
  }
}

TEST_CASE("conv2d's direct 3x3 f32 path equals the window sum, with its gradients and JVP", "[image]") {
  // f32 3x3 stride-1 padding-1 convolutions go through the backend's direct kernel where it has
  // one (the CPU with AVX2), and so does the input gradient (the same convolution of the output
  // gradient with flipped, transposed weights). Widths around the kernel's 8-, 16- and 32-column
  // tiles, odd heights (its 2-row tiles), narrow images (its flat tiles across rows), and
  // channel counts around its 6-, 11- and 12-channel blocks; f64 runs the im2col path.
  struct Case {
    Shape x;
    int64_t o;
    bool bias;
  };
  const std::vector<Case> cases = {{{1, 1, 1, 1}, 1, true},    {{2, 3, 5, 7}, 5, true},   {{1, 2, 4, 8}, 13, false},
                                   {{3, 2, 9, 9}, 6, true},    {{1, 4, 6, 16}, 7, true},  {{2, 3, 3, 17}, 12, false},
                                   {{1, 2, 28, 28}, 8, true},  {{1, 1, 2, 33}, 1, true},  {{1, 3, 7, 15}, 25, true},
                                   {{2, 2, 5, 32}, 24, false}, {{1, 2, 3, 31}, 11, true}, {{1, 3, 7, 7}, 25, true},
                                   {{2, 2, 9, 3}, 12, false}, {{1, 3, 10, 20}, 22, true}, {{1, 2, 14, 14}, 23, true}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& k = cases[i];
    INFO("case " << i << ": x " << k.x.str() << ", " << k.o << " output channels");
    const Shape ws{k.o, k.x[1], 3, 3};
    Tensor x = uniform_f64(k.x, -1, 1, 40 + i), w = uniform_f64(ws, -1, 1, 50 + i);
    Tensor b = k.bias ? uniform_f64({k.o}, -1, 1, 60 + i) : Tensor();
    Tensor want = direct_conv(x, w, b, {1, 1}, {1, 1}, {1, 1}, 1);
    auto f32 = [](const Tensor& t) { return t.defined() ? t.to(DType::f32) : t; };
    require_close(conv2d(f32(x), f32(w), f32(b), {1, 1}, {1, 1}).to(DType::f64), want, 1e-5, 1e-5, "forward");

    // Gradients of <seed, conv(x, w, b)> and the JVP along (dx, dw, db): f32 against f64.
    Tensor seed = uniform_f64(want.shape(), -1, 1, 70 + i), dx = uniform_f64(k.x, -1, 1, 80 + i),
           dw = uniform_f64(ws, -1, 1, 90 + i), db = k.bias ? uniform_f64({k.o}, -1, 1, 100 + i) : Tensor();
    auto grads = [&](DType t) {
      std::vector<Tensor> in = {x.to(t), w.to(t)};
      if (k.bias) in.push_back(b.to(t));
      return grad(
          [&](const std::vector<Tensor>& v) {
            return sum(conv2d(v[0], v[1], k.bias ? v[2] : Tensor(), {1, 1}, {1, 1}) * seed.to(t));
          },
          in);
    };
    std::vector<Tensor> g64 = grads(DType::f64), g32 = grads(DType::f32);
    for (size_t j = 0; j < g64.size(); ++j)
      require_close(g32[j].to(DType::f64), g64[j], 1e-4, 1e-4, "gradient of input " + std::to_string(j));
    auto tangent = [&](DType t) {
      std::vector<Tensor> in = {x.to(t), w.to(t)}, dir = {dx.to(t), dw.to(t)};
      if (k.bias) in.push_back(b.to(t)), dir.push_back(db.to(t));
      return jvp(
                 [&](const std::vector<Tensor>& v) {
                   return std::vector<Tensor>{conv2d(v[0], v[1], k.bias ? v[2] : Tensor(), {1, 1}, {1, 1})};
                 },
                 in, dir)
          .tangents[0];
    };
    require_close(tangent(DType::f32).to(DType::f64), tangent(DType::f64), 1e-4, 1e-4, "JVP");
  }
}

TEST_CASE("conv2d's Winograd path equals the window sum within f32 rounding, with its gradients and JVP", "[image]") {
  // With AVX-512, f32 3x3 stride-1 padding-1 convolutions with at least 16 input and 16 output
  // channels (and images at least 4x4) run F(4x4, 3x3) Winograd, and so does their input
  // gradient (the same geometry with the channel counts swapped). Sizes around its 4x4 tiles
  // (partial tiles at the right and bottom), its 16-channel vectors and 32-channel register
  // tiles, and batches that split its blocks of images. Its error is measured against the f64
  // window sum relative to the sum of |products| at each output (what any f32 summation order
  // is bounded by): the transforms' constants cost about a decimal digit over the window sum.
  struct Case {
    Shape x;
    int64_t o;
  };
  const std::vector<Case> cases = {{{1, 16, 4, 4}, 16},   {{2, 16, 7, 7}, 17},  {{1, 17, 5, 9}, 33},
                                   {{3, 32, 14, 14}, 40}, {{1, 48, 6, 13}, 16}, {{1, 16, 28, 28}, 32},
                                   {{9, 20, 9, 4}, 64},   {{1, 130, 8, 8}, 20}};
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& k = cases[i];
    INFO("case " << i << ": x " << k.x.str() << ", " << k.o << " output channels");
    const Shape ws{k.o, k.x[1], 3, 3};
    Tensor x = uniform_f64(k.x, -1, 1, 140 + i), w = uniform_f64(ws, -1, 1, 150 + i), b = uniform_f64({k.o}, -1, 1, 160 + i);
    Tensor want = direct_conv(x, w, b, {1, 1}, {1, 1}, {1, 1}, 1);
    Tensor scale = direct_conv(abs(x), abs(w), abs(b), {1, 1}, {1, 1}, {1, 1}, 1);
    auto f32 = [](const Tensor& t) { return t.to(DType::f32); };
    Tensor got = conv2d(f32(x), f32(w), f32(b), {1, 1}, {1, 1}).to(DType::f64);
    // Measured up to 2.3e-6 here.
    REQUIRE(max_abs((got - want) / scale) < 1e-5);

    // The input gradient (Winograd with the channel counts swapped), the weight gradient and
    // the JVP, f32 against f64, with an absolute bound that grows with the products per sum
    // (9 * channels of values up to 1: the JVP's two convolutions can cancel to near zero).
    const double atol = 2e-6 * 9 * double(std::max(k.x[1], k.o));
    Tensor seed = uniform_f64(want.shape(), -1, 1, 170 + i), dx = uniform_f64(k.x, -1, 1, 180 + i),
           dw = uniform_f64(ws, -1, 1, 190 + i);
    auto grads = [&](DType t) {
      return grad([&](const std::vector<Tensor>& v) { return sum(conv2d(v[0], v[1], Tensor(), {1, 1}, {1, 1}) * seed.to(t)); },
                  {x.to(t), w.to(t)});
    };
    std::vector<Tensor> g64 = grads(DType::f64), g32 = grads(DType::f32);
    for (size_t j = 0; j < g64.size(); ++j)
      require_close(g32[j].to(DType::f64), g64[j], 1e-4, atol, "gradient of input " + std::to_string(j));
    auto tangent = [&](DType t) {
      return jvp([&](const std::vector<Tensor>& v) { return std::vector<Tensor>{conv2d(v[0], v[1], Tensor(), {1, 1}, {1, 1})}; },
                 {x.to(t), w.to(t)}, {dx.to(t), dw.to(t)})
          .tangents[0];
    };
    require_close(tangent(DType::f32).to(DType::f64), tangent(DType::f64), 1e-4, atol, "JVP");
  }
  // Each output tile is one thread's, summed in a fixed order: the same bits at any thread count.
  Tensor x = uniform_f64({7, 24, 14, 14}, -1, 1, 200).to(DType::f32).set_requires_grad();
  Tensor w = uniform_f64({40, 24, 3, 3}, -1, 1, 201).to(DType::f32).set_requires_grad();
  Tensor b = uniform_f64({40}, -1, 1, 202).to(DType::f32);
  Tensor dy = uniform_f64({7, 40, 14, 14}, -1, 1, 203).to(DType::f32);
  require_same_bits_at_any_thread_count([&] {
    Tensor y = conv2d(x, w, b, {1, 1}, {1, 1});
    std::vector<Tensor> g = grad({y}, {x}, {dy});
    g.push_back(y.detach());
    return g;
  });
}

TEST_CASE("col2im is the adjoint of im2col", "[image]") {
  Tensor x = uniform_f64({2, 3, 6, 5}, -1, 1, 1);
  Tensor cols = im2col(x, {3, 2}, {2, 1}, {1, 1}, {1, 2});
  Tensor w = uniform_f64(cols.shape(), -1, 1, 2);
  Tensor back = col2im(w, {6, 5}, {3, 2}, {2, 1}, {1, 1}, {1, 2});
  REQUIRE(back.shape() == x.shape());
  REQUIRE(std::abs(dot(cols, w) - dot(x, back)) < 1e-12);
}

TEST_CASE("image op shapes are checked with clear messages", "[image]") {
  Tensor x = zeros({1, 3, 8, 8});
  REQUIRE_THROWS_WITH(conv2d(x, zeros({4, 2, 3, 3})),
                      Catch::Contains("expects 2 input channels") && Catch::Contains("has 3"));
  REQUIRE_THROWS_WITH(conv2d(zeros({3, 8, 8}), zeros({4, 3, 3, 3})), Catch::Contains("must be 4-D"));
  REQUIRE_THROWS_WITH(conv2d(x, zeros({4, 3, 9, 9})), Catch::Contains("larger than the padded image"));
  REQUIRE_THROWS_WITH(group_norm(x, 2), Catch::Contains("groups (2) must divide the channels (3)"));
  REQUIRE_THROWS_WITH(upsample2d(x, 0), Catch::Contains("scale must be >= 1"));
}

TEST_CASE("bilinear upsampling matches half-pixel interpolation", "[image]") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3, 4}, {1, 1, 2, 2}, DType::f64);
  // The values PyTorch's interpolate(mode="bilinear", align_corners=False) gives for this input.
  std::vector<double> want = {1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0};
  require_close(upsample2d(x, 2, UpsampleMode::Bilinear), from_vector(want, {1, 1, 4, 4}, DType::f64), 0, 1e-15,
                "bilinear");
  std::vector<double> nearest = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
  require_close(upsample2d(x, 2), from_vector(nearest, {1, 1, 4, 4}, DType::f64), 0, 0, "nearest");
}

TEST_CASE("avg_pool2d averages windows and drops a ragged edge", "[image]") {
  Tensor x = arange(0, 15, 1, DType::f64).reshape({1, 1, 3, 5});
  // windows {0,1,5,6} and {2,3,7,8}; the last row and column do not fill a window
  require_close(avg_pool2d(x, 2), from_vector(std::vector<double>{3, 5}, {1, 1, 1, 2}, DType::f64), 0, 1e-15, "pool");
}

TEST_CASE("group_norm normalises each group of channels", "[image]") {
  Tensor x = uniform_f64({2, 4, 3, 3}, -3, 5, 7);
  Tensor w = uniform_f64({4}, 0.5, 2, 8), b = uniform_f64({4}, -1, 1, 9);
  Tensor y = group_norm(x, 2, w, b, 1e-5);
  // Undo the affine part and check mean 0 / variance 1 per (sample, group).
  Tensor z = ((y - b.reshape({1, 4, 1, 1})) / w.reshape({1, 4, 1, 1})).reshape({2, 2, 18});
  require_close(mean(z, {2}), zeros({2, 2}, DType::f64), 0, 1e-12, "mean");
  Tensor v = var(z, {2}, 0);
  Tensor xg = x.reshape({2, 2, 18});
  Tensor expected_var = var(xg, {2}, 0) / (var(xg, {2}, 0) + 1e-5);
  require_close(v, expected_var, 1e-10, 1e-12, "variance");
}

TEST_CASE("group_norm's fused backward kernel equals its rule in engine ops", "[image]") {
  // A plain backward runs the backend's fused kernel (the CPU has one); with create_graph the
  // same gradients come from the rule in engine ops, which is what nesting differentiates.
  for (DType t : {DType::f64, DType::f32}) {
    INFO(std::string(dtype_name(t)));
    for (auto [shape, groups] : {std::pair<Shape, int64_t>{{4, 32, 7, 7}, 8}, {{3, 6, 5}, 3}, {{2, 4, 1, 1}, 4}}) {
      const int64_t c = shape[1];
      Tensor x = uniform_f64(shape, -2, 3, 11).to(t).set_requires_grad();
      Tensor w = uniform_f64({c}, 0.5, 2, 12).to(t).set_requires_grad();
      Tensor b = uniform_f64({c}, -1, 1, 13).to(t).set_requires_grad();
      Tensor dy = uniform_f64(shape, -1, 1, 14).to(t);
      std::vector<Tensor> fused = grad({group_norm(x, groups, w, b)}, {x, w, b}, {dy});
      std::vector<Tensor> composed = grad({group_norm(x, groups, w, b)}, {x, w, b}, {dy}, false, true);
      const double tol = t == DType::f64 ? 1e-12 : 2e-5;
      for (size_t i = 0; i < 3; ++i)
        require_close(fused[i].detach().to(DType::f64), composed[i].detach().to(DType::f64), tol, tol, "gradient");
      // Without weight and bias, and with only the input's gradient asked for.
      Tensor x_only = grad({group_norm(x, groups)}, {x}, {dy})[0];
      Tensor x_only_composed = grad({group_norm(x, groups)}, {x}, {dy}, false, true)[0];
      require_close(x_only.detach().to(DType::f64), x_only_composed.detach().to(DType::f64), tol, tol, "input only");
    }
  }
}

TEST_CASE("group_norm_silu equals silu(group_norm), and its fused kernels equal its rules in engine ops", "[image]") {
  for (DType t : {DType::f64, DType::f32}) {
    INFO(std::string(dtype_name(t)));
    for (auto [shape, groups] : {std::pair<Shape, int64_t>{{4, 32, 7, 7}, 8}, {{3, 6, 5}, 3}, {{2, 4, 1, 1}, 4}}) {
      const int64_t c = shape[1];
      Tensor x = uniform_f64(shape, -2, 3, 21).to(t).set_requires_grad();
      Tensor w = uniform_f64({c}, 0.5, 2, 22).to(t).set_requires_grad();
      Tensor b = uniform_f64({c}, -1, 1, 23).to(t).set_requires_grad();
      Tensor dy = uniform_f64(shape, -1, 1, 24).to(t);
      const double tol = t == DType::f64 ? 1e-12 : 2e-5;
      require_close(group_norm_silu(x, groups, w, b).detach().to(DType::f64),
                    silu(group_norm(x, groups, w, b)).detach().to(DType::f64), tol, tol, "forward");
      std::vector<Tensor> fused = grad({group_norm_silu(x, groups, w, b)}, {x, w, b}, {dy});
      std::vector<Tensor> composed = grad({group_norm_silu(x, groups, w, b)}, {x, w, b}, {dy}, false, true);
      std::vector<Tensor> separate = grad({silu(group_norm(x, groups, w, b))}, {x, w, b}, {dy});
      for (size_t i = 0; i < 3; ++i) {
        require_close(fused[i].detach().to(DType::f64), composed[i].detach().to(DType::f64), tol, tol, "gradient");
        require_close(fused[i].detach().to(DType::f64), separate[i].detach().to(DType::f64), tol, tol, "separate");
      }
      Tensor x_only = grad({group_norm_silu(x, groups)}, {x}, {dy})[0];
      Tensor x_only_separate = grad({silu(group_norm(x, groups))}, {x}, {dy})[0];
      require_close(x_only.detach().to(DType::f64), x_only_separate.detach().to(DType::f64), tol, tol, "input only");
    }
  }
  // The same bits at any thread count.
  Tensor x = uniform_f64({8, 32, 14, 14}, -2, 3, 25).to(DType::f32).set_requires_grad();
  Tensor w = uniform_f64({32}, 0.5, 2, 26).to(DType::f32).set_requires_grad();
  Tensor b = uniform_f64({32}, -1, 1, 27).to(DType::f32).set_requires_grad();
  Tensor dy = uniform_f64({8, 32, 14, 14}, -1, 1, 28).to(DType::f32);
  require_same_bits_at_any_thread_count([&] {
    Tensor y = group_norm_silu(x, 8, w, b);
    std::vector<Tensor> g = grad({y}, {x, w, b}, {dy});
    g.push_back(y.detach());
    return g;
  });
}

TEST_CASE("conv2d's weight and bias gradients from the backend equal the engine's (window matrix times the output gradient)",
          "[image]") {
  // A plain backward asks the backend (the CPU interleaves im2col and GEMM per image, or, for
  // f32 3x3 stride-1 padding-1 windows with AVX-512, runs its direct kernel: output channels
  // around its 16- and 32-lane tiles, input channels split across threads; or, with 16+
  // channels on each side, its Winograd kernel); with create_graph
  // the engine multiplies the whole batch's window matrix in engine ops. The two f32 results
  // round differently (sums of up to 1,000 products), hence the f32 tolerance.
  struct Case {
    Shape x, w;
    Pair s, p, d;
  };
  const std::vector<Case> cases = {{{3, 5, 9, 8}, {4, 5, 3, 3}, {1, 1}, {1, 1}, {1, 1}},
                                   {{2, 3, 9, 11}, {6, 3, 3, 2}, {2, 3}, {0, 1}, {1, 1}},
                                   {{2, 2, 10, 9}, {3, 2, 3, 3}, {1, 2}, {2, 2}, {2, 2}},
                                   {{4, 7, 6, 6}, {5, 7, 1, 1}, {1, 1}, {0, 0}, {1, 1}},
                                   {{3, 9, 7, 13}, {7, 9, 3, 3}, {1, 1}, {1, 1}, {1, 1}},
                                   {{2, 4, 5, 30}, {3, 4, 3, 3}, {1, 1}, {1, 1}, {1, 1}},
                                   {{1, 1, 1, 1}, {1, 1, 3, 3}, {1, 1}, {1, 1}, {1, 1}},
                                   {{5, 6, 14, 14}, {8, 6, 3, 3}, {1, 1}, {1, 1}, {1, 1}},
                                   {{2, 3, 6, 5}, {33, 3, 3, 3}, {1, 1}, {1, 1}, {1, 1}},
                                   {{2, 2, 4, 4}, {48, 2, 3, 3}, {1, 1}, {1, 1}, {1, 1}},
                                   {{3, 16, 9, 8}, {17, 16, 3, 3}, {1, 1}, {1, 1}, {1, 1}},
                                   {{9, 40, 5, 13}, {33, 40, 3, 3}, {1, 1}, {1, 1}, {1, 1}},
                                   {{26, 16, 14, 14}, {16, 16, 3, 3}, {1, 1}, {1, 1}, {1, 1}}};  // 3 groups
  for (DType t : {DType::f64, DType::f32})
    for (size_t i = 0; i < cases.size(); ++i) {
      INFO("case " << i << " " << std::string(dtype_name(t)));
      const Case& k = cases[i];
      Tensor x = uniform_f64(k.x, -1, 1, 40 + i).to(t).set_requires_grad();
      Tensor w = uniform_f64(k.w, -1, 1, 50 + i).to(t).set_requires_grad();
      Tensor b = uniform_f64({k.w[0]}, -1, 1, 65 + i).to(t).set_requires_grad();
      Tensor y = conv2d(x, w, b, k.s, k.p, k.d, 1);
      Tensor dy = uniform_f64(y.shape(), -1, 1, 60 + i).to(t);
      std::vector<Tensor> backend = grad({conv2d(x, w, b, k.s, k.p, k.d, 1)}, {w, b}, {dy});
      std::vector<Tensor> engine = grad({y}, {w, b}, {dy}, false, true);
      const double tol = t == DType::f64 ? 1e-12 : 1e-4;
      require_close(backend[0].detach().to(DType::f64), engine[0].detach().to(DType::f64), tol, tol, "weight gradient");
      require_close(backend[1].detach().to(DType::f64), engine[1].detach().to(DType::f64), tol, tol, "bias gradient");
    }
  // The same bits at any thread count.
  Tensor x = uniform_f64({6, 10, 14, 14}, -1, 1, 70).to(DType::f32);
  Tensor w = uniform_f64({11, 10, 3, 3}, -1, 1, 71).to(DType::f32).set_requires_grad();
  Tensor dy = uniform_f64({6, 11, 14, 14}, -1, 1, 72).to(DType::f32);
  Tensor b = uniform_f64({11}, -1, 1, 73).to(DType::f32).set_requires_grad();
  require_same_bits_at_any_thread_count([&] { return grad({conv2d(x, w, b, {1, 1}, {1, 1})}, {w, b}, {dy}); });
  // And through the Winograd weight gradient (16+ channels each side), whose threads take
  // groups of images (here 3 groups of 9, 9 and 8 images of 16 tiles) and add the groups' sums
  // in order.
  Tensor x2 = uniform_f64({26, 40, 14, 14}, -1, 1, 74).to(DType::f32);
  Tensor w2 = uniform_f64({24, 40, 3, 3}, -1, 1, 75).to(DType::f32).set_requires_grad();
  Tensor dy2 = uniform_f64({26, 24, 14, 14}, -1, 1, 76).to(DType::f32);
  Tensor b2 = uniform_f64({24}, -1, 1, 77).to(DType::f32).set_requires_grad();
  require_same_bits_at_any_thread_count([&] { return grad({conv2d(x2, w2, b2, {1, 1}, {1, 1})}, {w2, b2}, {dy2}); });
}

TEST_CASE("attention equals softmax(q k^T / sqrt(d)) v", "[image]") {
  Tensor q = uniform_f64({2, 3, 4}, -1, 1, 1), k = uniform_f64({2, 5, 4}, -1, 1, 2),
         v = uniform_f64({2, 5, 6}, -1, 1, 3);
  auto Q = q.to_vector<double>(), K = k.to_vector<double>(), Vv = v.to_vector<double>();
  std::vector<double> want(2 * 3 * 6);
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 3; ++i) {
      std::vector<double> s(5);
      double m = -1e300, z = 0;
      for (int j = 0; j < 5; ++j) {
        double acc = 0;
        for (int d = 0; d < 4; ++d) acc += Q[(b * 3 + i) * 4 + d] * K[(b * 5 + j) * 4 + d];
        s[j] = acc / 2.0;
        m = std::max(m, s[j]);
      }
      for (int j = 0; j < 5; ++j) z += (s[j] = std::exp(s[j] - m));
      for (int e = 0; e < 6; ++e) {
        double acc = 0;
        for (int j = 0; j < 5; ++j) acc += s[j] / z * Vv[(b * 5 + j) * 6 + e];
        want[(b * 3 + i) * 6 + e] = acc;
      }
    }
  require_close(scaled_dot_product_attention(q, k, v), from_vector(want, {2, 3, 6}, DType::f64), 1e-12, 1e-14,
                "attention");
}
