// Conditional flow matching end to end on a small problem: the loss is the path's regression
// target, a short training run learns a two-mode distribution, guidance combines the branches.
#include <catch2/catch.hpp>

#include "models/mlp_velocity.h"
#include "tests/engine/test_util.h"
#include "train/cfm.h"
#include "train/optim.h"

namespace dualflow::testing {

TEST_CASE("cfm_loss is the mean squared error to the conditional velocity", "[cfm]") {
  AffinePath path(make_scheduler("condot"));
  Tensor x0 = uniform_f64({4, 2}, -1, 1, 1), x1 = uniform_f64({4, 2}, -1, 1, 2), t = uniform_f64({4}, 0, 1, 3);
  // A "network" returning x_t: the loss is then mean((x_t - u_t)^2) with x_t = (1-t)x0 + t x1, u = x1 - x0.
  VelocityNet echo = [](const Tensor& x, const Tensor&, const Tensor&, const Tensor&) { return x; };
  double got = cfm_loss(echo, path, x0, x1, t).item();
  auto a = x0.to_vector<double>(), b = x1.to_vector<double>(), tt = t.to_vector<double>();
  double want = 0;
  for (int i = 0; i < 4; ++i)
    for (int d = 0; d < 2; ++d) {
      double xt = (1 - tt[i]) * a[i * 2 + d] + tt[i] * b[i * 2 + d], u = b[i * 2 + d] - a[i * 2 + d];
      want += (xt - u) * (xt - u) / 8;
    }
  REQUIRE(got == Approx(want).epsilon(1e-12));
}

TEST_CASE("classifier-free guidance mixes the conditional and unconditional branches", "[cfm]") {
  // v(x | c) = x * (c + 1), so with null class 5: v_g = w * x * (c + 1) + (1 - w) * x * 6.
  VelocityNet net = [](const Tensor& x, const Tensor&, const Tensor&, const Tensor& labels) {
    return x * (labels.to(DType::f64).reshape({x.shape()[0], 1}) + 1.0);
  };
  Tensor x = uniform_f64({3, 2}, -1, 1, 4);
  Tensor labels = from_vector(std::vector<int64_t>{0, 1, 2}, {3});
  VelocityField f = velocity_field(net, {labels, 5, 2.5});
  Tensor v = f(x, 0.3);
  Tensor c = labels.to(DType::f64).reshape({3, 1}) + 1.0;
  require_close(v, x * c * 2.5 + x * 6.0 * (1 - 2.5), 1e-12, 1e-12, "guided velocity");
  REQUIRE_THROWS_WITH(velocity_field(net, {Tensor(), -1, 2.0}), Catch::Contains("needs class labels"));
}

TEST_CASE("flow matching learns a two-mode distribution and samples it with Euler", "[cfm][e2e]") {
  Generator gen(7);
  MLPVelocityConfig c;
  c.width = 64;
  c.depth = 3;
  c.embedding_dim = 16;
  c.use_h = false;
  MLPVelocity net(c, gen);
  Adam opt(net.named_parameters(), {.lr = 3e-3});
  AffinePath path(make_scheduler("condot"));
  VelocityNet v = [&](const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& y) {
    return net.forward(x, t, h, y);
  };
  // Data: two modes at (+-2, 0) with small noise.
  auto draw_data = [&](int64_t n) {
    Tensor sign = bernoulli({n, 1}, 0.5, gen) * 2.0 - 1.0;
    return cat({sign * 2.0, zeros({n, 1})}, 1) + randn({n, 2}, gen) * 0.1;
  };
  double first = 0, last = 0;
  const int steps = 400;
  for (int s = 0; s < steps; ++s) {
    Tensor x1 = draw_data(256), x0 = randn({256, 2}, gen), t = rand({256}, gen);
    Tensor loss = cfm_loss(v, path, x0, x1, t);
    opt.zero_grad();
    loss.backward();
    opt.step();
    if (s < 20) first += loss.item() / 20;
    if (s >= steps - 20) last += loss.item() / 20;
  }
  INFO("loss " << first << " -> " << last);
  REQUIRE(last < 0.8 * first);
  OdeOptions o;
  o.method = OdeMethod::Euler;
  o.steps = 50;
  OdeResult r = sample_flow(v, randn({1000, 2}, gen), o);
  REQUIRE(r.nfe == 50);
  auto xs = r.x.to_vector<float>();
  int near_left = 0, near_right = 0;
  for (int i = 0; i < 1000; ++i) {
    double dx_l = xs[i * 2] + 2, dx_r = xs[i * 2] - 2, dy = xs[i * 2 + 1];
    if (dx_l * dx_l + dy * dy < 0.25) ++near_left;
    if (dx_r * dx_r + dy * dy < 0.25) ++near_right;
  }
  INFO("near left " << near_left << ", near right " << near_right);
  REQUIRE(near_left + near_right > 800);
  REQUIRE(near_left > 300);
  REQUIRE(near_right > 300);
}

}  // namespace dualflow::testing
