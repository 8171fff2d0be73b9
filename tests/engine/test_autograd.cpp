// Composition of the two autodiff modes: the MeanFlow pattern (jvp primal outputs
// back-propagated, tangents under stop_gradient, no tape for tangents), Hessian-vector
// products, grad-of-grad, nested jvp, accumulation, graph release and the autodiff cuts.
#include "test_util.h"

namespace dualflow::testing {
namespace {

struct TinyNet {
  Tensor w1, b1, w2;
  explicit TinyNet(uint64_t seed) {
    w1 = uniform_f64(Shape{4, 8}, -1, 1, seed);
    b1 = uniform_f64(Shape{8}, -0.5, 0.5, seed + 1);
    w2 = uniform_f64(Shape{8, 2}, -1, 1, seed + 2);
  }
  std::vector<Tensor> params() const { return {w1, b1, w2}; }
  // u(z, r, t) for z [B,2], r and t [B,1]
  Tensor operator()(const Tensor& z, const Tensor& r, const Tensor& t) const {
    Tensor in = cat({z, r, t}, 1);
    return matmul(silu(matmul(in, w1) + b1), w2);
  }
};

}  // namespace

TEST_CASE("MeanFlow pattern: dudt from one jvp, loss back-propagated through u only", "[autograd]") {
  TinyNet net(3);
  for (const Tensor& p : net.params()) p.set_requires_grad(true);
  const int64_t B = 5;
  Tensor x = uniform_f64(Shape{B, 2}, -2, 2, 10), e = uniform_f64(Shape{B, 2}, -2, 2, 11);
  Tensor t = uniform_f64(Shape{B, 1}, 0.3, 0.9, 12), r = t * 0.5;
  Tensor z = (1.0 - t) * x + t * e, v = e - x;
  auto f = [&](const std::vector<Tensor>& a) { return std::vector<Tensor>{net(a[0], a[1], a[2])}; };

  for (bool differentiable : {false, true}) {
    DYNAMIC_SECTION("differentiable_tangents=" << differentiable) {
      JvpResult res = jvp(f, {z, r, t}, {v, zeros_like(r), ones_like(t)}, JvpOptions{differentiable});
      Tensor u = res.outputs[0], dudt = res.tangents[0];
      REQUIRE(u.requires_grad());
      REQUIRE(dudt.requires_grad() == differentiable);

      // dudt equals d/dh u(z + h v, r, t + h) at h = 0.
      {
        NoGradGuard ng;
        const double h = 1e-6;
        Tensor fd = (net(z + v * h, r, t + h) - net(z - v * h, r, t - h)) * (1.0 / (2 * h));
        require_close(dudt, fd, 1e-6, 1e-7, "dudt vs finite differences along the trajectory");
      }
      Tensor target = stop_gradient(v - (t - r) * dudt);
      REQUIRE_FALSE(target.requires_grad());
      Tensor loss = sum(square(u - target));
      loss.backward();

      // Finite differences of the whole loss over every parameter, target held fixed.
      Tensor target_fixed = target;
      auto loss_at = [&]() {
        NoGradGuard ng;
        return sum(square(net(z, r, t) - target_fixed)).item();
      };
      for (const Tensor& p : net.params()) {
        std::vector<double> fd(size_t(p.numel()));
        for (int64_t i = 0; i < p.numel(); ++i) {
          double* d = p.data<double>();
          double keep = d[i];
          d[i] = keep + 1e-6;
          double lp = loss_at();
          d[i] = keep - 1e-6;
          double lm = loss_at();
          d[i] = keep;
          fd[size_t(i)] = (lp - lm) / 2e-6;
        }
        require_close(p.grad(), from_vector(fd, p.shape(), DType::f64), 1e-5, 1e-6,
                      "MeanFlow loss gradient vs finite differences");
        p.zero_grad();
      }
    }
  }
}

TEST_CASE("no-tape jvp records nothing for tangents; tangents leave intermediates at level exit", "[autograd]") {
  Tensor w = uniform_f64(Shape{3, 3}, -1, 1, 1).set_requires_grad(true);
  Tensor x = uniform_f64(Shape{2, 3}, -1, 1, 2);
  Tensor hidden;
  JvpResult r = jvp(
      [&](const std::vector<Tensor>& a) {
        hidden = tanh(matmul(a[0], w));
        return std::vector<Tensor>{sum(hidden)};
      },
      {x}, {ones_like(x)}, JvpOptions{false});
  REQUIRE(r.tangents[0].grad_fn() == nullptr);
  REQUIRE(r.outputs[0].grad_fn() != nullptr);
  // The level is closed: the intermediate no longer holds a tangent.
  REQUIRE(hidden.impl()->autograd != nullptr);
  REQUIRE(hidden.impl()->autograd->tangents.empty());
}

TEST_CASE("Hessian-vector product (jvp of grad) matches finite differences of the gradient", "[autograd]") {
  Tensor a = uniform_f64(Shape{4, 4}, -1, 1, 5);
  auto f = [&](const std::vector<Tensor>& x) { return sum(square(tanh(matmul(a, x[0])))) + sum(exp(x[0] * 0.3)); };
  auto gradient = [&](const std::vector<Tensor>& x) { return grad(f, x); };
  Tensor x = uniform_f64(Shape{4}, -1, 1, 6), v = uniform_f64(Shape{4}, -1, 1, 7);
  JvpResult hv = jvp(gradient, {x}, {v});
  const double h = 1e-6;
  Tensor fd = (gradient({x + v * h})[0] - gradient({x - v * h})[0]) * (1.0 / (2 * h));
  require_close(hv.tangents[0], fd, 1e-6, 1e-7, "H v");
}

TEST_CASE("grad of grad and nested jvp give second derivatives", "[autograd]") {
  Tensor x = from_vector(std::vector<double>{0.5, -1.0, 2.0}, Shape{3}, DType::f64);
  // d/dx sum(x^3) = 3x^2; d/dx of sum(3x^2) = 6x
  auto g2 = grad(
      [](const std::vector<Tensor>& a) {
        auto g = grad([](const std::vector<Tensor>& b) { return sum(pow(b[0], 3.0)); }, a);
        return sum(g[0]);
      },
      {x});
  require_close(g2[0], x * 6.0, 1e-12, 1e-12, "grad-of-grad of x^3");
  // nested jvp: d^2/dh^2 sin(x + h v) = -sin(x) v^2
  Tensor v = from_vector(std::vector<double>{1.0, 2.0, -0.5}, Shape{3}, DType::f64);
  JvpResult outer = jvp(
      [&](const std::vector<Tensor>& a) {
        return jvp([](const std::vector<Tensor>& b) { return std::vector<Tensor>{sin(b[0])}; }, {a[0]}, {v}).tangents;
      },
      {x}, {v});
  require_close(outer.tangents[0], neg(sin(x)) * v * v, 1e-12, 1e-12, "jvp-of-jvp of sin");
  // backward with create_graph then differentiate .grad again
  Tensor y = x.clone().detach().set_requires_grad(true);
  Tensor leaf = y;
  sum(pow(leaf, 4.0)).backward(Tensor(), false, true);
  Tensor g1 = leaf.grad();  // 4 x^3, with graph
  REQUIRE(g1.requires_grad());
  auto g2b = grad({sum(g1)}, {leaf});
  require_close(g2b[0], square(x) * 12.0, 1e-12, 1e-12, "backward(create_graph) then grad");
}

TEST_CASE("gradients accumulate, graphs are freed, retain_graph keeps them", "[autograd]") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3}, Shape{3}, DType::f64).set_requires_grad(true);
  Tensor y = sum(exp(x));
  y.backward(Tensor(), /*retain_graph=*/true);
  y.backward();
  require_close(x.grad(), exp(x.detach()) * 2.0, 1e-12, 0, "two backward passes accumulate");
  REQUIRE_THROWS_WITH(y.backward(), Catch::Contains("retain_graph"));

  // Saved intermediates are released by backward.
  std::weak_ptr<TensorImpl> watch;
  Tensor z;
  {
    Tensor mid = exp(x * 2.0);
    watch = mid.impl();
    z = sum(mid * mid);
  }
  REQUIRE_FALSE(watch.expired());  // held by the graph
  z.backward();
  REQUIRE(watch.expired());
}

TEST_CASE("NoGradGuard, detach and stop_gradient cut both modes", "[autograd]") {
  Tensor x = from_vector(std::vector<double>{1, 2}, Shape{2}, DType::f64).set_requires_grad(true);
  {
    NoGradGuard ng;
    REQUIRE_FALSE(exp(x).requires_grad());
  }
  REQUIRE(exp(x).requires_grad());
  REQUIRE_FALSE(stop_gradient(exp(x)).requires_grad());
  auto g = grad([](const std::vector<Tensor>& a) { return sum(a[0] * stop_gradient(a[0])); }, {x});
  require_close(g[0], x.detach(), 0, 0, "d/dx x*sg(x) = sg(x)");
  JvpResult r = jvp([](const std::vector<Tensor>& a) { return std::vector<Tensor>{a[0] * stop_gradient(a[0])}; },
                    {x.detach()}, {ones_like(x)});
  require_close(r.tangents[0], x.detach(), 0, 0, "jvp through stop_gradient sees a constant");
}

TEST_CASE("vjp returns a reusable pullback", "[autograd]") {
  Tensor a = uniform_f64(Shape{3, 2}, -1, 1, 1);
  Tensor x = uniform_f64(Shape{2}, -1, 1, 2);
  VjpResult r = vjp([&](const std::vector<Tensor>& v) { return std::vector<Tensor>{matmul(a, v[0])}; }, {x});
  Tensor w1 = uniform_f64(Shape{3}, -1, 1, 3), w2 = uniform_f64(Shape{3}, -1, 1, 4);
  require_close(r.pullback({w1})[0], matmul(w1, a), 1e-12, 1e-12, "first pullback");
  require_close(r.pullback({w2})[0], matmul(w2, a), 1e-12, 1e-12, "second pullback");
}

TEST_CASE("deep graphs (long unrolled loops) back-propagate without recursion limits", "[autograd]") {
  Tensor x = from_vector(std::vector<double>{0.1}, Shape{1}, DType::f64).set_requires_grad(true);
  Tensor y = x;
  for (int i = 0; i < 200000; ++i) y = y * 1.0000001;
  sum(y).backward();
  REQUIRE(x.grad().item() == Approx(std::pow(1.0000001, 200000)).epsilon(1e-9));
  // Dropping a deep graph that was never differentiated is fine too.
  Tensor w = x;
  for (int i = 0; i < 200000; ++i) w = w * 1.0;
  w = Tensor();
}

TEST_CASE("backward(create_graph) leaves no reference cycle through the leaf's accumulator", "[autograd]") {
  // The gradient's graph ends in the leaf's accumulator; were that a strong reference, leaf and
  // gradient would keep each other alive for ever, even after differentiating the gradient had
  // released everything its graph saved (a gradient penalty's pattern; LeakSanitizer reported it).
  std::weak_ptr<AutogradMeta> leaf_meta;
  {
    Tensor leaf = from_vector(std::vector<double>{0.5, -1.0}, Shape{2}, DType::f64).set_requires_grad(true);
    sum(pow(leaf, 3.0)).backward(Tensor(), false, /*create_graph=*/true);
    sum(pow(leaf, 3.0)).backward(Tensor(), false, /*create_graph=*/true);  // accumulates, with graph
    REQUIRE(leaf.grad().requires_grad());
    require_close(leaf.grad().detach(), square(leaf.detach()) * 6.0, 1e-12, 0, "two create_graph passes accumulate");
    auto second = grad({sum(leaf.grad())}, {leaf});
    require_close(second[0], leaf.detach() * 12.0, 1e-12, 0, "grad of the accumulated gradient");
    leaf_meta = leaf.impl()->autograd;
  }
  REQUIRE(leaf_meta.expired());

  // While the gradient's graph is unused it holds what its rules saved, the leaf among them,
  // as in PyTorch; zero_grad() drops the gradient and with it that link.
  {
    Tensor leaf = from_vector(std::vector<double>{0.5, -1.0}, Shape{2}, DType::f64).set_requires_grad(true);
    sum(pow(leaf, 3.0)).backward(Tensor(), false, /*create_graph=*/true);
    leaf_meta = leaf.impl()->autograd;
    leaf.zero_grad();
  }
  REQUIRE(leaf_meta.expired());
}

}  // namespace dualflow::testing

namespace dualflow::testing {

TEST_CASE("jacfwd equals the Jacobian read row by row from reverse mode", "[autograd][batched]") {
  TinyNet net(5);
  Tensor r = uniform_f64(Shape{3, 1}, 0, 1, 20), t = uniform_f64(Shape{3, 1}, 0, 1, 21);
  auto u = [&](const Tensor& z) { return net(z, r, t); };
  Tensor z = uniform_f64(Shape{3, 2}, -1, 1, 22);
  Tensor jac = jacfwd(u, z);
  REQUIRE(jac.shape() == Shape{3, 2, 3, 2});
  for (int64_t n = 0; n < 3; ++n)
    for (int64_t d = 0; d < 2; ++d) {
      std::vector<Tensor> row =
          grad([&](const std::vector<Tensor>& p) { return u(p[0]).select(0, n).select(0, d); }, {z});
      require_close(jac.select(0, n).select(0, d), row[0], 1e-13, 1e-13, "jacfwd row vs grad");
    }
}

TEST_CASE("jvp_batched inside an outer jvp gives each direction's second-order term", "[autograd][batched]") {
  // d/ds of J(x + s w) V, per direction, against the same with single jvps.
  TinyNet net(9);
  Tensor r = uniform_f64(Shape{4, 1}, 0, 1, 30), t = uniform_f64(Shape{4, 1}, 0, 1, 31);
  Tensor z = uniform_f64(Shape{4, 2}, -1, 1, 32), w = uniform_f64(Shape{4, 2}, -1, 1, 33);
  Tensor dirs = uniform_f64(Shape{2, 4, 2}, -1, 1, 34);
  auto u = [&](const std::vector<Tensor>& p) { return std::vector<Tensor>{net(p[0], r, t)}; };
  JvpResult outer =
      jvp([&](const std::vector<Tensor>& p) { return std::vector<Tensor>{jvp_batched(u, p, {dirs}).tangents[0]}; }, {z},
          {w});
  for (int64_t k = 0; k < 2; ++k) {
    JvpResult one = jvp(
        [&](const std::vector<Tensor>& p) { return std::vector<Tensor>{jvp(u, p, {dirs.select(0, k)}).tangents[0]}; },
        {z}, {w});
    require_close(outer.outputs[0].select(0, k), one.outputs[0], 1e-13, 1e-13, "first order");
    require_close(outer.tangents[0].select(0, k), one.tangents[0], 1e-12, 1e-12, "second order");
  }
}

TEST_CASE("jvp_batched refuses tangents that do not line up", "[autograd][batched]") {
  Tensor x = uniform_f64(Shape{3, 2}, -1, 1, 40), y = uniform_f64(Shape{3, 2}, -1, 1, 41);
  auto f = [](const std::vector<Tensor>& p) { return std::vector<Tensor>{p[0] * p[1]}; };
  REQUIRE_THROWS_WITH(
      jvp_batched(f, {x, y}, {uniform_f64(Shape{2, 3, 2}, -1, 1, 1), uniform_f64(Shape{4, 3, 2}, -1, 1, 2)}),
      Catch::Contains("all must have the same K"));
  REQUIRE_THROWS_WITH(jvp_batched(f, {x, y}, {uniform_f64(Shape{3, 2}, -1, 1, 1), Tensor()}),
                      Catch::Contains("expected [3,3,2]"));
  REQUIRE_THROWS_WITH(jvp_batched(f, {x, y}, {Tensor(), Tensor()}), Catch::Contains("at least one tangent"));
}

}  // namespace dualflow::testing
