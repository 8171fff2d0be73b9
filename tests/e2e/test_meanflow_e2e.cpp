// End-to-end check of MeanFlow through the training run that `dualflow train` uses (label e2e,
// about two minutes on 2 CPU cores): one-step samples of a checkerboard model against the data's
// own two-draw energy distance, against one Euler step of a flow matching model trained as long,
// and two MeanFlow steps against one.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "engine/dualflow.h"
#include "train/data2d.h"
#include "train/flow_run.h"
#include "train/meanflow.h"
#include "train/sample_distance.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;

LoadedModel train_run(const std::string& name, const std::vector<std::string>& sets) {
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = (fs::temp_directory_path() / fmt::format("dualflow-e2e-{}-{}", name, ::getpid())).string();
  fs::remove_all(o.out_dir);
  train_flow_matching(parse_config_text("", "<e2e>", sets, flow_matching_schema()), o);
  LoadedModel lm = load_model_from_checkpoint((fs::path(o.out_dir) / "checkpoint.safetensors").string());
  fs::remove_all(o.out_dir);
  return lm;
}

// The share of points inside the checkerboard's 8 cells (|x|, |y| < 4, floor(x/2) + floor(y/2)
// even): 1 for the data, 1/2 for points spread evenly over the square. Energy distance rewards
// covering the cells in the right proportions; this rewards not leaving them.
double fraction_on_cells(const Tensor& points) {
  const std::vector<float> xy = points.to_vector<float>();
  const size_t n = xy.size() / 2;
  size_t inside = 0;
  for (size_t i = 0; i < n; ++i) {
    const double x = xy[2 * i], y = xy[2 * i + 1];
    if (std::abs(x) >= 4 || std::abs(y) >= 4) continue;
    inside += (int64_t(std::floor(x / 2)) + int64_t(std::floor(y / 2))) % 2 == 0;
  }
  return double(inside) / double(n);
}

}  // namespace

TEST_CASE(
    "MeanFlow on the checkerboard: one step near the data's own energy distance, beating one Euler step of "
    "flow matching; two steps beat one",
    "[e2e]") {
  // The same network, batch and step count for both; MeanFlow with configs/toy2d_meanflow.toml's
  // method settings (the comments there say why they differ from the paper's), flow matching
  // with independent pairs as its own config trains it.
  const std::vector<std::string> common = {
      "data.name=\"checkerboard\"", "model.width=128",          "model.depth=4", "train.batch=1024",
      "train.steps=3000",           "train.checkpoint_every=0", "sample.n=100"};
  std::vector<std::string> meanflow_sets = common, flow_matching_sets = common;
  for (const char* s : {"method.name=\"meanflow\"", "model.time_scale=10", "meanflow.time_distribution=\"uniform\"",
                        "meanflow.adaptive_p=0"})
    meanflow_sets.push_back(s);
  flow_matching_sets.push_back("method.name=\"cfm\"");
  const LoadedModel meanflow = train_run("meanflow", meanflow_sets);
  const LoadedModel flow_matching = train_run("meanflow-fm", flow_matching_sets);

  // One draw of the energy distance between 2000-point sets varies by a factor of 3 or more
  // from draw to draw (on this data 0.0013 to 0.0095 for two data draws), so the floor and each
  // sampler's distance are means over several independent draws.
  const int draws = 6;
  Generator data_gen(101), noise_gen(7);
  double floor = 0, d1 = 0, d2 = 0, d_fm = 0, d_ode = 0, on1 = 0, on2 = 0, on_fm = 0;
  OdeOptions euler;
  euler.method = OdeMethod::Euler;
  for (int i = 0; i < draws; ++i) {
    const Tensor data = sample_2d("checkerboard", 2000, data_gen, DType::f32);
    floor += energy_distance(data, sample_2d("checkerboard", 2000, data_gen, DType::f32)) / draws;
    const Tensor noise = randn({2000, 2}, noise_gen, DType::f32);
    const Tensor one_step = meanflow_sample(meanflow.model.network, noise, 1).x;
    const Tensor two_steps = meanflow_sample(meanflow.model.network, noise, 2).x;
    euler.steps = 1;
    const Tensor fm_one_step = sample_flow(flow_matching.model.net, noise, euler).x;
    // The instantaneous velocity, integrated as an ODE in flow-matching time: a wrong time
    // convention would send these points far from the data.
    euler.steps = 100;
    const Tensor ode = sample_flow(meanflow.model.net, noise, euler).x;
    d1 += energy_distance(one_step, data) / draws;
    d2 += energy_distance(two_steps, data) / draws;
    d_fm += energy_distance(fm_one_step, data) / draws;
    d_ode += energy_distance(ode, data) / draws;
    on1 += fraction_on_cells(one_step) / draws;
    on2 += fraction_on_cells(two_steps) / draws;
    on_fm += fraction_on_cells(fm_one_step) / draws;
  }
  std::printf(
      "checkerboard MeanFlow, energy distance / the data's own %.5f (means of %d draws of 2000 points): "
      "1 step %.2f, 2 steps %.2f, Euler-100 on u(z, t, t) %.2f; flow matching with 1 Euler step %.2f. On the "
      "cells: 1 step %.3f, 2 steps %.3f, flow matching 1 Euler step %.3f\n",
      floor, draws, d1 / floor, d2 / floor, d_ode / floor, d_fm / floor, on1, on2, on_fm);
  REQUIRE(d1 < 3 * floor);
  REQUIRE(d1 < d_fm);
  REQUIRE(d_ode < 3 * floor);
  // One step already comes close to the data's own distance, where the energy distance no
  // longer ranks the samplers reliably; the share on the cells does.
  REQUIRE(d2 < 3 * floor);
  REQUIRE(on2 > on1 + 0.02);
}

}  // namespace dualflow::testing
