// Tests of the objectives beside flow matching, in f64: denoising score matching and its
// probability-flow velocity against the closed-form Gaussian posterior, the maximum-likelihood
// loss and a non-standard source, reflow pairs and straightness against hand-solved flows, and
// the sample distances against exact values.
#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>

#include "engine/dualflow.h"
#include "tests/engine/test_util.h"
#include "train/likelihood.h"
#include "train/reflow.h"
#include "train/sample_distance.h"
#include "train/score_matching.h"

namespace dualflow::testing {
namespace {

using Catch::Matchers::Contains;

// Data N(mu, s^2 I) on the path x_t = alpha x_1 + sigma x_0 makes x_t Gaussian with variance
// v = alpha^2 s^2 + sigma^2, and the posterior means are linear in x_t:
//   E[x_0 | x_t] = sigma (x_t − alpha mu) / v,   E[x_1 | x_t] = mu + alpha s^2 (x_t − alpha mu) / v.
struct GaussianData {
  double mu, s;
};

SchedulerValues values_at(const AffinePath& path, const Tensor& t) {
  return path.scheduler()(t.reshape({t.size(0), 1}));
}

VelocityNet exact_epsilon(const GaussianData& g, std::shared_ptr<const AffinePath> path) {
  return [g, path](const Tensor& x, const Tensor& t, const Tensor&, const Tensor&) {
    SchedulerValues v = values_at(*path, t);
    Tensor var = v.alpha * v.alpha * (g.s * g.s) + v.sigma * v.sigma;
    return v.sigma * (x - v.alpha * g.mu) / var;
  };
}

Tensor exact_marginal_velocity(const GaussianData& g, const AffinePath& path, const Tensor& x, const Tensor& t) {
  SchedulerValues v = values_at(path, t);
  Tensor var = v.alpha * v.alpha * (g.s * g.s) + v.sigma * v.sigma;
  Tensor centred = x - v.alpha * g.mu;
  Tensor x1_hat = centred * (v.alpha * (g.s * g.s) / var) + g.mu;
  Tensor x0_hat = centred * (v.sigma / var);
  return v.d_alpha * x1_hat + v.d_sigma * x0_hat;
}

TEST_CASE("probability-flow velocity of the exact noise predictor is the marginal velocity", "[score]") {
  const GaussianData g{0.7, 0.4};
  for (const char* name : {"vp", "ve"}) {
    INFO(name);
    auto path = make_affine_path(name);
    Tensor x = uniform_f64({64, 2}, -3, 3, 5);
    Tensor t = uniform_f64({64}, 0.0, 0.99, 6);
    VelocityNet v = probability_flow_velocity(exact_epsilon(g, path), path);
    require_close(v(x, t, Tensor(), Tensor()), exact_marginal_velocity(g, *path, x, t), 1e-9, 1e-9,
                  "velocity from epsilon vs E[u_t | x_t]");
  }
  // On the VP path the same field is the probability-flow ODE ½ β (x + score), score = −ε / σ.
  auto vp = make_affine_path("vp");
  Tensor x = uniform_f64({16, 2}, -2, 2, 8);
  Tensor t = uniform_f64({16}, 0.0, 0.99, 9);
  Tensor eps = exact_epsilon(g, vp)(x, t, Tensor(), Tensor());
  SchedulerValues v = values_at(*vp, t);
  Tensor beta = ((1.0 - t) * (20.0 - 0.1) + 0.1).reshape({16, 1});
  Tensor pf_ode = (x - eps / v.sigma) * beta * 0.5;
  require_close(probability_flow_velocity(exact_epsilon(g, vp), vp)(x, t, Tensor(), Tensor()), pf_ode, 1e-9, 1e-9,
                "½ β (x + score)");
}

TEST_CASE("denoising score matching loss is the noise regression error", "[score]") {
  auto vp = make_affine_path("vp");
  Tensor x0 = uniform_f64({8, 2}, -1, 1, 1), x1 = uniform_f64({8, 2}, -1, 1, 2), t = uniform_f64({8}, 0, 1, 3);
  // A network that returns x_t itself: the loss is mean((x_t − x_0)^2).
  VelocityNet identity = [](const Tensor& x, const Tensor&, const Tensor&, const Tensor&) { return x; };
  Tensor x_t = vp->sample(x0, x1, t).x_t;
  REQUIRE(denoising_score_matching_loss(identity, *vp, x0, x1, t).item() ==
          Approx(mean(square(x_t - x0)).item()).epsilon(1e-12));
  // The exact posterior mean is the minimiser: random perturbations of it only raise the loss
  // in expectation over many draws of (x_0, x_1, t).
  const GaussianData g{0.5, 0.3};
  Generator gen(4);
  Tensor big_x0 = randn({20000, 2}, gen, DType::f64), big_x1 = randn({20000, 2}, gen, DType::f64) * g.s + g.mu;
  Tensor big_t = rand({20000}, gen, DType::f64) * 0.98;
  VelocityNet exact = exact_epsilon(g, vp);
  VelocityNet scaled = [exact](const Tensor& x, const Tensor& tt, const Tensor& h, const Tensor& l) {
    return exact(x, tt, h, l) * 1.1;
  };
  REQUIRE(denoising_score_matching_loss(exact, *vp, big_x0, big_x1, big_t).item() <
          denoising_score_matching_loss(scaled, *vp, big_x0, big_x1, big_t).item());
  // A path with alpha_0 = 0 cannot turn noise into velocity at t = 0.
  auto condot = make_affine_path("condot");
  Tensor v0 = probability_flow_velocity(exact, condot)(x1, zeros({8}, DType::f64), Tensor(), Tensor());
  REQUIRE_FALSE(std::isfinite(max_abs(v0)));
}

TEST_CASE("likelihood with a scaled source and an earlier data time", "[likelihood]") {
  // v = 0: the flow is the identity, so log p(x) is the source density itself.
  VelocityField zero = [](const Tensor& x, double) { return zeros_like(x); };
  Tensor x = uniform_f64({5, 3}, -4, 4, 11);
  LikelihoodOptions o;
  o.ode.method = OdeMethod::Euler;
  o.ode.steps = 3;
  o.prior_std = 2.5;
  o.t_data = 0.9;
  LikelihoodResult r = cnf_log_likelihood(zero, x, o);
  Tensor want = standard_normal_log_prob(x / 2.5) - 3 * std::log(2.5);
  require_close(r.log_likelihood, want, 0, 1e-12, "log N(x; 0, 2.5^2 I)");
  require_close(isotropic_normal_log_prob(x, 2.5), want, 0, 1e-12, "isotropic_normal_log_prob");
  // Constant divergence c over [0, t_data] contributes −c t_data: v = c x / d per dim.
  VelocityField expand = [](const Tensor& xx, double) { return xx * 0.2; };
  o.ode.method = OdeMethod::RK4;
  o.ode.steps = 50;
  r = cnf_log_likelihood(expand, x, o);
  require_close(r.divergence_integral, full({5}, 0.6 * 0.9, DType::f64), 0, 1e-12, "∫_0^0.9 tr(0.2 I) dt");
  o.t_data = 1.5;
  REQUIRE_THROWS_WITH(cnf_log_likelihood(expand, x, o), Contains("t_data"));
}

TEST_CASE("maximum-likelihood CNF loss is the mean negative log-likelihood, with gradients", "[likelihood]") {
  Tensor a = uniform_f64({2, 2}, -0.5, 0.5, 12);
  a.set_requires_grad();
  VelocityField field = [a](const Tensor& x, double t) { return dualflow::matmul(x, a.t()) * (1.0 + t); };
  Tensor x = uniform_f64({7, 2}, -2, 2, 13);
  LikelihoodOptions o;
  o.ode.method = OdeMethod::Midpoint;
  o.ode.steps = 6;
  Generator gen(1);
  Tensor loss = cnf_nll_loss(field, x, o, gen);
  {
    NoGradGuard ng;
    REQUIRE(loss.item() == Approx(-mean(cnf_log_likelihood(field, x, o).log_likelihood).item()).epsilon(1e-12));
  }
  Tensor g = dualflow::grad({loss}, {a})[0];
  // Central differences of the discretised loss.
  NoGradGuard ng;
  std::vector<double> av = a.detach().to_vector<double>();
  for (size_t k = 0; k < 4; ++k) {
    auto at = [&](double delta) {
      std::vector<double> shifted = av;
      shifted[k] += delta;
      Tensor ak = from_vector(shifted, {2, 2}, DType::f64);
      VelocityField fk = [ak](const Tensor& xx, double t) { return dualflow::matmul(xx, ak.t()) * (1.0 + t); };
      return -mean(cnf_log_likelihood(fk, x, o).log_likelihood).item();
    };
    const double fd = (at(1e-6) - at(-1e-6)) / 2e-6;
    REQUIRE(g.to_vector<double>()[k] == Approx(fd).margin(1e-7));
  }
}

TEST_CASE("cnf_nll_loss refuses to back-propagate through an adaptive solver", "[likelihood]") {
  VelocityField zero = [](const Tensor& x, double) { return zeros_like(x); };
  Generator gen(1);
  REQUIRE_THROWS_WITH(cnf_nll_loss(zero, uniform_f64({3, 2}, -1, 1, 1), LikelihoodOptions{}, gen),
                      Contains("fixed-step"));
}

TEST_CASE("reflow pairs follow the teacher's ODE; straightness of known flows", "[reflow]") {
  // A constant field moves every point by c: the pairs differ by exactly c * t_end.
  const double c[2] = {0.5, -1.5};
  VelocityNet shift = [c](const Tensor& x, const Tensor&, const Tensor&, const Tensor&) {
    return zeros_like(x) + from_vector(std::vector<double>{c[0], c[1]}, {1, 2}, DType::f64);
  };
  OdeOptions o;
  o.method = OdeMethod::Euler;
  o.steps = 4;
  Generator gen(2);
  ReflowPairs p = draw_reflow_pairs(shift, 10, {2}, o, gen, DType::f64, /*chunk=*/3, /*source_std=*/2.0, 0.5);
  REQUIRE(p.x0.shape() == Shape{10, 2});
  require_close(p.x1 - p.x0,
                zeros({10, 2}, DType::f64) + from_vector(std::vector<double>{0.25, -0.75}, {1, 2}, DType::f64), 0,
                1e-12, "x1 - x0 = c t_end");
  // source_std scales the noise: its sample std is near 2.
  REQUIRE(std::sqrt(mean(square(draw_reflow_pairs(shift, 4000, {2}, o, gen, DType::f64).x0)).item()) ==
          Approx(1.0).margin(0.05));
  REQUIRE(std::sqrt(mean(square(draw_reflow_pairs(shift, 4000, {2}, o, gen, DType::f64, 4096, 2.0).x0)).item()) ==
          Approx(2.0).margin(0.1));

  Tensor x0 = uniform_f64({6, 2}, -1, 1, 3);
  REQUIRE(max_abs(flow_straightness(shift, x0, 10)) < 1e-12);
  // A straight line at changing speed: v = 2t c, S = ∫ |c − 2t c|^2 dt = |c|^2 / 3 in the limit;
  // on K Euler steps exactly |c|^2 (1/3 − 1/(3K^2)).
  VelocityNet accelerate = [c](const Tensor& x, const Tensor& t, const Tensor&, const Tensor&) {
    return t.reshape({t.size(0), 1}) * from_vector(std::vector<double>{2 * c[0], 2 * c[1]}, {1, 2}, DType::f64) +
           zeros_like(x);
  };
  const double c2 = c[0] * c[0] + c[1] * c[1];
  const int64_t k = 20;
  require_close(flow_straightness(accelerate, x0, k), full({6}, c2 * (1.0 / 3 - 1.0 / (3.0 * k * k)), DType::f64),
                1e-12, 1e-12, "straightness of v = 2 t c");
}

TEST_CASE("energy distance and sliced Wasserstein distance against exact values", "[sample_distance]") {
  Tensor a = uniform_f64({50, 2}, -1, 1, 21);
  REQUIRE(std::abs(energy_distance(a, a)) < 1e-12);
  // Two point masses at distance d: 2d − 0 − 0.
  Tensor p = from_vector(std::vector<double>{0, 0}, {1, 2}, DType::f64);
  Tensor q = from_vector(std::vector<double>{3, 4}, {1, 2}, DType::f64);
  REQUIRE(energy_distance(p, q) == Approx(10.0));
  // Further apart means larger.
  REQUIRE(energy_distance(a, a + 0.5) < energy_distance(a, a + 1.0));
  // In one dimension every slice is the set itself, so SW2 is W2: a translation by s costs s.
  Generator gen(5);
  Tensor line = uniform_f64({40, 1}, -1, 1, 22);
  REQUIRE(sliced_wasserstein2(line, line + 0.3, 8, gen) == Approx(0.3).epsilon(1e-12));
  // W2 is invariant to the order of the samples.
  Tensor reversed = index_select(line, 0, arange(39.0, -1.0, -1.0, DType::i64));
  REQUIRE(sliced_wasserstein2(line, reversed, 4, gen) < 1e-12);
  REQUIRE_THROWS_WITH(sliced_wasserstein2(a, line, 4, gen), Contains("dims"));
  REQUIRE_THROWS_WITH(energy_distance(a, Tensor()), Contains("expected samples"));
}

}  // namespace
}  // namespace dualflow::testing
