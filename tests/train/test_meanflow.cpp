// MeanFlow: du/dt by one JVP against finite differences along the trajectory for the three
// networks, the loss and its gradient in closed form for a linear network, the reduction to
// flow matching at r = t, the guided-target algebra, the stop-gradient on the target, the
// (t, r) sampler, class dropout, option checks and exact one- and few-step sampling; the same
// loss on CUDA against the CPU; and, hidden from the default run, the step-time and memory
// measurement of a MeanFlow step against a flow matching step ("[.meanflow_timing]").
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numbers>

#include "kernels/cpu/parallel.h"
#include "models/dit.h"
#include "models/mlp_velocity.h"
#include "models/unet.h"
#include "tests/engine/test_util.h"
#include "tests/models/tiny_networks.h"
#include "train/meanflow.h"
#include "train/optim.h"
#include "train/paths.h"

namespace dualflow::testing {
namespace {

// dudt from meanflow_jvp against the central difference of s -> u(z_s, r, s) at s = t, where
// z_s = (1 - s) x + s e moves with dz/ds = v = e - x and r stays fixed.
void check_dudt_along_trajectory(const VelocityNet& net, const Tensor& x, const Tensor& t, const Tensor& r,
                                 const Tensor& labels, uint64_t seed) {
  Generator gen(seed);
  Tensor e = normal(x.shape(), 0.0, 1.0, gen, DType::f64);
  Tensor v = e - x;
  auto u_at = [&](const Tensor& s) {
    NoGradGuard ng;
    Tensor z = (1.0 - per_sample(s, x)) * x + per_sample(s, x) * e;
    return net(z, s, s - r, labels);
  };
  Tensor z = (1.0 - per_sample(t, x)) * x + per_sample(t, x) * e;
  MeanFlowJvp j = meanflow_jvp(net, z, t, r, v, labels);
  REQUIRE_FALSE(j.dudt.requires_grad());
  const double eps = 1e-6;
  Tensor fd = (u_at(t + eps) - u_at(t - eps)) * (1.0 / (2 * eps));
  require_close(j.u, u_at(t), 1e-12, 1e-12, "u is the network's output");
  INFO("max |dudt| " << max_abs(fd));
  REQUIRE(max_abs(fd) > 1e-3);  // a non-trivial derivative
  require_close(j.dudt, fd, 1e-5, 1e-6 * (1 + max_abs(fd)), "dudt vs central differences along the trajectory");
}

}  // namespace

TEST_CASE("MeanFlow dudt by one JVP equals finite differences along the trajectory (MLP, UNet, DiT)", "[meanflow]") {
  Generator gen(11);
  SECTION("MLPVelocity") {
    MLPVelocityConfig c;
    c.width = 32;
    c.depth = 2;
    c.embedding_dim = 16;
    c.num_classes = 3;
    MLPVelocity net(c, gen);
    net.to(DType::f64);
    VelocityNet f = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
      return net.forward(z, t, h, y);
    };
    Tensor x = uniform_f64({5, 2}, -2, 2, 1), t = uniform_f64({5}, 0.2, 0.9, 2);
    Tensor r = t * uniform_f64({5}, 0, 1, 3);
    check_dudt_along_trajectory(f, x, t, r, from_vector(std::vector<int64_t>{0, 1, 2, 3, 1}, {5}), 4);
  }
  SECTION("UNet") {
    UNet net(tiny_unet_config(), gen);
    net.to(DType::f64);
    perturb_parameters(net, 0.2, gen);  // the zero-initialised residual and output layers would hide terms
    VelocityNet f = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
      return net.forward(z, t, h, y);
    };
    Tensor x = uniform_f64({2, 1, 8, 8}, -1, 1, 5), t = uniform_f64({2}, 0.2, 0.9, 6);
    Tensor r = t * uniform_f64({2}, 0, 1, 7);
    check_dudt_along_trajectory(f, x, t, r, from_vector(std::vector<int64_t>{2, 3}, {2}), 8);
  }
  SECTION("DiT") {
    DiT net(tiny_dit_config(), gen);
    net.to(DType::f64);
    perturb_parameters(net, 0.2, gen);  // adaLN-Zero and the zero final layer would output 0
    VelocityNet f = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
      return net.forward(z, t, h, y);
    };
    Tensor x = uniform_f64({2, 1, 8, 8}, -1, 1, 9), t = uniform_f64({2}, 0.2, 0.9, 10);
    Tensor r = t * uniform_f64({2}, 0, 1, 11);
    check_dudt_along_trajectory(f, x, t, r, from_vector(std::vector<int64_t>{0, 3}, {2}), 12);
  }
}

TEST_CASE("MeanFlow loss and gradient of a linear network equal their closed form", "[meanflow]") {
  // u(z, r, t) = z W + t a + h b + g with h = t - r. Along (dz, dr, dt) = (v, 0, 1):
  //   du/dt = v W + a + b,  u_tgt = v - clip(t - r, 0, 1) (v W + a + b),
  //   delta_i = u_i - u_tgt_i,  L_i = |delta_i|^2,  w_i = (L_i + c)^-p,  loss = mean_i w_i L_i,
  //   dloss/dW = (2/N) sum_i w_i z_i^T delta_i,  dloss/da = (2/N) sum_i w_i t_i delta_i,
  //   dloss/db = (2/N) sum_i w_i h_i delta_i,    dloss/dg = (2/N) sum_i w_i delta_i.
  const int64_t N = 5, D = 3;
  Tensor W = uniform_f64({D, D}, -1, 1, 21), a = uniform_f64({D}, -1, 1, 22), b = uniform_f64({D}, -1, 1, 23),
         g = uniform_f64({D}, -1, 1, 24);
  for (const Tensor& p : {W, a, b, g}) p.set_requires_grad(true);
  VelocityNet linear = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor&) {
    return matmul(z, W) + t.reshape({z.shape()[0], 1}) * a + h.reshape({z.shape()[0], 1}) * b + g;
  };
  Tensor x = uniform_f64({N, D}, -2, 2, 25), e = uniform_f64({N, D}, -2, 2, 26);
  // rows: r = t, two general intervals, r = 0 at t = 1, and r > t (clipped to the flow matching target)
  Tensor t = from_vector(std::vector<double>{0.4, 0.9, 0.55, 1.0, 0.3}, {N}, DType::f64);
  Tensor r = from_vector(std::vector<double>{0.4, 0.2, 0.5, 0.0, 0.6}, {N}, DType::f64);

  for (double p : {0.0, 0.5, 1.0}) {
    DYNAMIC_SECTION("adaptive power " << p) {
      MeanFlowOptions o;
      o.adaptive_p = p;
      o.adaptive_c = 0.3;  // large enough for the weights to differ visibly between rows
      MeanFlowLoss res = meanflow_loss(linear, x, e, t, r, o);
      res.loss.backward();

      auto Wv = W.to_vector<double>(), av = a.to_vector<double>(), bv = b.to_vector<double>(),
           gv = g.to_vector<double>();
      auto xv = x.to_vector<double>(), ev = e.to_vector<double>(), tv = t.to_vector<double>(),
           rv = r.to_vector<double>();
      double loss = 0;
      std::vector<double> dW(size_t(D * D), 0), da(size_t(D), 0), db(size_t(D), 0), dg(size_t(D), 0);
      for (int64_t i = 0; i < N; ++i) {
        const double ti = tv[size_t(i)], hi = ti - rv[size_t(i)], gap = std::clamp(hi, 0.0, 1.0);
        std::vector<double> z(static_cast<size_t>(D)), v(static_cast<size_t>(D)), delta(static_cast<size_t>(D));
        for (int64_t d = 0; d < D; ++d) {
          z[size_t(d)] = (1 - ti) * xv[size_t(i * D + d)] + ti * ev[size_t(i * D + d)];
          v[size_t(d)] = ev[size_t(i * D + d)] - xv[size_t(i * D + d)];
        }
        double L = 0;
        for (int64_t d = 0; d < D; ++d) {
          double u = ti * av[size_t(d)] + hi * bv[size_t(d)] + gv[size_t(d)], vW = 0;
          for (int64_t k = 0; k < D; ++k) {
            u += z[size_t(k)] * Wv[size_t(k * D + d)];
            vW += v[size_t(k)] * Wv[size_t(k * D + d)];
          }
          const double target = v[size_t(d)] - gap * (vW + av[size_t(d)] + bv[size_t(d)]);
          delta[size_t(d)] = u - target;
          L += delta[size_t(d)] * delta[size_t(d)];
        }
        const double w = std::pow(L + 0.3, -p);
        loss += w * L / double(N);
        for (int64_t d = 0; d < D; ++d) {
          const double s = 2 * w * delta[size_t(d)] / double(N);
          for (int64_t k = 0; k < D; ++k) dW[size_t(k * D + d)] += s * z[size_t(k)];
          da[size_t(d)] += s * ti;
          db[size_t(d)] += s * hi;
          dg[size_t(d)] += s;
        }
      }
      REQUIRE(res.loss.item() == Approx(loss).epsilon(1e-12));
      require_close(W.grad(), from_vector(dW, {D, D}, DType::f64), 1e-11, 1e-13, "dloss/dW");
      require_close(a.grad(), from_vector(da, {D}, DType::f64), 1e-11, 1e-13, "dloss/da");
      require_close(b.grad(), from_vector(db, {D}, DType::f64), 1e-11, 1e-13, "dloss/db");
      require_close(g.grad(), from_vector(dg, {D}, DType::f64), 1e-11, 1e-13, "dloss/dg");
      for (const Tensor& q : {W, a, b, g}) q.zero_grad();
    }
  }
}

TEST_CASE("MeanFlow at r = t without adaptive weight is flow matching in reversed time", "[meanflow]") {
  // With r = t the target is v = e - x, so the loss is mean_i sum_d (u(z_t, t, t) - (e - x))^2.
  // Flow matching (cfm_loss, CondOT path) has noise x0 = e, data x1 = x, x_tau = (1 - tau) e + tau x
  // and target x - e, so with tau = 1 - t, x_tau = z_t and the flow matching network
  // v_fm(x, tau) = -u(x, 1 - tau, h = 0) the exact relation tested is
  //   meanflow_loss(u; x, e, t, r = t, p = 0) = D * cfm_loss(v_fm; x0 = e, x1 = x, tau = 1 - t),
  // for the loss values and for their gradients, D being the dims of one sample (cfm_loss
  // means over dims, MeanFlow's L sums).
  Generator gen(31);
  MLPVelocityConfig c;
  c.width = 32;
  c.depth = 2;
  c.embedding_dim = 16;
  c.data_dim = 3;
  MLPVelocity net(c, gen);
  net.to(DType::f64);
  VelocityNet u = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
    return net.forward(z, t, h, y);
  };
  VelocityNet v_fm = [&](const Tensor& z, const Tensor& tau, const Tensor&, const Tensor& y) {
    return -net.forward(z, 1.0 - tau, zeros_like(tau), y);
  };
  const int64_t N = 6, D = 3;
  Tensor x = uniform_f64({N, D}, -2, 2, 32), e = uniform_f64({N, D}, -2, 2, 33), t = uniform_f64({N}, 0, 1, 34);
  MeanFlowOptions o;
  o.adaptive_p = 0;
  MeanFlowLoss mf = meanflow_loss(u, x, e, t, t, o);
  std::vector<Tensor> params;
  for (const auto& [n, p] : net.named_parameters()) params.push_back(p);
  std::vector<Tensor> g_mf = grad({mf.loss}, params);
  AffinePath path(make_scheduler("condot"));
  Tensor fm = cfm_loss(v_fm, path, e, x, 1.0 - t);
  std::vector<Tensor> g_fm = grad({fm}, params);
  REQUIRE(mf.loss.item() == Approx(double(D) * fm.item()).epsilon(1e-12));
  REQUIRE(mf.mse.item() == Approx(fm.item()).epsilon(1e-12));
  for (size_t k = 0; k < params.size(); ++k) require_close(g_mf[k], g_fm[k] * double(D), 1e-10, 1e-13, "gradient");
}

TEST_CASE("MeanFlow guided target: omega, kappa, the guidance interval and dropped-class rows", "[meanflow]") {
  // u(z, t, h | y) = z (y + 1) + t alpha + h beta, so u(z, t, t | y) = z (y + 1) + t alpha and, along
  // (v_g, 1, 1) in (z, t, h), du/dt = v_g (y + 1) + alpha + beta.
  const double alpha = 0.7, beta = -0.4;
  const int64_t null_label = 5;
  struct Call {
    bool grad_mode;
    int64_t batch;
    bool h_zero;
  };
  std::vector<Call> calls;
  VelocityNet net = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
    const int64_t n = z.shape()[0];
    calls.push_back({GradMode::enabled(), n, max_abs(h) == 0.0});
    return z * (y.to(DType::f64).reshape({n, 1}) + 1.0) + t.reshape({n, 1}) * alpha + h.reshape({n, 1}) * beta;
  };
  const int64_t N = 6, D = 2;
  Tensor x = uniform_f64({N, D}, -2, 2, 41), e = uniform_f64({N, D}, -2, 2, 42);
  // rows 0 and 4 dropped their class; guidance interval [0.3, 0.8]: rows 1 (0.2) and 5 (0.95) lie
  // outside, row 3 sits on the closed upper end.
  std::vector<int64_t> labels_in{5, 0, 1, 2, 5, 3};
  std::vector<double> tv{0.5, 0.2, 0.6, 0.8, 0.4, 0.95}, rv{0.1, 0.2, 0.3, 0.5, 0.4, 0.1};
  Tensor labels = from_vector(labels_in, {N}), t = from_vector(tv, {N}, DType::f64),
         r = from_vector(rv, {N}, DType::f64);
  const std::vector<bool> guided_row{false, false, true, true, false, false};

  struct Case {
    double omega, kappa;
  };
  for (Case k : {Case{2.0, 0.0}, Case{1.5, 0.3}, Case{1.0, 0.0}}) {
    DYNAMIC_SECTION("omega " << k.omega << ", kappa " << k.kappa) {
      MeanFlowOptions o;
      o.adaptive_p = 0;
      o.null_label = null_label;
      o.guidance_omega = k.omega;
      o.guidance_kappa = k.kappa;
      o.guidance_t_min = 0.3;
      o.guidance_t_max = 0.8;
      calls.clear();
      MeanFlowLoss res = meanflow_loss(net, x, e, t, r, o, labels);

      auto xv = x.to_vector<double>(), ev = e.to_vector<double>();
      std::vector<double> vg(size_t(N * D)), target(size_t(N * D));
      for (int64_t i = 0; i < N; ++i)
        for (int64_t d = 0; d < D; ++d) {
          const size_t j = size_t(i * D + d);
          const double ti = tv[size_t(i)], z = (1 - ti) * xv[j] + ti * ev[j], v = ev[j] - xv[j];
          const double u_null = z * double(null_label + 1) + ti * alpha;
          const double u_cond = z * double(labels_in[size_t(i)] + 1) + ti * alpha;
          vg[j] = guided_row[size_t(i)] ? k.omega * v + (1 - k.omega - k.kappa) * u_null + k.kappa * u_cond : v;
          const double dudt = vg[j] * double(labels_in[size_t(i)] + 1) + alpha + beta;
          target[j] = vg[j] - (ti - rv[size_t(i)]) * dudt;
        }
      require_close(res.velocity, from_vector(vg, {N, D}, DType::f64), 1e-12, 1e-12, "guided velocity v_g");
      require_close(res.target, from_vector(target, {N, D}, DType::f64), 1e-12, 1e-12,
                    "u_tgt with v_g in the target and as the JVP tangent");
      // The training passes: a plain one over the two rows with r = t, the JVP over the other four.
      REQUIRE(calls.size() >= 2);
      const size_t first_training_call = calls.size() - 2;
      for (size_t i = first_training_call; i < calls.size(); ++i) REQUIRE(calls[i].grad_mode);
      REQUIRE(calls[first_training_call].batch == 2);
      REQUIRE(calls[first_training_call + 1].batch == 4);
      if (!o.guided()) {
        REQUIRE(calls.size() == 2);
      } else {
        // Before them the guidance pass (both branches in one call of twice the batch when
        // kappa != 0) at h = 0 without gradients.
        REQUIRE(calls.size() == 3);
        REQUIRE_FALSE(calls[0].grad_mode);
        REQUIRE(calls[0].h_zero);
        REQUIRE(calls[0].batch == (k.kappa != 0 ? 2 * N : N));
        require_close(
            meanflow_guided_velocity(net, (1.0 - per_sample(t, x)) * x + per_sample(t, x) * e, t, e - x, labels, o),
            from_vector(vg, {N, D}, DType::f64), 1e-12, 1e-12, "meanflow_guided_velocity");
      }
    }
  }
  MeanFlowOptions o;
  o.guidance_omega = 2.0;
  REQUIRE_THROWS_WITH(meanflow_loss(net, x, e, t, r, o, labels),
                      Catch::Contains("needs class labels and the null class index"));
}

TEST_CASE("MeanFlow target carries no gradient: the loss gradient is that of a fixed target", "[meanflow]") {
  Generator gen(51);
  MLPVelocityConfig c;
  c.width = 32;
  c.depth = 2;
  c.embedding_dim = 16;
  MLPVelocity net(c, gen);
  net.to(DType::f64);
  VelocityNet u_theta = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
    return net.forward(z, t, h, y);
  };
  std::vector<Tensor> params;
  for (const auto& [n, p] : net.named_parameters()) params.push_back(p);
  const int64_t N = 8;
  Tensor x = uniform_f64({N, 2}, -2, 2, 52), e = uniform_f64({N, 2}, -2, 2, 53), t = uniform_f64({N}, 0.3, 1, 54);
  Tensor r = t * uniform_f64({N}, 0, 0.8, 55);
  MeanFlowOptions o;  // adaptive weight on: its weight must be cut from the graph as well
  MeanFlowLoss res = meanflow_loss(u_theta, x, e, t, r, o);
  REQUIRE_FALSE(res.target.requires_grad());
  REQUIRE_FALSE(res.dudt.requires_grad());
  REQUIRE_FALSE(res.weight.requires_grad());
  std::vector<Tensor> g_loss = grad({res.loss}, params);

  Tensor z = (1.0 - per_sample(t, x)) * x + per_sample(t, x) * e, v = e - x;
  auto weighted = [&](const Tensor& u, const Tensor& target) {
    return mean(res.weight * sum(square(u - target), {1}));
  };
  // The same loss with the target supplied by hand as a constant: identical gradients.
  std::vector<Tensor> g_fixed = grad({weighted(u_theta(z, t, t - r, Tensor()), res.target.detach())}, params);
  // The same loss with a live target (differentiable tangents, no stop-gradient): different ones.
  auto f = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{u_theta(in[0], in[1], in[2], Tensor())}; };
  JvpResult live = jvp(f, {z, t, t - r}, {v, ones_like(t), ones_like(t)}, JvpOptions{.differentiable_tangents = true});
  REQUIRE(live.tangents[0].requires_grad());
  std::vector<Tensor> g_live = grad({weighted(live.outputs[0], v - per_sample(t - r, x) * live.tangents[0])}, params);

  double norm_loss = 0, diff_fixed = 0, diff_live = 0;
  for (size_t k = 0; k < params.size(); ++k) {
    norm_loss = std::max(norm_loss, max_abs(g_loss[k]));
    diff_fixed = std::max(diff_fixed, max_abs_diff(g_loss[k], g_fixed[k]));
    diff_live = std::max(diff_live, max_abs_diff(g_loss[k], g_live[k]));
  }
  INFO("max |grad| " << norm_loss << ", vs fixed target " << diff_fixed << ", vs live target " << diff_live);
  REQUIRE(diff_fixed <= 1e-12 * (1 + norm_loss));
  REQUIRE(diff_live > 1e-2 * norm_loss);
}

TEST_CASE("MeanFlow (t, r) sampler: share of r = t, ordering, logit-normal moments, determinism", "[meanflow]") {
  const int64_t N = 20000;
  MeanFlowOptions o;  // logit-normal(-0.4, 1), 25% r != t
  Generator gen(61);
  MeanFlowTimes s = sample_meanflow_times(N, o, gen, DType::f64);
  REQUIRE(gen.offset() > 0);
  auto tv = s.t.to_vector<double>(), rv = s.r.to_vector<double>();
  int64_t equal = 0;
  for (int64_t i = 0; i < N; ++i) {
    REQUIRE(tv[size_t(i)] >= rv[size_t(i)]);
    REQUIRE(tv[size_t(i)] > 0);
    REQUIRE(tv[size_t(i)] < 1);
    if (tv[size_t(i)] == rv[size_t(i)]) {
      ++equal;
      REQUIRE(i < 15000);  // the leading rows
    }
  }
  REQUIRE(equal == 15000);
  // logit(t) and logit(r) are the max and min of two N(mu, sigma^2) draws:
  // E = mu +- sigma / sqrt(pi), Var = sigma^2 (1 - 1/pi).
  auto logit = [](double p) { return std::log(p / (1 - p)); };
  double mean_t = 0, var_t = 0, mean_r = 0;
  for (int64_t i = 0; i < N; ++i) mean_t += logit(tv[size_t(i)]) / double(N);
  for (int64_t i = 0; i < N; ++i) var_t += std::pow(logit(tv[size_t(i)]) - mean_t, 2) / double(N - 1);
  for (int64_t i = 15000; i < N; ++i) mean_r += logit(rv[size_t(i)]) / 5000.0;
  const double spread = 1.0 / std::sqrt(std::numbers::pi);
  REQUIRE(std::abs(mean_t - (-0.4 + spread)) < 0.03);
  REQUIRE(std::abs(mean_r - (-0.4 - spread)) < 0.05);
  REQUIRE(std::abs(var_t - (1 - 1 / std::numbers::pi)) < 0.05);

  SECTION("determinism") {
    Generator a(7), b(7), c(8);
    MeanFlowTimes sa = sample_meanflow_times(100, o, a), sb = sample_meanflow_times(100, o, b),
                  sc = sample_meanflow_times(100, o, c);
    REQUIRE(sa.t.to_vector<float>() == sb.t.to_vector<float>());
    REQUIRE(sa.r.to_vector<float>() == sb.r.to_vector<float>());
    REQUIRE(a.offset() == b.offset());
    REQUIRE(sa.t.to_vector<float>() != sc.t.to_vector<float>());
  }
  SECTION("uniform times: E[max] = 2/3, E[min] = 1/3") {
    MeanFlowOptions u;
    u.time_distribution = parse_time_distribution("uniform");
    u.ratio_r_neq_t = 1.0;
    Generator g(62);
    MeanFlowTimes su = sample_meanflow_times(N, u, g, DType::f64);
    REQUIRE(mean(su.t).item() == Approx(2.0 / 3).margin(0.01));
    REQUIRE(mean(su.r).item() == Approx(1.0 / 3).margin(0.01));
    REQUIRE(sum(eq(su.t, su.r).to(DType::f64)).item() == 0);
  }
  SECTION("shares at the ends and rounding down") {
    MeanFlowOptions all_equal = o, ten = o;
    all_equal.ratio_r_neq_t = 0.0;
    Generator g(63);
    MeanFlowTimes se = sample_meanflow_times(10, all_equal, g);
    REQUIRE(se.t.to_vector<float>() == se.r.to_vector<float>());
    ten.ratio_r_neq_t = 0.3;  // 10 * 0.7 = 7 rows with r = t (6.999... in floating point)
    MeanFlowTimes st = sample_meanflow_times(10, ten, g);
    REQUIRE(sum(eq(st.t, st.r).to(DType::f32)).item() == 7);
  }
}

TEST_CASE("MeanFlow class dropout: Binomial count, leading rows, determinism", "[meanflow]") {
  const int64_t N = 10000;
  std::vector<int64_t> y(static_cast<size_t>(N));
  for (int64_t i = 0; i < N; ++i) y[size_t(i)] = i % 10;
  Tensor labels = from_vector(y, {N});
  Generator gen(71);
  REQUIRE(drop_class_labels(labels, 0.0, 10, gen).to_vector<int64_t>() == y);
  auto all = drop_class_labels(labels, 1.0, 10, gen).to_vector<int64_t>();
  REQUIRE(std::all_of(all.begin(), all.end(), [](int64_t v) { return v == 10; }));
  Generator a(72), b(72);
  auto da = drop_class_labels(labels, 0.1, 10, a).to_vector<int64_t>();
  REQUIRE(drop_class_labels(labels, 0.1, 10, b).to_vector<int64_t>() == da);
  int64_t dropped = std::count(da.begin(), da.end(), 10);
  REQUIRE(std::abs(dropped - 1000) < 100);  // 3.3 standard deviations
  for (int64_t i = 0; i < N; ++i) REQUIRE(da[size_t(i)] == (i < dropped ? 10 : y[size_t(i)]));
}

TEST_CASE("MeanFlow options are validated with expected and given values", "[meanflow]") {
  auto refuse = [](auto edit, const std::string& message) {
    MeanFlowOptions o;
    edit(o);
    REQUIRE_THROWS_WITH(o.validate(), Catch::Contains(message));
  };
  refuse([](MeanFlowOptions& o) { o.time_sigma = -1; }, "time_sigma must be > 0, got -1");
  refuse([](MeanFlowOptions& o) { o.ratio_r_neq_t = 1.5; }, "ratio_r_neq_t must be in [0, 1], got 1.5");
  refuse([](MeanFlowOptions& o) { o.adaptive_p = -0.5; }, "adaptive_p must be >= 0, got -0.5");
  refuse([](MeanFlowOptions& o) { o.adaptive_c = 0; }, "adaptive_c must be > 0, got 0");
  refuse([](MeanFlowOptions& o) { o.class_dropout = 2; }, "class_dropout must be in [0, 1], got 2");
  refuse([](MeanFlowOptions& o) { o.guidance_omega = 0; }, "guidance_omega must be > 0, got 0");
  refuse([](MeanFlowOptions& o) { o.guidance_kappa = 1; }, "guidance_kappa must be in [0, 1), got 1");
  refuse([](MeanFlowOptions& o) { o.guidance_t_min = 0.7, o.guidance_t_max = 0.2; },
         "0 <= t_min <= t_max <= 1, got [0.7, 0.2]");
  REQUIRE_NOTHROW(MeanFlowOptions{}.validate());
  REQUIRE_THROWS_WITH(parse_time_distribution("lognormal"), Catch::Contains("expected logit_normal or uniform"));
  REQUIRE(time_distribution_name(parse_time_distribution("logit_normal")) == std::string("logit_normal"));

  VelocityNet zero = [](const Tensor& z, const Tensor&, const Tensor&, const Tensor&) { return zeros_like(z); };
  Tensor x = zeros({4, 2}), t = zeros({4});
  REQUIRE_THROWS_WITH(meanflow_loss(zero, x, x, zeros({3}), t, {}), Catch::Contains("t expected [4], got [3]"));
  REQUIRE_THROWS_WITH(meanflow_loss(zero, x, zeros({4, 3}), t, t, {}), Catch::Contains("noise expected f32 [4,2]"));
  MeanFlowOptions dropout;  // labels with class dropout but no null class
  Generator gen(1);
  REQUIRE_THROWS_WITH(meanflow_training_loss(zero, x, from_vector(std::vector<int64_t>{0, 1, 0, 1}, {4}), dropout, gen),
                      Catch::Contains("need the null class index"));
}

TEST_CASE("MeanFlow sampling is exact for a known average velocity; NFE counts", "[meanflow]") {
  // Data N(mu, s^2 I) and z_t = (1 - t) x + t e have the flow map
  //   z_r = (1 - r) mu + (sigma_r / sigma_t) (z_t - (1 - t) mu),  sigma_t = sqrt((1 - t)^2 s^2 + t^2),
  // so the exact average velocity is u(z, r, t) = (z_t - z_r) / (t - r): any grid lands exactly on
  // the flow, and from t = 1 the one-step sample is mu + s z_1.
  const double s = 0.5;
  Tensor mu = from_vector(std::vector<double>{1.5, -2.0}, {1, 2}, DType::f64);
  Tensor expected_labels = from_vector(std::vector<int64_t>{3, 1, 4, 1, 5}, {5});
  int64_t calls = 0;
  VelocityNet exact = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
    ++calls;
    REQUIRE_FALSE(GradMode::enabled());
    REQUIRE(y.to_vector<int64_t>() == expected_labels.to_vector<int64_t>());
    const int64_t n = z.shape()[0];
    Tensor tt = t.reshape({n, 1}), r = (t - h).reshape({n, 1});
    auto sigma = [&](const Tensor& a) { return sqrt(square(1.0 - a) * (s * s) + square(a)); };
    Tensor z_r = (1.0 - r) * mu + sigma(r) / sigma(tt) * (z - (1.0 - tt) * mu);
    return (z - z_r) / h.reshape({n, 1});
  };
  Tensor noise = uniform_f64({5, 2}, -2, 2, 81);
  Tensor data = mu + noise * s;
  for (int64_t steps : {1, 4}) {
    calls = 0;
    MeanFlowSample one = meanflow_sample(exact, noise, steps, expected_labels);
    REQUIRE(one.nfe == steps);
    REQUIRE(calls == steps);
    require_close(one.x, data, 1e-12, 1e-12, "samples on the exact flow");
  }
  MeanFlowSample uneven = meanflow_sample(exact, noise, std::vector<double>{1.0, 0.7, 0.2, 0.0}, expected_labels);
  REQUIRE(uneven.nfe == 3);
  require_close(uneven.x, data, 1e-12, 1e-12, "uneven grid");
  // Halfway: (1 - 0.5) mu + sigma_0.5 / sigma_1 z_1.
  MeanFlowSample half = meanflow_sample(exact, noise, std::vector<double>{1.0, 0.5}, expected_labels);
  require_close(half.x, mu * 0.5 + noise * std::sqrt(0.25 * s * s + 0.25), 1e-12, 1e-12, "half way");

  // A constant average velocity c: z_0 = z_1 - c in one step, and in k steps.
  VelocityNet constant = [](const Tensor& z, const Tensor&, const Tensor&, const Tensor&) {
    return zeros_like(z) + from_vector(std::vector<double>{0.25, -1.0}, {1, 2}, DType::f64);
  };
  require_close(meanflow_sample(constant, noise).x,
                noise - from_vector(std::vector<double>{0.25, -1.0}, {1, 2}, DType::f64), 1e-14, 1e-14,
                "constant field, one step");
  require_close(meanflow_sample(constant, noise, 3).x, meanflow_sample(constant, noise, 1).x, 1e-14, 1e-14,
                "constant field, three steps");
  REQUIRE(meanflow_time_grid(4) == std::vector<double>{1.0, 0.75, 0.5, 0.25, 0.0});
  REQUIRE_THROWS_WITH(meanflow_sample(constant, noise, std::vector<double>{0.0, 1.0}),
                      Catch::Contains("must decrease strictly"));
  REQUIRE_THROWS_WITH(meanflow_sample(constant, noise, std::vector<double>{1.0}),
                      Catch::Contains("at least 2 times, got 1"));
  REQUIRE_THROWS_WITH(meanflow_sample(constant, noise, std::vector<double>{1.5, 0.0}),
                      Catch::Contains("expected within [0, 1]"));
  REQUIRE_THROWS_WITH(meanflow_sample(constant, noise, 0), Catch::Contains("steps must be >= 1, got 0"));
}

TEST_CASE("MeanFlow training loss is deterministic given the generator", "[meanflow]") {
  Generator init(91);
  MLPVelocityConfig c;
  c.width = 32;
  c.depth = 2;
  c.embedding_dim = 16;
  c.num_classes = 4;
  MLPVelocity net(c, init);
  VelocityNet f = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
    return net.forward(z, t, h, y);
  };
  MeanFlowOptions o;
  o.null_label = 4;
  o.guidance_omega = 1.5;
  o.guidance_kappa = 0.2;
  Generator data(92);
  Tensor x = randn({64, 2}, data), labels = randint(0, 4, {64}, data);
  Generator a(93), b(93);
  MeanFlowLoss la = meanflow_training_loss(f, x, labels, o, a), lb = meanflow_training_loss(f, x, labels, o, b);
  REQUIRE(la.loss.item() == lb.loss.item());
  REQUIRE(a.offset() == b.offset());
  REQUIRE(std::isfinite(la.loss.item()));
  // With p = 1 each sample contributes L / (L + c) < 1.
  REQUIRE(la.loss.item() < 1.0);
  REQUIRE(la.mean_error.item() > 0);
  REQUIRE(la.mse.item() == Approx(la.mean_error.item() / 2));
}

TEST_CASE("MeanFlow learns a two-mode distribution and samples it in one step", "[meanflow][e2e]") {
  Generator gen(7);
  MLPVelocityConfig c;
  c.width = 64;
  c.depth = 3;
  c.embedding_dim = 16;
  // A smooth time embedding (a = t freqs rather than 1000 t freqs) keeps du/dt, and with it the
  // target, moderate in a run this short.
  c.time_scale = 1.0;
  MLPVelocity net(c, gen);
  Adam opt(net.named_parameters(), {.lr = 3e-3});
  VelocityNet u = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
    return net.forward(z, t, h, y);
  };
  auto draw_data = [&](int64_t n) {
    Tensor sign = bernoulli({n, 1}, 0.5, gen) * 2.0 - 1.0;
    return cat({sign * 2.0, zeros({n, 1})}, 1) + randn({n, 2}, gen) * 0.1;
  };
  MeanFlowOptions o;
  const int steps = 400;
  double first = 0, last = 0;
  for (int s = 0; s < steps; ++s) {
    MeanFlowLoss res = meanflow_training_loss(u, draw_data(256), Tensor(), o, gen);
    opt.zero_grad();
    res.loss.backward();
    opt.step();
    // The MeanFlow error itself need not fall (its target moves with the network); the fit of
    // the instantaneous velocity at r = t does.
    if (s < 20) first += res.velocity_error.item() / 20;
    if (s >= steps - 20) last += res.velocity_error.item() / 20;
  }
  INFO("velocity error " << first << " -> " << last);
  REQUIRE(last < 0.8 * first);
  MeanFlowSample one = meanflow_sample(u, randn({1000, 2}, gen));
  REQUIRE(one.nfe == 1);
  auto xs = one.x.to_vector<float>();
  int near_left = 0, near_right = 0;
  for (int i = 0; i < 1000; ++i) {
    double dx_l = xs[size_t(i) * 2] + 2, dx_r = xs[size_t(i) * 2] - 2, dy = xs[size_t(i) * 2 + 1];
    if (dx_l * dx_l + dy * dy < 0.25) ++near_left;
    if (dx_r * dx_r + dy * dy < 0.25) ++near_right;
  }
  INFO("near left " << near_left << ", near right " << near_right);
  // An untrained network puts under 200 of them there; short runs with other seeds reach 600-800.
  REQUIRE(near_left + near_right > 500);
  REQUIRE(near_left > 200);
  REQUIRE(near_right > 200);
}

TEST_CASE("MeanFlow loss, gradients and sampling on CUDA match the CPU", "[meanflow][cuda]") {
  if (!cuda_available()) return;  // run with --cuda-only "[cuda]", which reports a skip without a GPU
  const Device gpu = Device::cuda();
  const DiTConfig c = tiny_dit_config();
  Generator g1(0), g2(1);
  DiT on_cpu(c, g1), on_gpu(c, g2);
  perturb_parameters(on_cpu, 0.2, g1);
  on_gpu.to(gpu);
  on_gpu.load_state_dict(on_cpu.state_dict());
  VelocityNet f_cpu = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
    return on_cpu.forward(z, t, h, y);
  };
  VelocityNet f_gpu = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
    return on_gpu.forward(z, t, h, y);
  };
  MeanFlowOptions o;
  o.null_label = 3;
  o.ratio_r_neq_t = 0.5;
  o.class_dropout = 0.25;
  o.guidance_omega = 1.5;
  o.guidance_kappa = 0.3;
  o.guidance_t_min = 0.1;
  o.guidance_t_max = 0.9;
  Tensor x = uniform(Shape{8, 1, 8, 8}, -1, 1, g1);
  Tensor labels = from_vector(std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0, 1}, Shape{8});
  Generator a(5), b(5);
  MeanFlowLoss l_cpu = meanflow_training_loss(f_cpu, x, labels, o, a);
  MeanFlowLoss l_gpu = meanflow_training_loss(f_gpu, x.to(gpu), labels.to(gpu), o, b);
  REQUIRE(l_gpu.loss.device() == gpu);
  REQUIRE(l_gpu.loss.item() == Approx(l_cpu.loss.item()).epsilon(1e-3));
  require_close(l_gpu.velocity.to(Device::cpu()), l_cpu.velocity, 1e-3, 1e-4, "guided velocity");
  require_close(l_gpu.target.to(Device::cpu()), l_cpu.target, 1e-3, 1e-3, "target");
  std::vector<Tensor> grads_cpu = grad({l_cpu.loss}, on_cpu.parameters());
  std::vector<Tensor> grads_gpu = grad({l_gpu.loss}, on_gpu.parameters());
  for (size_t i = 0; i < grads_cpu.size(); ++i)
    require_close(grads_gpu[i].to(Device::cpu()), grads_cpu[i], 1e-3, 1e-4 * (1 + max_abs(grads_cpu[i])),
                  "gradient of " + on_cpu.named_parameters()[i].first);
  Tensor noise = uniform(Shape{8, 1, 8, 8}, -1, 1, g1);
  MeanFlowSample s_cpu = meanflow_sample(f_cpu, noise, 2, labels),
                 s_gpu = meanflow_sample(f_gpu, noise.to(gpu), 2, labels.to(gpu));
  require_close(s_gpu.x.to(Device::cpu()), s_cpu.x, 1e-3, 1e-4, "two-step samples");
}

// Not a test: prints the median time and the peak tensor memory of a MeanFlow loss + backward
// step against a flow matching loss + backward step on the toy2d network (docs/BENCHMARKS.md) at
// batch 1024 and 2 threads. Run: build/tests/test_train "[.meanflow_timing]" -s
TEST_CASE("MeanFlow step against a flow matching step: time and peak memory", "[.meanflow_timing]") {
  const int threads_before = cpu::num_threads();
  cpu::set_num_threads(2);
  Generator gen(1);
  MLPVelocity net(MLPVelocityConfig{}, gen);
  VelocityNet u = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
    return net.forward(z, t, h.defined() ? h : zeros_like(t), y);  // flow matching: h = t - r = 0
  };
  const int64_t B = 1024;
  Tensor x = randn({B, 2}, gen), e = randn({B, 2}, gen), tau = rand({B}, gen);
  MeanFlowOptions o;
  MeanFlowTimes times = sample_meanflow_times(B, o, gen);
  AffinePath path(make_scheduler("condot"));
  auto cfm_step = [&] {
    net.zero_grad();
    cfm_loss(u, path, e, x, tau).backward();
  };
  auto meanflow_step = [&] {
    net.zero_grad();
    meanflow_loss(u, x, e, times.t, times.r, o).loss.backward();
  };
  auto ms = [](const std::function<void()>& f) {
    auto start = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  for (int i = 0; i < 3; ++i) {
    cfm_step();
    meanflow_step();
  }
  // Interleaved, so that load from other processes falls on both alike.
  std::vector<double> cfm_ms, meanflow_ms;
  for (int i = 0; i < 30; ++i) {
    cfm_ms.push_back(ms(cfm_step));
    meanflow_ms.push_back(ms(meanflow_step));
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto peak_mib = [&](const std::function<void()>& f) {
    net.zero_grad();
    reset_peak_memory(Device::cpu());
    f();
    return double(memory_stats(Device::cpu()).peak_bytes) / (1 << 20);
  };
  const double cfm_peak = peak_mib(cfm_step), meanflow_peak = peak_mib(meanflow_step);
  cpu::set_num_threads(threads_before);
  WARN(fmt::format(
      "toy2d MLPVelocity, batch {}, {} threads, median of 30 steps: cfm loss+backward {:.2f} ms, "
      "meanflow loss+backward {:.2f} ms, ratio {:.3f}; peak tensor memory cfm {:.2f} MiB, meanflow {:.2f} MiB, "
      "ratio {:.3f}",
      B, 2, median(cfm_ms), median(meanflow_ms), median(meanflow_ms) / median(cfm_ms), cfm_peak, meanflow_peak,
      meanflow_peak / cfm_peak));
}

}  // namespace dualflow::testing
