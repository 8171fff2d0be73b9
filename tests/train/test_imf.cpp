// Improved MeanFlow: the guided target, the tangent and the compound-velocity loss of a
// two-head network in closed form; the tangent really is the network's own velocity head and
// du/dt matches finite differences along it (MLP, DiT); the loss gradient against central
// differences of the loss with its stop-gradient parts held; the guidance-scale and interval
// draws; the sampler; and iMF runs through `dualflow train`'s run (2-D and a class-conditional
// DiT sampled at chosen guidance scales and intervals).
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "models/dit.h"
#include "models/mlp_velocity.h"
#include "tests/engine/test_util.h"
#include "tests/models/tiny_networks.h"
#include "train/flow_run.h"
#include "train/imf.h"
#include "train/paths.h"
#include "train/sampling.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;

std::vector<Tensor> parameters_of(Module& m) {
  std::vector<Tensor> out;
  for (const auto& [n, p] : m.named_parameters()) out.push_back(p);
  return out;
}

// A small two-head MLPVelocity in f64 (class-conditional with iMF's conditions when classes > 0)
// and the VelocityNet that calls it.
struct SmallMlp {
  std::shared_ptr<MLPVelocity> module;
  VelocityNet net;
};
SmallMlp small_two_head_mlp(int64_t width, int64_t classes, Generator& gen) {
  MLPVelocityConfig c;
  c.width = width;
  c.depth = 2;
  c.embedding_dim = width / 2;
  c.time_scale = 10;
  c.num_classes = classes;
  c.conditions = classes > 0 ? kImfConditions : 0;
  c.out_dim = 4;
  auto module = std::make_shared<MLPVelocity>(c, gen);
  module->to(DType::f64);
  return {module, [module](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
            return module->forward(z, t, h, y);
          }};
}

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / fmt::format("dualflow-imf-{}-{}", name, ::getpid());
  fs::remove_all(d);
  return d;
}

}  // namespace

TEST_CASE("iMF guided target, tangent, compound velocity and loss of a two-head network in closed form", "[imf]") {
  // u = z (y + 1) + a t + b h0 + g s + p t_min + q t_max, v = z (y + 2) + d t + k s + m t_min +
  // n t_max, where h = (h0, s = 1 - 1/omega, t_min, t_max): du/dt along (dz, dt, dh) = (w, 1,
  // (1, 0, 0, 0)) is w (y + 1) + a + b (a tangent on the conditions would add g, p or q).
  const double a = 0.7, b = -0.4, g = 0.3, p = 0.9, q = -1.1, dd = 0.25, k = 1.5, m = -0.6, nn = 0.45;
  const int64_t null_label = 5, N = 6, D = 2;
  struct Call {
    bool grad_mode;
    int64_t batch;
    bool h0_zero;
  };
  std::vector<Call> calls;
  VelocityNet net = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
    const int64_t n = z.shape()[0];
    REQUIRE(h.shape() == Shape({n, 4}));
    calls.push_back({GradMode::enabled(), n, max_abs(h.select(1, 0)) == 0.0});
    const Tensor yf = y.to(DType::f64).reshape({n, 1});
    auto col = [&](int64_t c) { return h.select(1, c).reshape({n, 1}); };
    const Tensor u = z * (yf + 1.0) + t.reshape({n, 1}) * a + col(0) * b + col(1) * g + col(2) * p + col(3) * q;
    const Tensor v = z * (yf + 2.0) + t.reshape({n, 1}) * dd + col(1) * k + col(2) * m + col(3) * nn;
    return cat({u, v}, 1);
  };
  const Tensor x = uniform_f64({N, D}, -2, 2, 41);
  ImfDraws dr;
  dr.e = uniform_f64({N, D}, -2, 2, 42);
  // Rows 0 and 1 have r = t (the plain pass); row 0's label was dropped, and row 4's.
  const std::vector<double> tv{0.5, 0.2, 0.6, 0.8, 0.4, 0.95}, rv{0.5, 0.2, 0.3, 0.5, 0.1, 0.1};
  const std::vector<int64_t> yv{0, 1, 2, 3, 1, 2}, ydv{5, 1, 2, 3, 5, 2};
  const std::vector<double> omega{2.0, 3.0, 4.0, 1.5, 6.0, 8.0}, tmin{0.0, 0.3, 0.1, 0.45, 0.2, 0.4},
      tmax{1.0, 0.9, 0.7, 0.8, 0.6, 0.9};
  dr.t = from_vector(tv, {N}, DType::f64);
  dr.r = from_vector(rv, {N}, DType::f64);
  dr.labels = from_vector(yv, {N});
  dr.dropped_labels = from_vector(ydv, {N});
  dr.guidance = {from_vector(omega, {N}, DType::f64), from_vector(tmin, {N}, DType::f64),
                 from_vector(tmax, {N}, DType::f64)};
  ImfOptions o;
  o.null_label = null_label;
  ImfLoss l = imf_loss(net, x, dr, o);

  const auto xv = x.to_vector<double>(), ev = dr.e.to_vector<double>();
  std::vector<double> vg(size_t(N * D)), tangent(size_t(N * D)), dudt(size_t(N * D)), compound(size_t(N * D)),
      vpred(size_t(N * D));
  double loss = 0;
  for (int64_t i = 0; i < N; ++i) {
    const size_t si = size_t(i);
    const double t = tv[si], gap = t - rv[si];
    const bool inside = tmin[si] <= t && t <= tmax[si];
    const double s_eff = inside ? 1 - 1 / omega[si] : 0.0, s = 1 - 1 / omega[si];
    const bool kept = ydv[si] != null_label;
    double lu = 0, lv = 0;
    for (int64_t d = 0; d < D; ++d) {
      const size_t j = size_t(i * D + d);
      const double z = (1 - t) * xv[j] + t * ev[j], v = ev[j] - xv[j];
      const double v_c = z * double(yv[si] + 2) + dd * t + k * s_eff + nn;  // h = 0 on [0, 1]
      const double v_u = z * double(null_label + 2) + dd * t + nn;
      tangent[j] = v_c;
      vg[j] = v + (kept ? s_eff : 0.0) * (v_c - v_u);
      const double u = z * double(ydv[si] + 1) + a * t + b * gap + g * s + p * tmin[si] + q * tmax[si];
      dudt[j] = gap > 0 ? v_c * double(ydv[si] + 1) + a + b : 0.0;
      compound[j] = u + gap * dudt[j];
      vpred[j] = z * double(ydv[si] + 2) + dd * t + k * s + m * tmin[si] + nn * tmax[si];
      lu += (compound[j] - vg[j]) * (compound[j] - vg[j]);
      lv += (vpred[j] - vg[j]) * (vpred[j] - vg[j]);
    }
    loss += (lu / (lu + o.adaptive_c) + lv / (lv + o.adaptive_c)) / double(N);
  }
  const Shape shape{N, D};
  require_close(l.tangent, from_vector(tangent, shape, DType::f64), 1e-12, 1e-12,
                "the tangent is v(z, t | omega_eff, c)");
  require_close(l.velocity, from_vector(vg, shape, DType::f64), 1e-12, 1e-12, "guided velocity v_g");
  require_close(l.dudt, from_vector(dudt, shape, DType::f64), 1e-12, 1e-12, "du/dt along the network's tangent");
  require_close(l.compound, from_vector(compound, shape, DType::f64), 1e-12, 1e-12, "V = u + (t - r) du/dt");
  require_close(l.v, from_vector(vpred, shape, DType::f64), 1e-12, 1e-12, "the v head");
  REQUIRE(l.loss.item() == Approx(loss).epsilon(1e-12));
  REQUIRE_FALSE(l.velocity.requires_grad());
  REQUIRE_FALSE(l.dudt.requires_grad());
  // One guidance call on both branches at h = 0 without gradients, then the plain pass on the
  // two r = t rows and the JVP on the other four.
  REQUIRE(calls.size() == 3);
  REQUIRE_FALSE(calls[0].grad_mode);
  REQUIRE(calls[0].batch == 2 * N);
  REQUIRE(calls[0].h0_zero);
  REQUIRE(calls[1].grad_mode);
  REQUIRE(calls[1].batch == 2);
  REQUIRE(calls[2].batch == 4);
}

TEST_CASE("iMF tangent is the network's own velocity head; du/dt equals finite differences along it (MLP, DiT)",
          "[imf]") {
  Generator gen(21);
  auto check = [&](Module& module, const VelocityNet& net, const Tensor& x, const Tensor& labels, uint64_t seed) {
    ImfOptions o;
    o.ratio_r_neq_t = 0.75;
    o.null_label = labels.defined() ? 3 : -1;
    o.class_dropout = labels.defined() ? 0.3 : 0.0;
    Generator draw_gen(seed);
    const ImfDraws d = draw_imf_inputs(x, labels, o, draw_gen);
    const ImfLoss l = imf_loss(net, x, d, o);
    const int64_t n = x.shape()[0];
    const Tensor z = (1.0 - per_sample(d.t, x)) * x + per_sample(d.t, x) * d.e;
    NoGradGuard ng;
    // The tangent: the v head at h = 0 on [0, 1] with the scale where t is in the row's interval.
    ImfGuidance at_zero;
    if (labels.defined()) {
      const Tensor inside = logical_and(ge(d.t, d.guidance.t_min), le(d.t, d.guidance.t_max));
      at_zero = {where(inside, d.guidance.omega, ones_like(d.t)), zeros_like(d.t), ones_like(d.t)};
    }
    const Tensor v_head = split_imf_heads(net(z, d.t, imf_network_h(zeros_like(d.t), at_zero), d.labels), x.shape()).v;
    require_close(l.tangent, v_head, 1e-12, 1e-12, "tangent = the network's v prediction");
    // du/dt: central differences of s -> u(z + (s - t) v_c, s, h0 = s - r) at s = t.
    const double eps = 1e-6;
    auto u_at = [&](double ds) {
      const Tensor s = d.t + ds;
      const Tensor h = imf_network_h(s - d.r, d.guidance);
      return split_imf_heads(net(z + l.tangent * ds, s, h, d.dropped_labels), x.shape()).u;
    };
    Tensor fd = (u_at(eps) - u_at(-eps)) * (1.0 / (2 * eps));
    // Rows with r = t report 0 (the term they multiply vanishes).
    fd = where(per_sample(gt(d.t - d.r, zeros_like(d.t)), x), fd, zeros_like(fd));
    INFO(module.describe() << ": max |dudt| " << max_abs(fd) << " over " << n << " rows");
    REQUIRE(max_abs(fd) > 1e-3);
    require_close(l.dudt, fd, 1e-5, 1e-6 * (1 + max_abs(fd)), "dudt vs central differences");
  };
  SECTION("MLPVelocity, class-conditional") {
    SmallMlp m = small_two_head_mlp(32, 3, gen);
    check(*m.module, m.net, uniform_f64({8, 2}, -2, 2, 1),
          from_vector(std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0, 1}, {8}), 2);
  }
  SECTION("MLPVelocity, unconditional") {
    SmallMlp m = small_two_head_mlp(32, 0, gen);
    check(*m.module, m.net, uniform_f64({8, 2}, -2, 2, 3), Tensor(), 4);
  }
  SECTION("DiT, class-conditional") {
    DiTConfig c = tiny_dit_config();
    c.out_channels = 2;
    c.depth = 1;
    c.conditions = kImfConditions;
    c.time_scale = 10;
    DiT net(c, gen);
    net.to(DType::f64);
    perturb_parameters(net, 0.2, gen);  // adaLN-Zero and the zero final layer would output 0
    VelocityNet f = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& y) {
      return net.forward(z, t, h, y);
    };
    check(net, f, uniform_f64({4, 1, 8, 8}, -1, 1, 5), from_vector(std::vector<int64_t>{2, 0, 1, 2}, {4}), 6);
  }
}

TEST_CASE("iMF loss gradient equals central differences of the loss with its stop-gradient parts held", "[imf]") {
  Generator gen(31);
  SmallMlp m = small_two_head_mlp(16, 2, gen);
  MLPVelocity& net = *m.module;
  const VelocityNet f = m.net;
  const int64_t N = 10;
  const Tensor x = uniform_f64({N, 2}, -2, 2, 32);
  const Tensor labels = from_vector(std::vector<int64_t>{0, 1, 0, 1, 0, 1, 0, 1, 0, 1}, {N});
  ImfOptions o;
  o.null_label = 2;
  Generator draw_gen(33);
  const ImfDraws d = draw_imf_inputs(x, labels, o, draw_gen);
  const ImfLoss l = imf_loss(f, x, d, o);
  std::vector<Tensor> params = parameters_of(net);
  const std::vector<Tensor> g = grad({l.loss}, params);

  // The loss as a function of the weights through the two heads only: the target v_g, du/dt
  // and the adaptive weights are held at their values (what sg means).
  const Tensor z = (1.0 - per_sample(d.t, x)) * x + per_sample(d.t, x) * d.e;
  const Tensor h = imf_network_h(d.t - d.r, d.guidance);
  const Tensor w_u = pow(l.error_u + o.adaptive_c, -1.0), w_v = pow(l.error_v + o.adaptive_c, -1.0);
  auto held = [&]() {
    NoGradGuard ng;
    const ImfHeads heads = split_imf_heads(f(z, d.t, h, d.dropped_labels), x.shape());
    const Tensor compound = heads.u + per_sample(d.t - d.r, x) * l.dudt;
    return mean(w_u * sum(square(compound - l.velocity), {1}) + w_v * sum(square(heads.v - l.velocity), {1})).item();
  };
  // And the whole loss recomputed, targets included.
  auto whole = [&]() {
    NoGradGuard ng;
    return imf_loss(f, x, d, o).loss.item();
  };
  REQUIRE(held() == Approx(l.loss.item()).epsilon(1e-12));
  Generator dir_gen(34);
  for (int trial = 0; trial < 3; ++trial) {
    std::vector<Tensor> dir;
    double analytic = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      dir.push_back(normal(params[i].shape(), 0.0, 1.0, dir_gen, params[i].options()));
      analytic += sum(g[i] * dir[i]).item();
    }
    const double eps = 1e-6;
    auto shift = [&](double s) {
      NoGradGuard ng;
      for (size_t i = 0; i < params.size(); ++i) copy_(params[i], params[i] + dir[i] * s);
    };
    shift(eps);
    const double held_plus = held(), whole_plus = whole();
    shift(-2 * eps);
    const double held_minus = held(), whole_minus = whole();
    shift(eps);
    const double fd_held = (held_plus - held_minus) / (2 * eps), fd_whole = (whole_plus - whole_minus) / (2 * eps);
    INFO("trial " << trial << ": analytic " << analytic << ", held " << fd_held << ", whole " << fd_whole);
    REQUIRE(std::abs(analytic - fd_held) <= 1e-6 * (1 + std::abs(analytic)));
    // The targets move with the weights, so the whole loss's derivative is another number.
    REQUIRE(std::abs(analytic - fd_whole) > 1e-4 * (1 + std::abs(analytic)));
  }
}

TEST_CASE("iMF guidance draws: power-law scales, intervals, r = t rows on [0, 1], determinism", "[imf]") {
  const int64_t n = 200000;
  Generator gen(41);
  SECTION("log-uniform scales (beta 1) on [1, 8]") {
    const Tensor w = sample_guidance_scales(n, 8.0, 1.0, gen, DType::f64);
    REQUIRE(amin(w).item() >= 1.0);
    REQUIRE(amax(w).item() <= 8.0);
    // log omega is uniform on [0, ln 8]: mean ln 8 / 2, standard deviation ln 8 / sqrt(12).
    const Tensor lw = log(w);
    REQUIRE(mean(lw).item() == Approx(std::log(8.0) / 2).margin(0.01));
    REQUIRE(std::sqrt(mean(square(lw - mean(lw))).item()) == Approx(std::log(8.0) / std::sqrt(12.0)).margin(0.01));
  }
  SECTION("beta 2: density 1/omega^2 on [1, 8]") {
    // normaliser 7/8; E[omega] = ln 8 / (7/8); E[omega^2] = 7 / (7/8) = 8.
    const Tensor w = sample_guidance_scales(n, 8.0, 2.0, gen, DType::f64);
    REQUIRE(mean(w).item() == Approx(std::log(8.0) * 8.0 / 7.0).margin(0.02));
    REQUIRE(mean(square(w)).item() == Approx(8.0).margin(0.1));
  }
  SECTION("beta 0: uniform on [1, 8]") {
    const Tensor w = sample_guidance_scales(n, 8.0, 0.0, gen, DType::f64);
    REQUIRE(mean(w).item() == Approx(4.5).margin(0.02));
  }
  SECTION("draws of a step") {
    ImfOptions o;
    o.null_label = 10;
    const int64_t b = 1000;
    const Tensor x = uniform_f64({b, 2}, -1, 1, 42);
    const Tensor labels = zeros({b}, DType::i64);
    Generator g1(43), g2(43);
    const ImfDraws a = draw_imf_inputs(x, labels, o, g1), c = draw_imf_inputs(x, labels, o, g2);
    REQUIRE(max_abs_diff(a.guidance.omega, c.guidance.omega) == 0.0);
    REQUIRE(max_abs_diff(a.e, c.e) == 0.0);
    const auto t = a.t.to_vector<double>(), r = a.r.to_vector<double>(), lo = a.guidance.t_min.to_vector<double>(),
               hi = a.guidance.t_max.to_vector<double>();
    int64_t equal = 0;
    for (int64_t i = 0; i < b; ++i) {
      const size_t s = size_t(i);
      if (t[s] == r[s]) {
        ++equal;
        REQUIRE(lo[s] == 0.0);
        REQUIRE(hi[s] == 1.0);
      } else {
        REQUIRE((lo[s] >= 0.0 && lo[s] < 0.5));
        REQUIRE((hi[s] >= 0.5 && hi[s] < 1.0));
      }
    }
    REQUIRE(equal == b / 2);  // ratio_r_neq_t = 0.5: the leading half
    // Unconditional: MeanFlow's draws and nothing more.
    Generator g3(44), g4(44);
    const ImfDraws u = draw_imf_inputs(x, Tensor(), o, g3);
    MeanFlowOptions mo = o.time_options();
    mo.class_dropout = 0;
    const MeanFlowDraws m = draw_meanflow_inputs(x, Tensor(), mo, g4);
    REQUIRE_FALSE(u.guidance.defined());
    REQUIRE(max_abs_diff(u.e, m.e) == 0.0);
    REQUIRE(max_abs_diff(u.t, m.t) == 0.0);
    REQUIRE(max_abs_diff(u.r, m.r) == 0.0);
  }
  SECTION("bad options") {
    ImfOptions o;
    o.omega_max = 0.5;
    REQUIRE_THROWS_WITH(o.validate(), Catch::Contains("omega_max must be >= 1, got 0.5"));
    REQUIRE_THROWS_WITH(constant_guidance(2, 0.5, 0, 1, DType::f32), Catch::Contains("scale must be >= 1"));
    REQUIRE_THROWS_WITH(constant_guidance(2, 2, 0.7, 0.3, DType::f32), Catch::Contains("[0.7, 0.3]"));
  }
}

TEST_CASE("iMF sampling jumps with the u head at the requested guidance; NFE counts", "[imf]") {
  // u = c (constant), v = 0: x = noise - c whatever the steps; the network sees the guidance.
  std::vector<Tensor> seen, times;
  VelocityNet net = [&](const Tensor& z, const Tensor& t, const Tensor& h, const Tensor&) {
    seen.push_back(h);
    times.push_back(t);
    return cat({ones_like(z) * 0.5, zeros_like(z)}, 1);
  };
  const Tensor noise = uniform_f64({3, 2}, -1, 1, 51);
  const ImfGuidance gd = constant_guidance(3, 4.0, 0.2, 0.7, DType::f64);
  for (int64_t steps : {1, 2, 5}) {
    seen.clear();
    times.clear();
    const MeanFlowSample s = imf_sample(net, noise, meanflow_time_grid(steps), Tensor(), gd);
    REQUIRE(s.nfe == steps);
    require_close(s.x, noise - 0.5, 1e-12, 1e-12, "x = noise - c");
    REQUIRE(seen.size() == size_t(steps));
    for (int64_t k = 0; k < steps; ++k) {
      // Step k jumps from t = 1 - k/steps by 1/steps; every row sees the same guidance.
      REQUIRE(seen[size_t(k)].shape() == Shape({3, 4}));
      const double t = 1.0 - double(k) / double(steps);
      require_close(times[size_t(k)], full({3}, t, DType::f64), 1e-12, 1e-12, "t");
      const std::vector<double> expected{1.0 / double(steps), 0.75, 0.2, 0.7};  // t - r, 1 - 1/omega, interval
      std::vector<double> rows;
      for (int i = 0; i < 3; ++i) rows.insert(rows.end(), expected.begin(), expected.end());
      require_close(seen[size_t(k)], from_vector(rows, {3, 4}, DType::f64), 1e-12, 1e-12, "h");
    }
  }
  seen.clear();
  imf_sample(net, noise, meanflow_time_grid(1), Tensor(), ImfGuidance{});
  REQUIRE(seen[0].shape() == Shape({3}));  // unconditional: the interval alone
}

TEST_CASE("iMF runs: a 2-D run resumes bit for bit; a class-conditional DiT samples at chosen guidance",
          "[imf][flow_run]") {
  auto config = [](const std::vector<std::string>& extra) {
    std::vector<std::string> sets = {"model.width=32",
                                     "model.depth=2",
                                     "train.batch=64",
                                     "train.log_every=5",
                                     "sample.n=200",
                                     "method.name=\"imf\"",
                                     "method.coupling=\"independent\"",
                                     "model.time_scale=10"};
    sets.insert(sets.end(), extra.begin(), extra.end());
    return parse_config_text("", "<test>", sets, flow_matching_schema());
  };
  SECTION("2-D") {
    fs::path straight = fresh_dir("straight"), resumed = fresh_dir("resumed");
    TrainRunOptions o;
    o.quiet = true;
    o.out_dir = straight.string();
    TrainRunResult full = train_flow_matching(config({"train.steps=20", "train.checkpoint_every=10"}), o);
    std::ifstream metrics(straight / "metrics.jsonl");
    std::string line, last;
    while (std::getline(metrics, line)) last = line;
    REQUIRE(last.find("\"mse\":") != std::string::npos);
    REQUIRE(last.find("\"v_mse\":") != std::string::npos);
    o.out_dir = resumed.string();
    train_flow_matching(config({"train.steps=10", "train.checkpoint_every=10"}), o);
    o.resume = true;
    TrainRunResult rest = train_flow_matching(config({"train.steps=20", "train.checkpoint_every=10"}), o);
    REQUIRE(rest.last_loss == full.last_loss);

    LoadedModel lm = load_model_from_checkpoint((straight / "checkpoint.safetensors").string());
    REQUIRE(lm.model.method->samplers() == std::vector<std::string>{"imf", "ode"});
    Generator g(3);
    const Tensor x = randn({5, 2}, g), tau = rand({5}, g);
    // The ODE integrates the v head in flow-matching time: -v(x, 1 - tau, h = 0).
    const Tensor out = lm.model.network(x, 1.0 - tau, zeros({5}), Tensor());
    REQUIRE(out.shape() == Shape({5, 4}));
    REQUIRE(max_abs_diff(lm.model.net(x, tau, Tensor(), Tensor()), -out.narrow(1, 2, 2)) == 0.0);
    SampleRequest r;
    r.n = 50;
    r.sampler = "imf";
    DrawnSamples s = draw_samples(lm.model, r);
    REQUIRE(s.nfe == 1);
    REQUIRE(s.how == "iMF, 1 step");
    r.cfg_scale = 2;
    REQUIRE_THROWS_WITH(draw_samples(lm.model, r), Catch::Contains("needs a class-conditional model"));
    fs::remove_all(straight);
    fs::remove_all(resumed);
  }
  SECTION("class-conditional DiT on Fashion-MNIST") {
    fs::path dir = fresh_dir("dit");
    TrainRunOptions o;
    o.quiet = true;
    o.out_dir = dir.string();
    train_flow_matching(config({"data.name=\"fashion_mnist\"", "data.limit=64", "model.kind=\"dit\"",
                                "model.classes=10", "model.dit_hidden=32", "model.dit_depth=1", "model.dit_heads=2",
                                "train.batch=16", "train.steps=3", "train.checkpoint_every=0", "sample.n=20",
                                "sample.cfg_scale=3", "sample.cfg_t_min=0.2", "sample.cfg_t_max=0.8"}),
                        o);
    LoadedModel lm = load_model_from_checkpoint((dir / "checkpoint.safetensors").string());
    REQUIRE(lm.model.module->describe().find("h+3 conditions") != std::string::npos);
    SampleChoices c;
    c.n = 20;
    SampleRequest r = sample_request(lm.spec, lm.model, c);
    REQUIRE(r.sampler == "imf");
    REQUIRE(r.cfg_scale == 3.0);
    REQUIRE((r.cfg_t_min == 0.2 && r.cfg_t_max == 0.8));
    const DrawnSamples guided = draw_samples(lm.model, r);
    REQUIRE(guided.how == "iMF, 1 step, guidance 3 on t in [0.2, 0.8]");
    r.cfg_scale = 1;
    const DrawnSamples plain = draw_samples(lm.model, r);
    REQUIRE(guided.x.shape() == Shape({20, 1, 28, 28}));
    REQUIRE(max_abs_diff(guided.x, plain.x) > 0.0);  // the scale is an input of the network
    r.cfg_scale = 3;
    r.cfg_t_min = 0.0;
    r.cfg_t_max = 1.0;
    REQUIRE(max_abs_diff(draw_samples(lm.model, r).x, guided.x) > 0.0);  // and so is the interval
    r.cfg_t_min = 0.2;
    r.cfg_t_max = 0.8;
    r.sampler = "ode";
    REQUIRE_THROWS_WITH(draw_samples(lm.model, r), Catch::Contains("guidance interval [0.2, 0.8] needs"));
    fs::remove_all(dir);
  }
}

}  // namespace dualflow::testing
