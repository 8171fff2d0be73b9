// End-to-end checks of the 2-D flow programs on CPU (label e2e, about a minute each): a run
// trained through `train_flow_matching` exactly as `dualflow train` does, then sampled or
// evaluated from its checkpoint, judged against the data with sample distances and likelihoods.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "engine/dualflow.h"
#include "train/data2d.h"
#include "train/flow_run.h"
#include "train/likelihood.h"
#include "train/sample_distance.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;

fs::path run_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / fmt::format("dualflow-e2e-{}-{}", name, ::getpid());
  fs::remove_all(d);
  return d;
}

LoadedModel train_run(const std::string& name, const std::vector<std::string>& sets) {
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = run_dir(name).string();
  train_flow_matching(parse_config_text("", "<e2e>", sets, flow_matching_schema()), o);
  LoadedModel lm = load_model_from_checkpoint((fs::path(o.out_dir) / "checkpoint.safetensors").string());
  fs::remove_all(o.out_dir);
  return lm;
}

Tensor samples_of(const LoadedModel& lm, int64_t n, uint64_t seed, OdeOptions o) {
  Generator gen(seed);
  Tensor noise = randn({n, 2}, gen, DType::f32) * lm.model.source_std;
  return sample_flow(lm.model.net, noise, o, {}, lm.model.t_end).x;
}

double mean_nll(const LoadedModel& lm, const Tensor& x, OdeMethod method = OdeMethod::RK4, int64_t steps = 40) {
  LikelihoodOptions o;
  o.ode.method = method;
  o.ode.steps = steps;
  o.t_data = lm.model.t_end;
  o.prior_std = lm.model.source_std;
  NoGradGuard ng;
  return -mean(cnf_log_likelihood(velocity_field(lm.model.net), x, o).log_likelihood).to(DType::f64).item();
}

}  // namespace

TEST_CASE("OT-CFM on 8 gaussians: samples within 2x of the data's own two-draw energy distance", "[e2e]") {
  LoadedModel lm = train_run("otcfm", {"data.name=\"8gaussians\"", "method.coupling=\"exact_ot\"", "train.batch=256",
                                       "train.steps=3000", "train.checkpoint_every=0", "sample.n=200"});
  Generator data_gen(101);
  Tensor a = sample_2d("8gaussians", 2000, data_gen, DType::f32),
         b = sample_2d("8gaussians", 2000, data_gen, DType::f32);
  const double floor = energy_distance(a, b);
  OdeOptions o;
  o.method = OdeMethod::Dopri5;
  const double model = energy_distance(samples_of(lm, 2000, 7, o), a);
  std::printf("8gaussians OT-CFM: energy distance %.5f vs the data's own %.5f (ratio %.2f)\n", model, floor,
              model / floor);
  REQUIRE(model < 2 * floor);
}

}  // namespace dualflow::testing

namespace dualflow::testing {

TEST_CASE("maximum-likelihood CNF training on a Gaussian mixture lowers the held-out NLL", "[e2e]") {
  const std::vector<std::string> sets = {"data.name=\"8gaussians\"",
                                         "method.name=\"cnf_mle\"",
                                         "model.width=64",
                                         "model.depth=3",
                                         "model.time_scale=1.0",
                                         "train.batch=128",
                                         "cnf.solver=\"rk4\"",
                                         "cnf.steps=10",
                                         "optim.lr=3e-3",
                                         "train.checkpoint_every=0",
                                         "sample.n=100"};
  auto with_steps = [&](int steps) {
    std::vector<std::string> s = sets;
    s.push_back(fmt::format("train.steps={}", steps));
    return s;
  };
  Generator gen(202);
  Tensor held_out = sample_2d("8gaussians", 1000, gen, DType::f32);
  const double before = mean_nll(train_run("mle0", with_steps(1)), held_out);
  LoadedModel trained = train_run("mle", with_steps(300));
  const double after = mean_nll(trained, held_out);
  // The likelihood holds for the ODE, not only for the training discretisation: the training
  // solver (10 RK4 steps) and adaptive dopri5 agree.
  const double on_training_grid = mean_nll(trained, held_out, OdeMethod::RK4, 10);
  const double adaptive = mean_nll(trained, held_out, OdeMethod::Dopri5);
  std::printf(
      "8gaussians CNF-MLE: held-out NLL %.3f nats after 1 step, %.3f after 300 (10 RK4 steps %.3f, dopri5 %.3f)\n",
      before, after, on_training_grid, adaptive);
  REQUIRE(after < before - 1.0);
  REQUIRE(std::abs(on_training_grid - adaptive) < 0.1);
}

}  // namespace dualflow::testing
