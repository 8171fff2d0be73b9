// Tensor basics: views share storage, copies and conversions, factories, printing, the
// Philox generator's reproducibility and saved state, and clear errors for bad input.
#include "kernels/common/backend.h"
#include "kernels/cpu/parallel.h"
#include "test_util.h"

namespace dualflow::testing {

TEST_CASE("views share storage; contiguous and clone copy", "[tensor]") {
  Tensor a = arange(12, DType::f32).reshape(Shape{3, 4});
  Tensor t = a.t();
  REQUIRE(t.shape() == Shape{4, 3});
  REQUIRE_FALSE(t.is_contiguous());
  REQUIRE(t.impl()->storage == a.impl()->storage);
  Tensor n = a.narrow(1, 1, 2);
  REQUIRE(n.impl()->storage == a.impl()->storage);
  REQUIRE(n.to_vector<float>() == std::vector<float>{1, 2, 5, 6, 9, 10});
  fill_(n, -1.0);  // writes through the view
  REQUIRE(a.to_vector<float>() == std::vector<float>{0, -1, -1, 3, 4, -1, -1, 7, 8, -1, -1, 11});
  Tensor c = t.contiguous();
  REQUIRE(c.is_contiguous());
  REQUIRE(c.impl()->storage != a.impl()->storage);
  REQUIRE(c.to_vector<float>() == std::vector<float>{0, 4, 8, -1, -1, -1, -1, -1, -1, 3, 7, 11});
  Tensor e = from_vector(std::vector<float>{1, 2, 3}, Shape{3, 1}).expand(Shape{3, 2});
  REQUIRE(e.strides()[1] == 0);
  REQUIRE(e.contiguous().to_vector<float>() == std::vector<float>{1, 1, 2, 2, 3, 3});
  REQUIRE(a.unsqueeze(0).shape() == Shape{1, 3, 4});
  REQUIRE(a.unsqueeze(0).squeeze(0).shape() == Shape{3, 4});
  REQUIRE(a.permute({1, 0}).shape() == Shape{4, 3});
  REQUIRE(a.slice(1, 0, 4, 2).to_vector<float>() == std::vector<float>{0, -1, 4, -1, 8, -1});
  REQUIRE(a.reshape(Shape{-1}).shape() == Shape{12});
  REQUIRE(a.flatten().shape() == Shape{12});
}

TEST_CASE("batched matmul reads strided operands in place and equals matmul of their copies", "[tensor]") {
  // Small integers: every path (strided views with transpose flags, copies, widened 16-bit
  // floats) sums exactly, so the results must agree bit for bit.
  auto ints = [](Shape s, int64_t mod, DType t) {
    std::vector<double> v(static_cast<size_t>(s.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = double(int64_t(i * 7) % mod) - 2.0;
    return from_vector(v, s, DType::f64).to(t);
  };
  for (DType t : {DType::f32, DType::f64, DType::bf16}) {
    INFO(dtype_name(t));
    Tensor cols = ints(Shape{3, 1, 6, 5}, 5, t), go = ints(Shape{3, 1, 4, 5}, 3, t);
    // A conv's weight gradient: [N, 1, O, L] x [N, 1, L, K] with the window matrix transposed.
    Tensor ct = cols.transpose(-2, -1);
    REQUIRE_FALSE(ct.is_contiguous());
    REQUIRE(matmul(go, ct).to(DType::f64).to_vector<double>() ==
            matmul(go, ct.contiguous()).to(DType::f64).to_vector<double>());
    // Batch dims that do not nest (copied), and a last-dim slice (row stride above its length).
    Tensor a = ints(Shape{2, 3, 4, 5}, 7, t).permute({1, 0, 2, 3}), b = ints(Shape{3, 2, 5, 8}, 4, t).narrow(3, 1, 6);
    REQUIRE(matmul(a, b).to(DType::f64).to_vector<double>() ==
            matmul(a.contiguous(), b.contiguous()).to(DType::f64).to_vector<double>());
  }
}

TEST_CASE("linear equals matmul + bias bit for bit on small integers, in every dtype and at empty sizes", "[tensor]") {
  auto ints = [](Shape s, int64_t mod, DType t) {
    std::vector<double> v(static_cast<size_t>(s.numel()));
    for (size_t i = 0; i < v.size(); ++i) v[i] = double(int64_t(i * 5) % mod) - 2.0;
    return from_vector(v, s, DType::f64).to(t);
  };
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    INFO(dtype_name(t));
    Tensor x = ints(Shape{2, 3, 4}, 5, t), w = ints(Shape{6, 4}, 4, t), b = ints(Shape{6}, 3, t);
    REQUIRE(linear(x, w, b).to(DType::f64).to_vector<double>() ==
            (matmul(x, w.t()) + b).to(DType::f64).to_vector<double>());
    REQUIRE(linear(x.transpose(0, 1), w, b).to(DType::f64).to_vector<double>() ==
            (matmul(x.transpose(0, 1).contiguous(), w.t()) + b).to(DType::f64).to_vector<double>());
  }
  // Shapes for the AVX-512 kernel's bias row (two k blocks, a partial last tile), split across
  // threads, and a narrow output that OpenBLAS multiplies.
  const int threads_before = cpu::num_threads();
  for (int threads : {1, 2}) {
    cpu::set_num_threads(threads);
    Tensor x = ints(Shape{50, 300}, 5, DType::f32), b = ints(Shape{70}, 7, DType::f32);
    for (int64_t out : {int64_t(70), int64_t(3)}) {
      INFO(threads << " threads, " << out << " outputs");
      Tensor w = ints(Shape{out, 300}, 4, DType::f32), bo = b.narrow(0, 0, out);
      REQUIRE(linear(x, w, bo).to_vector<float>() == (matmul(x, w.t()) + bo).to_vector<float>());
    }
  }
  cpu::set_num_threads(threads_before);
  // No inputs: every row is the bias. No rows: an empty output.
  Tensor b = from_vector(std::vector<double>{1, 2, 3}, Shape{3}, DType::f32);
  Tensor rows_of_bias = linear(zeros(Shape{2, 0}, DType::f32), zeros(Shape{3, 0}, DType::f32), b);
  REQUIRE(rows_of_bias.shape() == Shape{2, 3});
  REQUIRE(rows_of_bias.to(DType::f64).to_vector<double>() == std::vector<double>{1, 2, 3, 1, 2, 3});
  REQUIRE(linear(zeros(Shape{0, 4}, DType::f32), zeros(Shape{3, 4}, DType::f32), b).shape() == Shape{0, 3});
  REQUIRE_THROWS_WITH(linear(zeros(Shape{2, 5}, DType::f32), zeros(Shape{3, 4}, DType::f32), b),
                      Catch::Contains("linear: input expected [..., 4], got [2,5]"));
  REQUIRE_THROWS_WITH(
      linear(zeros(Shape{2, 4}, DType::f32), zeros(Shape{3, 4}, DType::f32), zeros(Shape{4}, DType::f32)),
      Catch::Contains("linear: bias must be [3], got [4]"));
}

TEST_CASE("dtype conversions round-trip and 16-bit floats round to nearest even", "[tensor]") {
  Tensor x = from_vector(std::vector<double>{1.0, -2.5, 0.1, 65504.0, 1e-8, 3.0}, Shape{6}, DType::f64);
  auto h = x.to(DType::f16).to(DType::f64).to_vector<double>();
  REQUIRE(h[0] == 1.0);
  REQUIRE(h[1] == -2.5);
  REQUIRE(h[2] == Approx(0.0999755859375));
  REQUIRE(h[3] == 65504.0);
  REQUIRE(h[4] == Approx(0.0).margin(6e-8));
  auto b = x.to(DType::bf16).to(DType::f64).to_vector<double>();
  REQUIRE(b[2] == Approx(0.10009765625));
  REQUIRE(b[5] == 3.0);
  REQUIRE(x.to(DType::i64).to_vector<int64_t>() == std::vector<int64_t>{1, -2, 0, 65504, 0, 3});
  REQUIRE(from_vector(std::vector<int64_t>{0, 3}, Shape{2}).to(DType::b8).to_vector<uint8_t>() ==
          std::vector<uint8_t>{0, 1});
}

TEST_CASE("factories", "[tensor]") {
  REQUIRE(zeros(Shape{2, 2}).to_vector<float>() == std::vector<float>{0, 0, 0, 0});
  REQUIRE(ones(Shape{3}, DType::f64).to_vector<double>() == std::vector<double>{1, 1, 1});
  REQUIRE(full(Shape{2}, 7.5).to_vector<float>() == std::vector<float>{7.5, 7.5});
  REQUIRE(arange(0.0, 1.0, 0.25, DType::f64).to_vector<double>() == std::vector<double>{0, 0.25, 0.5, 0.75});
  REQUIRE(linspace(0, 1, 5, DType::f64).to_vector<double>() == std::vector<double>{0, 0.25, 0.5, 0.75, 1});
  REQUIRE(eye(3).to_vector<float>() == std::vector<float>{1, 0, 0, 0, 1, 0, 0, 0, 1});
  REQUIRE(scalar_tensor(2.0).dim() == 0);
  REQUIRE(scalar_tensor(2.0).item() == 2.0);
}

TEST_CASE("printing is readable", "[tensor]") {
  std::string s = arange(6, DType::f32).reshape(Shape{2, 3}).str();
  REQUIRE_THAT(s, Catch::Contains("shape=[2,3]") && Catch::Contains("dtype=f32") && Catch::Contains("[[0, 1, 2],"));
  REQUIRE_THAT(arange(100, DType::i64).str(), Catch::Contains("..."));
}

TEST_CASE("normal_window: any window of a draw, bit for bit, without drawing the rest or moving the generator",
          "[tensor][rng]") {
  for (DType dt : {DType::f32, DType::f64}) {
    Generator gen(11);
    gen.advance(3);  // a generator part-way along its stream
    Generator copy = gen;
    const Tensor whole = normal(Shape{9, 3}, 0.5, 2.0, copy, TensorOptions(dt));
    for (int64_t first : {0, 1, 5, 6, 13}) {
      const int64_t rows = (27 - first) / 3;
      const Tensor w = normal_window(Shape{rows, 3}, 0.5, 2.0, gen, first, TensorOptions(dt));
      const Tensor want = whole.reshape({27}).narrow(0, first, rows * 3).reshape({rows, 3});
      INFO(dtype_name(dt) << " first " << first);
      REQUIRE(max_abs_diff(w, want) == 0);
    }
    REQUIRE(gen.offset() == 3);  // not moved
  }
  REQUIRE_THROWS_WITH(normal_window(Shape{2}, 0, 1, Generator(1), -1), Catch::Contains("first must be >= 0"));
}

TEST_CASE("Philox generator: reproducible, state save/restore, sane distributions", "[tensor][rng]") {
  Generator g1(123), g2(123);
  Tensor a = randn(Shape{1000}, g1), b = randn(Shape{1000}, g2);
  REQUIRE(a.to_vector<float>() == b.to_vector<float>());
  auto st = g1.state();
  Tensor c = rand(Shape{77}, g1);
  g1.set_state(st);
  REQUIRE(rand(Shape{77}, g1).to_vector<float>() == c.to_vector<float>());
  REQUIRE(randn(Shape{10}, g1).to_vector<float>() != randn(Shape{10}, g1).to_vector<float>());
  Generator g(5);
  Tensor n = randn(Shape{200000}, g, DType::f64);
  REQUIRE(mean(n).item() == Approx(0.0).margin(0.01));
  REQUIRE(var(n).item() == Approx(1.0).epsilon(0.02));
  Tensor u = rand(Shape{200000}, g);
  REQUIRE(amin(u).item() >= 0.0);
  REQUIRE(amax(u).item() < 1.0);
  REQUIRE(mean(u).item() == Approx(0.5).margin(0.005));
  Tensor k = randint(-3, 4, Shape{10000}, g);
  REQUIRE(amin(k).item() == -3);
  REQUIRE(amax(k).item() == 3);
  // f32 and f64 draws of the same generator position are the same distribution, not a copy.
  Generator gf(9), gd(9);
  REQUIRE(randn(Shape{4}, gf).dtype() == DType::f32);
  REQUIRE(randn(Shape{4}, gd, DType::f64).dtype() == DType::f64);
}

TEST_CASE("bad input names the op, what was expected and what was given", "[tensor][errors]") {
  Tensor a = zeros(Shape{64, 3}), b = zeros(Shape{4, 8});
  REQUIRE_THROWS_WITH(matmul(a, b), Catch::Contains("matmul") && Catch::Contains("[64,3]") && Catch::Contains("[4,8]"));
  REQUIRE_THROWS_WITH(add(zeros(Shape{3}), zeros(Shape{4})),
                      Catch::Contains("add") && Catch::Contains("[3]") && Catch::Contains("[4]"));
  REQUIRE_THROWS_WITH(add(zeros(Shape{3}), zeros(Shape{3}, DType::f64)),
                      Catch::Contains("add") && Catch::Contains("f32") && Catch::Contains("f64"));
  REQUIRE_THROWS_WITH(exp(zeros(Shape{3}, DType::i64)),
                      Catch::Contains("exp") && Catch::Contains("floating") && Catch::Contains("i64"));
  REQUIRE_THROWS_WITH(index_select(zeros(Shape{3, 2}), 0, from_vector(std::vector<int64_t>{0, 5}, Shape{2})),
                      Catch::Contains("index_select") && Catch::Contains("5") && Catch::Contains("size 3"));
  REQUIRE_THROWS_WITH(gather(zeros(Shape{3, 2}), 1, from_vector(std::vector<int64_t>{0, -1, 0, 0, 1, 1}, Shape{3, 2})),
                      Catch::Contains("gather") && Catch::Contains("-1"));
  REQUIRE_THROWS_WITH(zeros(Shape{2, 3}).reshape(Shape{4, 2}),
                      Catch::Contains("reshape") && Catch::Contains("[4,2]") && Catch::Contains("6"));
  REQUIRE_THROWS_WITH(zeros(Shape{2, 3}).narrow(1, 2, 2), Catch::Contains("narrow") && Catch::Contains("size 3"));
  REQUIRE_THROWS_WITH(sum(zeros(Shape{2, 3}), {2}), Catch::Contains("sum") && Catch::Contains("dim 2"));
  REQUIRE_THROWS_WITH(layer_norm(zeros(Shape{2, 3}), 4), Catch::Contains("layer_norm") && Catch::Contains("4"));
  REQUIRE_THROWS_WITH(where(zeros(Shape{2}), zeros(Shape{2}), zeros(Shape{2})),
                      Catch::Contains("where") && Catch::Contains("bool"));
  REQUIRE_THROWS_WITH(cat({zeros(Shape{2, 3}), zeros(Shape{2, 4})}, 0),
                      Catch::Contains("cat") && Catch::Contains("[2,4]"));
  Tensor x = zeros(Shape{3}).set_requires_grad(true);
  REQUIRE_THROWS_WITH(mul(x, 2.0).backward(), Catch::Contains("backward") && Catch::Contains("[3]"));
  REQUIRE_THROWS_WITH(jvp([](const std::vector<Tensor>& v) { return v; }, {zeros(Shape{3})}, {zeros(Shape{4})}),
                      Catch::Contains("jvp") && Catch::Contains("[4]") && Catch::Contains("[3]"));
  REQUIRE_THROWS_WITH(Device::parse("gpu"), Catch::Contains("cuda:N") && Catch::Contains("gpu"));
  // Sizes whose elements, bytes or strides overflow 63 bits, even with nothing to allocate.
  REQUIRE_THROWS_WITH(Tensor::empty(Shape{int64_t(1) << 40, int64_t(1) << 40}),
                      Catch::Contains("empty") && Catch::Contains("[1099511627776,1099511627776]"));
  REQUIRE_THROWS_WITH(Tensor::empty(Shape{int64_t(1) << 61}, DType::f64), Catch::Contains("63 bits"));
  REQUIRE_THROWS_WITH(Tensor::empty(Shape{0, int64_t(1) << 62, int64_t(1) << 62}), Catch::Contains("63 bits"));
  REQUIRE(Tensor::empty(Shape{0, int64_t(1) << 40}).numel() == 0);
  if (!cuda_available()) {
    REQUIRE_THROWS_WITH(zeros(Shape{3}, Device::cuda()), Catch::Contains("cuda:0"));
  } else {
    REQUIRE_THROWS_WITH(add(zeros(Shape{3}), zeros(Shape{3}, Device::cuda())),
                        Catch::Contains("add") && Catch::Contains("cpu") && Catch::Contains("cuda:0"));
  }
}

TEST_CASE("cat records all its inputs in one node: wide concatenations differentiate in both modes", "[tensor]") {
  for (int count : {5, 70}) {  // within one node, and beyond one node's 64 inputs
    INFO(count);
    std::vector<Tensor> xs, ts;
    for (int i = 0; i < count; ++i) {
      xs.push_back(full(Shape{2, 1}, double(i), TensorOptions(DType::f64)));
      xs.back().set_requires_grad(true);
      ts.push_back(full(Shape{2, 1}, double(i % 3), TensorOptions(DType::f64)));
    }
    Tensor w = arange(2 * count, DType::f64).reshape(Shape{2, count});
    Tensor y = cat(xs, 1);
    REQUIRE(y.shape() == Shape({2, count}));
    REQUIRE(y.to_vector<double>()[size_t(count - 1)] == double(count - 1));
    std::vector<Tensor> g = grad({sum(y * w)}, xs);
    for (int i = 0; i < count; ++i) REQUIRE(max_abs_diff(g[size_t(i)], w.narrow(1, i, 1)) == 0.0);
    JvpResult j = jvp([](const std::vector<Tensor>& in) { return std::vector<Tensor>{cat(in, 1)}; }, xs, ts);
    REQUIRE(max_abs_diff(j.tangents[0], cat(ts, 1)) == 0.0);
  }
}

TEST_CASE(
    "linear_parts gives the values and gradients of a Linear over the concatenated parts, and skips "
    "the parts without a tangent",
    "[tensor]") {
  Generator gen(12);
  auto bits = [](const Tensor& t) { return t.to(DType::f64).to_vector<double>(); };
  // z [40, 2] and two embeddings [40, 64] into 256 (the toy2d networks' first layer), f32 and f64.
  for (DType dt : {DType::f32, DType::f64}) {
    const TensorOptions o(dt);
    std::vector<Tensor> parts{randn({40, 2}, gen, o), randn({40, 64}, gen, o), randn({40, 64}, gen, o)};
    Tensor w = randn({256, 130}, gen, o) * 0.1, b = randn({256}, gen, o), g = randn({40, 256}, gen, o);
    for (std::optional<UnaryOp> act : {std::optional<UnaryOp>{}, std::optional<UnaryOp>{UnaryOp::Silu}}) {
      INFO(dtype_name(dt) << ", activation " << (act ? int(*act) : -1));
      auto composed = [&](const std::vector<Tensor>& ps) {
        return act ? linear_activation(cat(ps, -1), w, b, *act) : linear(cat(ps, -1), w, b);
      };
      REQUIRE(bits(linear_parts(parts, w, b, act)) == bits(composed(parts)));
      // Gradients: the parts' are slices of the input gradient, bit for bit.
      std::vector<Tensor> ins{parts[0].detach(), parts[1].detach(), parts[2].detach(), w.detach(), b.detach()};
      for (const Tensor& t : ins) t.set_requires_grad();
      const std::vector<Tensor> ps{ins[0], ins[1], ins[2]};
      Tensor fused = linear_parts(ps, ins[3], ins[4], act);
      Tensor plain = act ? linear_activation(cat(ps, -1), ins[3], ins[4], *act) : linear(cat(ps, -1), ins[3], ins[4]);
      REQUIRE(bits(fused.detach()) == bits(plain.detach()));
      const std::vector<Tensor> gf = grad({fused}, ins, {g}), gp = grad({plain}, ins, {g});
      for (size_t i = 0; i < ins.size(); ++i) REQUIRE(bits(gf[i]) == bits(gp[i]));
      // Tangents in z alone (one direction, and K = 3 at once), in z and the second embedding,
      // in every part, and in the weight as well: equal to the composed ops' within rounding
      // (the moving parts' products are summed separately), plain or differentiable.
      auto f = [&](bool fuse) {
        return [&, fuse](const std::vector<Tensor>& in) {
          const std::vector<Tensor> p3{in[0], in[1], in[2]};
          return std::vector<Tensor>{
              fuse ? linear_parts(p3, in[3], b, act)
                   : (act ? linear_activation(cat(p3, -1), in[3], b, *act) : linear(cat(p3, -1), in[3], b))};
        };
      };
      const std::vector<Tensor> primals{parts[0], parts[1], parts[2], w};
      const Tensor tz = randn({40, 2}, gen, o), t2 = randn({40, 64}, gen, o), tw = randn({256, 130}, gen, o);
      const double tol = dt == DType::f32 ? 1e-4 : 1e-12;
      for (bool differentiable : {false, true}) {
        const JvpOptions jo{.differentiable_tangents = differentiable};
        for (const std::vector<Tensor>& tangents :
             {std::vector<Tensor>{tz, Tensor(), Tensor(), Tensor()}, std::vector<Tensor>{tz, Tensor(), t2, Tensor()},
              std::vector<Tensor>{tz, t2, t2, Tensor()}, std::vector<Tensor>{tz, Tensor(), Tensor(), tw}}) {
          const Tensor jf = jvp(f(true), primals, tangents, jo).tangents[0];
          const Tensor jp = jvp(f(false), primals, tangents, jo).tangents[0];
          REQUIRE(jf.shape() == jp.shape());
          REQUIRE(max_abs_diff(jf, jp) <= tol * (1.0 + max_abs(jp)));
        }
        const Tensor tzs = randn({3, 40, 2}, gen, o);
        const Tensor kf = jvp_batched(f(true), primals, {tzs, Tensor(), Tensor(), Tensor()}, jo).tangents[0];
        const Tensor kp = jvp_batched(f(false), primals, {tzs, Tensor(), Tensor(), Tensor()}, jo).tangents[0];
        REQUIRE(kf.shape() == Shape({3, 40, 256}));
        REQUIRE(max_abs_diff(kf, kp) <= tol * (1.0 + max_abs(kp)));
      }
    }
  }
  REQUIRE_THROWS_WITH(linear_parts({zeros({3, 2}), zeros({4, 3})}, zeros({5, 5}), Tensor()),
                      Catch::Contains("linear_parts: every input part expected [..., features] with the leading dims "
                                      "of part 0 [3,2], part 1 is [4,3]"));
  REQUIRE_THROWS_WITH(linear_parts({zeros({3, 2}), zeros({3, 2})}, zeros({5, 5}), Tensor()),
                      Catch::Contains("linear_parts: input expected [..., 5], got [3,4]"));
  REQUIRE_THROWS_WITH(linear_parts({}, zeros({5, 5}), Tensor()),
                      Catch::Contains("linear_parts: expected at least one input part, got none"));
}

TEST_CASE("linear_activation gives the bits of the activation after linear, and its gradients and tangents",
          "[tensor]") {
  Generator gen(11);
  const std::vector<UnaryOp> activations{UnaryOp::Relu, UnaryOp::Tanh,     UnaryOp::Sigmoid,
                                         UnaryOp::Silu, UnaryOp::GeluTanh, UnaryOp::GeluErf};
  auto composed = [](UnaryOp op, const Tensor& x, const Tensor& w, const Tensor& b) {
    Tensor y = linear(x, w, b);
    switch (op) {
      case UnaryOp::Relu: return relu(y);
      case UnaryOp::Tanh: return tanh(y);
      case UnaryOp::Sigmoid: return sigmoid(y);
      case UnaryOp::Silu: return silu(y);
      case UnaryOp::GeluTanh: return gelu(y, GeluApprox::Tanh);
      default: return gelu(y, GeluApprox::Erf);
    }
  };
  auto bits = [](const Tensor& t) { return t.to(DType::f64).to_vector<double>(); };
  const int threads_before = cpu::num_threads();
  // [50, 300] -> 70: the AVX-512 kernel's tiles (two k blocks, partial tiles at both edges);
  // -> 3: a narrow output that OpenBLAS multiplies; [2, 3, 4] -> 6 in every dtype.
  struct Case {
    Shape x;
    int64_t out;
    std::vector<DType> dtypes;
  };
  for (const Case& c : {Case{Shape{50, 300}, 70, {DType::f32}}, Case{Shape{50, 300}, 3, {DType::f32}},
                        Case{Shape{2, 3, 4}, 6, {DType::f32, DType::f64, DType::bf16, DType::f16}}}) {
    for (DType t : c.dtypes) {
      const int64_t in = c.x[c.x.size() - 1];
      Tensor x = randn(c.x, gen, TensorOptions(t)), w = randn({c.out, in}, gen, TensorOptions(t)) * 0.2,
             b = randn({c.out}, gen, TensorOptions(t));
      for (int threads : {1, 2}) {
        cpu::set_num_threads(threads);
        for (UnaryOp op : activations) {
          INFO(dtype_name(t) << " " << c.x.str() << " -> " << c.out << ", " << threads << " threads, op " << int(op));
          REQUIRE(bits(linear_activation(x, w, b, op)) == bits(composed(op, x, w, b)));
          REQUIRE(bits(linear_activation(x, w, Tensor(), op)) == bits(composed(op, x, w, Tensor())));
        }
      }
    }
  }
  cpu::set_num_threads(threads_before);
  // Differentiated (the GEMM saves the derivative; k = 300 spans two of the AVX-512 kernel's k
  // blocks, and the derivative is taken after the last): the same values, gradients, tangents.
  for (UnaryOp op : activations) {
    INFO("op " << int(op));
    Tensor x = randn({40, 300}, gen), w = randn({48, 300}, gen) * 0.1, b = randn({48}, gen), g = randn({40, 48}, gen);
    for (const Tensor* p : {&x, &w, &b}) p->set_requires_grad();
    Tensor fused = linear_activation(x, w, b, op), plain = composed(op, x, w, b);
    REQUIRE(bits(fused.detach()) == bits(plain.detach()));
    const std::vector<Tensor> gf = grad({fused}, {x, w, b}, {g}), gp = grad({plain}, {x, w, b}, {g});
    for (size_t i = 0; i < 3; ++i) REQUIRE(bits(gf[i]) == bits(gp[i]));
    Tensor tx = randn({40, 300}, gen), tw = randn({48, 300}, gen), tb = randn({48}, gen);
    auto f = [&](bool fuse) {
      return [fuse, op, &composed](const std::vector<Tensor>& in) {
        return std::vector<Tensor>{fuse ? linear_activation(in[0], in[1], in[2], op)
                                        : composed(op, in[0], in[1], in[2])};
      };
    };
    const JvpResult jf = jvp(f(true), {x.detach(), w.detach(), b.detach()}, {tx, tw, tb});
    const JvpResult jp = jvp(f(false), {x.detach(), w.detach(), b.detach()}, {tx, tw, tb});
    REQUIRE(bits(jf.tangents[0]) == bits(jp.tangents[0]));
  }
  // x's tangent alone: with nothing differentiating the rule, the product with the saved
  // derivative is made by the tangent's GEMM as it stores (GemmArgs::multiplier), one direction
  // or K = 3 at once (one batch entry each); differentiable tangents take the engine ops. Both
  // give the bits of the composed ops, the AVX-512 kernel's shape and a 3-D f64 input alike.
  for (const Shape& xs : {Shape{40, 300}, Shape{2, 3, 4}}) {
    const TensorOptions o(xs.size() == 2 ? DType::f32 : DType::f64);
    const int64_t in = xs[xs.size() - 1], out = xs.size() == 2 ? 48 : 6;
    Tensor x = randn(xs, gen, o), w = randn({out, in}, gen, o) * 0.1, b = randn({out}, gen, o);
    Shape batched{3};
    for (int64_t d : xs) batched.push_back(d);
    Tensor tx = randn(xs, gen, o), txs = randn(batched, gen, o);
    for (UnaryOp op : activations)
      for (bool differentiable : {false, true}) {
        INFO("op " << int(op) << ", x " << xs.str() << ", differentiable tangents " << differentiable);
        auto f = [&](bool fuse) {
          return [fuse, op, &composed, &w, &b](const std::vector<Tensor>& in) {
            return std::vector<Tensor>{fuse ? linear_activation(in[0], w, b, op) : composed(op, in[0], w, b)};
          };
        };
        const JvpOptions jo{.differentiable_tangents = differentiable};
        REQUIRE(bits(jvp(f(true), {x}, {tx}, jo).tangents[0]) == bits(jvp(f(false), {x}, {tx}, jo).tangents[0]));
        const Tensor kf = jvp_batched(f(true), {x}, {txs}, jo).tangents[0];
        Shape want = batched;
        want[want.size() - 1] = out;
        REQUIRE(kf.shape() == want);
        REQUIRE(bits(kf) == bits(jvp_batched(f(false), {x}, {txs}, jo).tangents[0]));
      }
  }
  REQUIRE_THROWS_WITH(linear_activation(zeros({2, 4}), zeros({3, 4}), zeros({3}), UnaryOp::Exp),
                      Catch::Contains("linear_activation: the activation must be relu, tanh, sigmoid, silu or gelu"));
  REQUIRE_THROWS_WITH(linear_activation(zeros({2, 5}), zeros({3, 4}), zeros({3}), UnaryOp::Silu),
                      Catch::Contains("linear_activation: input expected [..., 4], got [2,5]"));
}

TEST_CASE("a backend table missing a required kernel is refused, naming the kernel", "[tensor]") {
  Backend b = cpu_backend();
  REQUIRE_NOTHROW(check_backend_complete(b));
  b.gemm = nullptr;
  REQUIRE_THROWS_WITH(check_backend_complete(b), Catch::Contains("backend cpu: kernel 'gemm' is not registered"));
  b = cpu_backend();
  b.group_norm = nullptr;  // optional: the engine composes GroupNorm from other ops without it
  REQUIRE_NOTHROW(check_backend_complete(b));
}

}  // namespace dualflow::testing

TEST_CASE("zero-size tensors are contiguous whatever their strides", "[tensor]") {
  using namespace dualflow;
  REQUIRE(Tensor::empty({3, 0, 2}).is_contiguous());
  REQUIRE(zeros({0, 4}).t().is_contiguous());
  REQUIRE(zeros({3, 0, 2}).contiguous().numel() == 0);
}

TEST_CASE("addcmul computes x + a * b with broadcasting, in every floating dtype", "[tensor]") {
  using namespace dualflow;
  using namespace dualflow::testing;
  Tensor x = uniform_f64({2, 3, 4}, -2, 2, 41), gate = uniform_f64({2, 1, 4}, -1, 1, 42),
         y = uniform_f64({2, 3, 4}, -3, 3, 43);
  for (DType t : {DType::f64, DType::f32, DType::bf16, DType::f16}) {
    INFO(dtype_name(t));
    Tensor got = addcmul(x.to(t), gate.to(t), y.to(t)).to(DType::f64);
    Tensor want = (x.to(t).to(DType::f64) + gate.to(t).to(DType::f64) * y.to(t).to(DType::f64));
    const double tol = t == DType::f64 ? 1e-15 : (t == DType::f32 ? 1e-6 : 2e-2);
    REQUIRE(got.shape() == Shape({2, 3, 4}));
    REQUIRE(max_abs_diff(got, want) < tol);
    // A strided operand takes the general loop.
    Tensor strided = addcmul(x.to(t).transpose(0, 2), gate.to(t).transpose(0, 2), y.to(t).transpose(0, 2));
    REQUIRE(max_abs_diff(strided.to(DType::f64), want.transpose(0, 2)) < tol);
  }
  REQUIRE_THROWS_WITH(addcmul(x, gate, zeros({5})), Catch::Contains("addcmul"));
  REQUIRE_THROWS_WITH(addcmul(x, gate.to(DType::f32), y), Catch::Contains("addcmul"));
}
