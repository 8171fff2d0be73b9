// End-to-end check of image training on CPU (label e2e): a tiny class-conditional U-Net trained
// with OT-CFM on a Fashion-MNIST subset through `train_flow_matching`, exactly as `dualflow
// train` runs it; the loss must fall, and samples from its checkpoint must have the images'
// shape, be finite and stay in the data's range.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "engine/dualflow.h"
#include "train/flow_run.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;

// (step, loss) of every metrics line that has a loss.
std::vector<std::pair<int64_t, double>> losses_of(const fs::path& metrics) {
  std::ifstream f(metrics);
  std::vector<std::pair<int64_t, double>> out;
  for (std::string line; std::getline(f, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss") && j["loss"].is_number())
      out.emplace_back(j["step"].get<int64_t>(), j["loss"].get<double>());
  }
  return out;
}

double mean_of(const std::vector<std::pair<int64_t, double>>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i].second;
  return s / double(to - from);
}

}  // namespace

TEST_CASE("a tiny class-conditional U-Net learns Fashion-MNIST with OT-CFM", "[e2e]") {
  const fs::path dir = fs::temp_directory_path() / fmt::format("dualflow-e2e-fmnist-{}", ::getpid());
  fs::remove_all(dir);
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = dir.string();
  const std::vector<std::string> sets = {"data.name=\"fashion_mnist\"",
                                         "data.limit=2000",
                                         "model.kind=\"unet\"",
                                         "model.classes=10",
                                         "model.unet_channels=8",
                                         "model.unet_mult=[1, 2]",
                                         "model.unet_blocks=1",
                                         "model.unet_attention=[14]",
                                         "method.coupling=\"exact_ot\"",
                                         "optim.name=\"adamw\"",
                                         "optim.lr=2e-3",
                                         "optim.warmup_steps=20",
                                         "train.steps=200",
                                         "train.batch=32",
                                         "train.log_every=10",
                                         "train.checkpoint_every=0",
                                         "sample.steps=10",
                                         "sample.cfg_scale=1.5"};
  train_flow_matching(parse_config_text("", "<e2e>", sets, flow_matching_schema()), o);

  auto losses = losses_of(dir / "metrics.jsonl");
  REQUIRE(losses.size() == 20);
  const double first = mean_of(losses, 0, 3), last = mean_of(losses, losses.size() - 5, losses.size());
  std::printf("tiny U-Net OT-CFM on 2000 Fashion-MNIST images: loss %.4f (steps 10-30) -> %.4f (last 50 steps)\n",
              first, last);
  CHECK(last < 0.7 * first);
  CHECK(fs::exists(dir / "samples.png"));

  LoadedModel lm = load_model_from_checkpoint((dir / "checkpoint.safetensors").string());
  SampleRequest r;
  r.n = 20;
  r.ode.method = OdeMethod::Euler;
  r.ode.steps = 10;
  r.cfg_scale = 1.5;
  DrawnSamples s = draw_samples(lm.model, r);
  REQUIRE(s.x.shape() == Shape({20, 1, 28, 28}));
  REQUIRE(s.labels.defined());
  CHECK(s.labels.to_vector<int64_t>()[15] == 1);  // row 2 of a 10-wide grid is class 1
  const double lo = amin(s.x).to(DType::f64).item(), hi = amax(s.x).to(DType::f64).item();
  const double m = mean(s.x).to(DType::f64).item();
  std::printf("samples: min %.3f max %.3f mean %.3f (data mean about -0.43)\n", lo, hi, m);
  CHECK(std::isfinite(lo));
  CHECK(std::isfinite(hi));
  CHECK(lo > -2.0);
  CHECK(hi < 2.0);
  // Fashion-MNIST is mostly black background: the mean pixel of [-1, 1] images is about -0.43.
  CHECK(m < -0.1);
  CHECK(m > -0.8);
  fs::remove_all(dir);
}

}  // namespace dualflow::testing
