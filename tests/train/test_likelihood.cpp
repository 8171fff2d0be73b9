// Tests of the CNF log-likelihood in f64: the closed form of a linear field (with the sign of
// the divergence term), unbiasedness of Hutchinson's estimator, divergences of a small MLP
// against finite differences, gradients through the solver against finite differences, NFE
// accounting and bits per dimension.
#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "engine/dualflow.h"
#include "tests/engine/test_util.h"
#include "tests/train/dense_matrix.h"
#include "train/likelihood.h"

namespace dualflow::testing {
namespace {

using Catch::Matchers::Contains;
// v(x, t) = A x per sample, for x of any shape [N, ...] with D = A's size.
VelocityField linear_field(const Tensor& a) {
  return [a](const Tensor& x, double) {
    const int64_t n = x.size(0);
    return dualflow::matmul(x.reshape({n, a.size(0)}), a.t()).reshape(x.shape());
  };
}

// Closed form for the linear field: x_0 = exp(−A) x_1 and log p_1(x) = log N(x_0) − tr(A).
Tensor linear_log_likelihood(const Mat& a, const Tensor& x) {
  const int64_t n = x.size(0), d = int64_t(a.size());
  Tensor x0 = dualflow::matmul(x.reshape({n, d}), to_tensor(expm(a, -1.0)).t());
  return add(standard_normal_log_prob(x0), -trace(a));
}

const Mat kA2 = {{-0.3, 0.8}, {-0.5, 0.4}};
const Mat kA3 = {{0.2, 0.9, -0.3}, {-0.7, -0.5, 0.4}, {0.1, -0.2, 0.6}};
const Mat kA4 = {{0.1, 0.3, 0.0, -0.2}, {-0.4, 0.2, 0.5, 0.1}, {0.2, -0.1, -0.3, 0.4}, {0.0, 0.2, -0.5, 0.3}};

TEST_CASE("exact log-likelihood of a linear field matches its closed form", "[likelihood]") {
  for (const Mat* a : {&kA2, &kA3}) {
    const int64_t d = int64_t(a->size());
    Tensor x = uniform_f64({6, d}, -2, 2, 7 + d);
    Tensor want = linear_log_likelihood(*a, x);
    LikelihoodOptions o;
    o.ode.rtol = o.ode.atol = 1e-10;
    LikelihoodResult r = cnf_log_likelihood(linear_field(to_tensor(*a)), x, o);
    INFO("d = " << d << ", nfe " << r.nfe);
    require_close(r.log_likelihood, want, 0, 1e-8, "dopri5 log p_1 vs closed form");
    // The divergence integral is tr(A) for every sample, the sign that makes log p_1 right.
    require_close(r.divergence_integral, full({6}, trace(*a), DType::f64), 0, 1e-9, "∫ div v dt = tr(A)");
    require_close(r.noise, dualflow::matmul(x, to_tensor(expm(*a, -1.0)).t()), 0, 1e-8, "x_0 = exp(-A) x_1");
    REQUIRE(r.nfe == 2 + 6 * (r.accepted_steps + r.rejected_steps));

    // A fixed-step solver: RK4's error at 20 steps is far below these tolerances.
    o.ode.method = OdeMethod::RK4;
    o.ode.steps = 20;
    r = cnf_log_likelihood(linear_field(to_tensor(*a)), x, o);
    REQUIRE(r.nfe == 80);
    require_close(r.log_likelihood, want, 0, 1e-6, "rk4 log p_1 vs closed form");
  }
}

TEST_CASE("log-likelihood of image-shaped states", "[likelihood]") {
  Tensor x = uniform_f64({3, 1, 2, 2}, -1, 1, 21);
  int64_t calls = 0;
  VelocityField lin = linear_field(to_tensor(kA4));
  VelocityField counted = [&](const Tensor& xt, double t) {
    ++calls;
    REQUIRE(xt.shape() == Shape{3, 1, 2, 2});  // one primal pass; the D = 4 directions ride on the tangents
    return lin(xt, t);
  };
  LikelihoodOptions o;
  o.ode.method = OdeMethod::RK4;
  o.ode.steps = 25;
  LikelihoodResult r = cnf_log_likelihood(counted, x, o);
  // One pass of the field per evaluation of the augmented state.
  REQUIRE(calls == 100);
  REQUIRE(r.nfe == 100);
  REQUIRE(r.noise.shape() == x.shape());
  require_close(r.log_likelihood, linear_log_likelihood(kA4, x), 0, 1e-6, "log p_1 on [N, 1, 2, 2]");
}

// Hutchinson's log-likelihood of `copies` copies of one point under the linear field (RK4,
// 10 steps), each copy with its own probes: the mean over copies, its standard error, the
// exact value and the NFE.
struct HutchinsonRun {
  double mean, standard_error, exact;
  int64_t nfe;
};
HutchinsonRun hutchinson_on_copies(int64_t copies, ProbeDistribution dist, int64_t probes, uint64_t seed) {
  Tensor point = uniform_f64({1, 3}, -1, 1, 31);
  Tensor x = point.expand({copies, 3}).contiguous();
  LikelihoodOptions o;
  o.divergence = DivergenceMethod::Hutchinson;
  o.probe = dist;
  o.probes = probes;
  o.ode.method = OdeMethod::RK4;
  o.ode.steps = 10;
  Generator gen(seed);
  NoGradGuard no_grad;
  LikelihoodResult r = cnf_log_likelihood(linear_field(to_tensor(kA3)), x, o, gen);
  const auto v = r.log_likelihood.to_vector<double>();
  double m = 0, s2 = 0;
  for (double e : v) m += e / double(v.size());
  for (double e : v) s2 += (e - m) * (e - m);
  return {m, std::sqrt(s2 / double(v.size() - 1) / double(v.size())), linear_log_likelihood(kA3, point).item(), r.nfe};
}

TEST_CASE("Hutchinson's estimate is unbiased", "[likelihood]") {
  // The mean over copies must match the exact value within a few standard errors (fixed
  // seeds, so this cannot flake).
  for (ProbeDistribution dist : {ProbeDistribution::Rademacher, ProbeDistribution::Gaussian}) {
    const HutchinsonRun r = hutchinson_on_copies(4000, dist, 1, 1234);
    INFO((dist == ProbeDistribution::Gaussian ? "gaussian" : "rademacher")
         << ": mean " << r.mean << ", exact " << r.exact << ", standard error " << r.standard_error);
    REQUIRE(r.standard_error > 1e-3);  // the estimator really is random per sample
    REQUIRE(std::abs(r.mean - r.exact) < 4 * r.standard_error);
    REQUIRE(r.nfe == 40);
  }
}

TEST_CASE("several Hutchinson probes average their estimates and cut the variance", "[likelihood]") {
  const HutchinsonRun one = hutchinson_on_copies(2000, ProbeDistribution::Rademacher, 1, 99);
  const HutchinsonRun four = hutchinson_on_copies(2000, ProbeDistribution::Rademacher, 4, 99);
  INFO("exact " << one.exact << "; 1 probe: mean " << one.mean << " +- " << one.standard_error << "; 4 probes: mean "
                << four.mean << " +- " << four.standard_error);
  REQUIRE(std::abs(one.mean - one.exact) < 4 * one.standard_error);
  REQUIRE(std::abs(four.mean - four.exact) < 4 * four.standard_error);
  REQUIRE(four.nfe == 40);
  REQUIRE(four.standard_error < 0.65 * one.standard_error);  // the variance falls as 1/P: the error as 1/2 at P = 4
}

// A tiny MLP velocity v(x, t) = W2 tanh(W1 x + b1 + t c) + b2, built from engine ops.
struct TinyMlp {
  Tensor w1 = uniform_f64({8, 3}, -0.8, 0.8, 41);
  Tensor b1 = uniform_f64({8}, -0.3, 0.3, 42);
  Tensor c = uniform_f64({8}, -1, 1, 43);
  Tensor w2 = uniform_f64({3, 8}, -0.6, 0.6, 44);
  Tensor b2 = uniform_f64({3}, -0.2, 0.2, 45);
  VelocityField field() const {
    return [this](const Tensor& x, double t) {
      Tensor h = tanh(add(add(dualflow::matmul(x, w1.t()), b1), mul(c, t)));
      return add(dualflow::matmul(h, w2.t()), b2);
    };
  }
};

TEST_CASE("divergences of a small MLP match finite differences", "[likelihood]") {
  TinyMlp mlp;
  VelocityField v = mlp.field();
  Tensor x = uniform_f64({5, 3}, -1.5, 1.5, 51);
  const double t = 0.37, h = 1e-5;
  // Central differences of v along direction u: (v(x + h u) − v(x − h u)) / 2h.
  auto fd_jvp = [&](const Tensor& u) { return mul(sub(v(add(x, mul(u, h)), t), v(sub(x, mul(u, h)), t)), 0.5 / h); };
  Tensor fd_div = zeros({5}, DType::f64);
  for (int64_t i = 0; i < 3; ++i) {
    Tensor e = zeros({5, 3}, DType::f64);
    fill_(e.narrow(1, i, 1), 1.0);
    fd_div = add(fd_div, fd_jvp(e).select(1, i));
  }
  NoGradGuard no_grad;
  VelocityAndDivergence exact = velocity_and_divergence_exact(v, x, t);
  require_close(exact.velocity, v(x, t), 0, 1e-14, "velocity from the batched JVP");
  require_close(exact.divergence, fd_div, 0, 1e-8, "exact divergence vs finite differences");

  Generator gen(5);
  Tensor probe = sample_probe({5, 3}, ProbeDistribution::Gaussian, gen, DType::f64);
  VelocityAndDivergence hutch = velocity_and_divergence_hutchinson(v, x, t, probe);
  require_close(hutch.divergence, sum(mul(probe, fd_jvp(probe)), {1}), 0, 1e-8, "εᵀJε vs finite differences");
  Tensor rad = sample_probe({5, 3}, ProbeDistribution::Rademacher, gen, DType::f64);
  for (double e : rad.to_vector<double>()) REQUIRE(std::abs(e) == 1.0);
  // P probes per sample ([N, P, D]): the mean of the P single-probe estimates, one primal pass.
  Tensor several = sample_probe(probe_shape({5, 3}, 3), ProbeDistribution::Gaussian, gen, DType::f64);
  REQUIRE(several.shape() == Shape{5, 3, 3});
  VelocityAndDivergence mean3 = velocity_and_divergence_hutchinson(v, x, t, several);
  Tensor expected = zeros({5}, DType::f64);
  for (int64_t p = 0; p < 3; ++p) {
    Tensor one = several.select(1, p).contiguous();
    expected = add(expected, mul(velocity_and_divergence_hutchinson(v, x, t, one).divergence, 1.0 / 3));
  }
  require_close(mean3.divergence, expected, 0, 1e-14, "3 probes vs the mean of 3 single probes");
  require_close(mean3.velocity, v(x, t), 0, 1e-14, "velocity with 3 probes");
}

TEST_CASE("gradient of the log-likelihood through the solver matches finite differences", "[likelihood]") {
  // Discretise-then-differentiate: the gradient of the RK4 discretisation itself, so finite
  // differences of the same discretisation must agree to their own accuracy.
  TinyMlp mlp;
  Tensor x = uniform_f64({4, 3}, -1, 1, 61);
  for (DivergenceMethod div : {DivergenceMethod::Exact, DivergenceMethod::Hutchinson}) {
    LikelihoodOptions o;
    o.divergence = div;
    o.ode.method = OdeMethod::RK4;
    o.ode.steps = 4;
    auto loss = [&]() {
      Generator gen(77);  // the same probes every call
      return sum(cnf_log_likelihood(mlp.field(), x, o, gen).log_likelihood);
    };
    mlp.w1.set_requires_grad();
    mlp.c.set_requires_grad();
    std::vector<Tensor> g = grad({loss()}, {mlp.w1, mlp.c});
    mlp.w1 = mlp.w1.detach();
    mlp.c = mlp.c.detach();
    NoGradGuard no_grad;
    for (int which = 0; which < 2; ++which) {
      Tensor& p = which == 0 ? mlp.w1 : mlp.c;
      std::vector<double> base = p.to_vector<double>(), fd(base.size());
      const double h = 1e-6;
      for (size_t i = 0; i < base.size(); ++i) {
        std::vector<double> plus = base, minus = base;
        plus[i] += h, minus[i] -= h;
        p = from_vector(plus, p.shape(), DType::f64);
        const double lp = loss().item();
        p = from_vector(minus, p.shape(), DType::f64);
        const double lm = loss().item();
        fd[i] = (lp - lm) / (2 * h);
      }
      p = from_vector(base, p.shape(), DType::f64);
      INFO((div == DivergenceMethod::Exact ? "exact" : "hutchinson") << ", parameter " << (which == 0 ? "w1" : "c"));
      require_close(g[size_t(which)], from_vector(fd, p.shape(), DType::f64), 1e-6, 1e-7, "d log p / d param");
    }
  }
}

TEST_CASE("likelihood runs without a tape under NoGradGuard", "[likelihood]") {
  TinyMlp mlp;
  mlp.w1.set_requires_grad();
  Tensor x = uniform_f64({3, 3}, -1, 1, 71);
  LikelihoodOptions o;
  o.ode.method = OdeMethod::Euler;
  o.ode.steps = 3;
  REQUIRE(cnf_log_likelihood(mlp.field(), x, o).log_likelihood.requires_grad());
  NoGradGuard no_grad;
  LikelihoodResult r = cnf_log_likelihood(mlp.field(), x, o);
  REQUIRE_FALSE(r.log_likelihood.requires_grad());
  REQUIRE(r.log_likelihood.shape() == Shape{3});
}

TEST_CASE("bits per dimension of dequantised 8-bit data", "[likelihood]") {
  // The uniform density on the data interval is the uniform distribution over 256 levels:
  // exactly 8 bits per dimension whether the data live in [0, 1] or [−1, 1].
  const int64_t d = 12;
  Tensor uniform01 = zeros({2}, DType::f64);                             // log 1 per dim
  Tensor uniform11 = full({2}, -double(d) * std::log(2.0), DType::f64);  // log ½ per dim
  require_close(bits_per_dim(uniform01, d, 1.0), full({2}, 8.0, DType::f64), 0, 1e-12, "[0, 1]");
  require_close(bits_per_dim(uniform11, d, 2.0), full({2}, 8.0, DType::f64), 0, 1e-12, "[-1, 1]");
  // A density twice as high everywhere saves one bit per dimension.
  Tensor sharper = full({1}, double(d) * std::log(2.0), DType::f64);
  require_close(bits_per_dim(sharper, d, 1.0), full({1}, 7.0, DType::f64), 0, 1e-12, "sharper density");
  REQUIRE_THROWS_WITH(bits_per_dim(uniform01, 0, 1.0), Contains("dims must be >= 1, got 0"));
  REQUIRE_THROWS_WITH(bits_per_dim(uniform01, d, 0.0), Contains("data_range must be > 0"));
}

TEST_CASE("likelihood refuses bad input with clear messages", "[likelihood]") {
  LikelihoodOptions o;
  o.divergence = DivergenceMethod::Hutchinson;
  Tensor x = uniform_f64({2, 3}, -1, 1, 81);
  REQUIRE_THROWS_WITH(cnf_log_likelihood(linear_field(to_tensor(kA3)), x, o), Contains("needs a Generator"));
  REQUIRE_THROWS_WITH(cnf_log_likelihood(linear_field(to_tensor(kA3)), uniform_f64({4}, 0, 1, 1), {}),
                      Contains("at least one state dim"));
  VelocityField wrong = [](const Tensor& xt, double) { return xt.narrow(1, 0, 2); };
  REQUIRE_THROWS_WITH(velocity_and_divergence_hutchinson(wrong, x, 0.0, ones_like(x)),
                      Contains("expected the state's shape"));
  REQUIRE_THROWS_WITH(
      velocity_and_divergence_hutchinson(linear_field(to_tensor(kA3)), x, 0.0, ones({3, 2, 3}, DType::f64)),
      Contains("or [2, P, ...the state dims]"));
  LikelihoodOptions several = o;
  several.probes = 2;
  REQUIRE_THROWS_WITH(cnf_log_likelihood_with_probe(linear_field(to_tensor(kA3)), x, several, ones_like(x)),
                      Contains("expected [2,2,3]"));
  several.probes = 0;
  Generator gen(1);
  REQUIRE_THROWS_WITH(cnf_log_likelihood(linear_field(to_tensor(kA3)), x, several, gen),
                      Contains("expected at least 1 probe per sample, got 0"));
  REQUIRE(parse_divergence_method("hutchinson") == DivergenceMethod::Hutchinson);
  REQUIRE_THROWS_WITH(parse_divergence_method("trace"), Contains("expected one of: exact, hutchinson"));
  REQUIRE_THROWS_WITH(parse_probe_distribution("normal"), Contains("expected one of: rademacher, gaussian"));
}

}  // namespace
}  // namespace dualflow::testing
