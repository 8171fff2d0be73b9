// Extending dualflow from outside train/: a program registers a method of its own (flow
// matching with a time-dependent loss weight, with a config section of its own) and a network
// of its own, then trains and samples them through dualflow's run spec, training loop,
// checkpoints and samplers exactly as `dualflow train` and `dualflow sample` do.
#include <unistd.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "models/linear.h"
#include "train/flow_run.h"
#include "train/methods/coupled_batch.h"
#include "train/networks/network_registry.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;

// CFM whose squared error is weighted by (1 + weight_slope * t): the whole method.
class WeightedCfm final : public Method {
 public:
  explicit WeightedCfm(double slope) : slope_(slope) {}
  Objective objective(const TrainingSetup& setup) const override {
    const CoupledBatches batches = coupled_batches(setup);
    const std::shared_ptr<ProbabilityPath> path = training_path(setup);
    const VelocityNet net = setup.model.network;
    const double slope = slope_;
    return [=](Generator& gen, int64_t step) {
      CoupledTrainingBatch b = batches(gen, step);
      PathSample s = path->sample(b.x0, b.x1, b.t);
      Tensor error = sum(square(net(s.x_t, b.t, Tensor(), b.labels) - stop_gradient(s.u_t)), {1});
      Tensor weight = 1.0 + slope * b.t;
      return StepOutcome{mean(weight * error), {{"t", b.t}}, {{"weight_mean", mean(weight)}}};
    };
  }

 private:
  double slope_;
};

void register_weighted_cfm() {
  for (const MethodEntry& e : method_registry())
    if (e.name == "weighted_cfm") return;
  MethodEntry e;
  e.name = "weighted_cfm";
  e.description = "flow matching with a loss weight growing in t";
  e.add_keys = [](ConfigSchema& s) {
    s.add_float("weighted_cfm.slope", 1.0, "the loss weight is 1 + slope * t").at_least(0);
  };
  e.configure = [](const RunConfig& c, const FlowRunSpec&) {
    return std::make_shared<const WeightedCfm>(c.get_float("weighted_cfm.slope"));
  };
  register_method(std::move(e));
}

// A one-hidden-layer velocity network on 2-D points (it ignores labels and h).
class TinyVelocity final : public VelocityNetwork {
 public:
  TinyVelocity(int64_t width, Generator& gen) : VelocityNetwork("TinyVelocity") {
    in = register_module("in", std::make_shared<Linear>(3, width, gen));
    out = register_module("out", std::make_shared<Linear>(width, 2, gen));
  }
  Tensor forward(const Tensor& x, const Tensor& t, const Tensor&, const Tensor&) override {
    return out->forward(silu(in->forward(cat({x, t.reshape({t.size(0), 1})}, 1))));
  }
  std::shared_ptr<Linear> in, out;
};

void register_tiny_network() {
  for (const NetworkEntry& e : network_registry())
    if (e.kind == "tiny") return;
  NetworkEntry e;
  e.kind = "tiny";
  e.description = "a one-layer test network";
  e.data_kind = DataKind::Points2D;
  e.add_keys = [](ConfigSchema& s) {
    s.add_int("model.tiny_width", 16, "hidden width of the tiny network").at_least(1);
  };
  e.parse = [](const RunConfig& c, const NetworkContext&) -> NetworkBuilder {
    const int64_t width = c.get_int("model.tiny_width");
    return [width](Generator& init) { return std::make_shared<TinyVelocity>(width, init); };
  };
  register_network(std::move(e));
}

}  // namespace

TEST_CASE("registry: a method and a network registered outside train/ train and sample through dualflow's loop",
          "[registry]") {
  register_weighted_cfm();
  register_tiny_network();
  const ConfigSchema schema = flow_matching_schema();
  REQUIRE(schema.find("weighted_cfm.slope") != nullptr);
  REQUIRE(schema.find("model.tiny_width") != nullptr);
  REQUIRE(schema.find("method.name")->constraint_text().find("weighted_cfm") != std::string::npos);

  const fs::path dir = fs::temp_directory_path() / fmt::format("dualflow-registry-{}", ::getpid());
  fs::remove_all(dir);
  RunConfig config = parse_config_text(
      "[method]\nname = \"weighted_cfm\"\n[weighted_cfm]\nslope = 2.0\n[model]\nkind = \"tiny\"\ntiny_width = 24\n",
      "<test>",
      {"train.steps=40", "train.batch=64", "train.log_every=10", "train.checkpoint_every=20", "sample.n=100",
       "sample.steps=4"},
      schema);
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = dir.string();
  TrainRunResult r = train_flow_matching(config, o);
  REQUIRE(r.steps_done == 40);
  REQUIRE(std::isfinite(r.last_loss));
  std::ifstream metrics(dir / "metrics.jsonl");
  std::string first;
  std::getline(metrics, first);
  REQUIRE(first.find("\"weight_mean\":") != std::string::npos);
  REQUIRE(fs::exists(dir / "samples.png"));

  // The checkpoint loads back into the registered network and samples by the ODE.
  LoadedModel lm = load_model_from_checkpoint((dir / "checkpoint.safetensors").string());
  REQUIRE(lm.spec.method_name == "weighted_cfm");
  REQUIRE(lm.model.module->type_name() == "TinyVelocity");
  REQUIRE(lm.model.module->find("in.weight").shape() == Shape({24, 3}));
  SampleChoices choices;
  choices.n = 50;
  DrawnSamples s = draw_samples(lm.model, sample_request(lm.spec, lm.model, choices));
  REQUIRE(s.x.shape() == Shape({50, 2}));
  REQUIRE(s.nfe == 4);
  REQUIRE(s.how == "euler, 4 steps");
  // Its own keys are checked like any other.
  REQUIRE_THROWS_WITH(parse_config_text("[weighted_cfm]\nslope = -1.0\n", "<test>", {}, schema),
                      Catch::Contains("weighted_cfm.slope"));
  REQUIRE_THROWS_WITH(register_method(find_method("weighted_cfm")), Catch::Contains("already registered"));
  fs::remove_all(dir);
}

}  // namespace dualflow::testing
