// BatchShard, the share of each step's batch one process of a data-parallel run takes: strided
// rows, weights that make the weighted shard losses the batch loss, and every shipped method
// (reflow too, from a tiny teacher) honouring it (the losses of two shards, weighted, are the one-process loss of the same draws).
#include <unistd.h>
#include <catch2/catch.hpp>

#include <filesystem>

#include "train/flow_run.h"

namespace dualflow::testing {
namespace {

using Catch::Matchers::Contains;

TEST_CASE("BatchShard takes strided rows and weights them by their share", "[train][parallel]") {
  const Tensor batch = arange(0, 10, 1, DType::f32).reshape({5, 2});
  const BatchShard first = make_batch_shard(0, 2, 5), second = make_batch_shard(1, 2, 5);
  CHECK(first.rows(batch).to_vector<float>() == std::vector<float>{0, 1, 4, 5, 8, 9});
  CHECK(second.rows(batch).to_vector<float>() == std::vector<float>{2, 3, 6, 7});
  CHECK(first.weights(5) == std::vector<double>{0.6, 0.4});
  CHECK(BatchShard{}.rows(batch).same(batch));  // one process: the batch itself, no copy
  CHECK_FALSE(BatchShard{}.rows(Tensor()).defined());
  REQUIRE_THROWS_WITH(make_batch_shard(0, 4, 3), Contains("train.batch = 3") && Contains("4 processes"));
}

// The loss of `config`'s method at step 0, on rows `shard` of the batch, from a fresh run state.
double shard_loss(const std::string& config, const BatchShard& shard, const std::vector<std::string>& extra) {
  std::vector<std::string> sets = {"train.batch=64", "run.threads=1"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  const FlowRunSpec spec =
      parse_flow_run_spec(load_config(std::string(DUALFLOW_CONFIG_DIR) + "/" + config, sets, flow_matching_schema()));
  Generator init(spec.run.seed), data(spec.run.seed + 1);
  VelocityModel vm = build_velocity_model(spec, init);
  const Objective objective =
      spec.method->objective(TrainingSetup{spec, vm, data, TensorOptions(DType::f32), false, true, shard});
  return objective(data, 0).loss.to(DType::f64).item();
}

TEST_CASE("every shipped method's loss on two weighted shards is its loss on the whole batch", "[train][parallel]") {
  struct Case {
    std::string config;
    std::vector<std::string> extra;
  };
  std::vector<Case> cases = {
      {"toy2d_cfm.toml", {}},  // exact-OT coupling over the whole batch
      {"toy2d_meanflow.toml", {}},
      {"toy2d_imf.toml", {"imf.adaptive_p=1"}},
      // Class-conditional iMF: the guidance draws and both label sets are sharded too.
      {"fmnist_dit_imf.toml", {"data.limit=128", "model.dit_hidden=32", "model.dit_depth=1", "model.dit_heads=2"}},
      {"toy2d_cnf_mle.toml", {"cnf.divergence=hutchinson"}},
      {"toy2d_cnf_mle.toml", {}},
      {"toy2d_score_vp.toml", {}},
      {"toy2d_cfm.toml", {"method.coupling=sinkhorn"}},
  };
  // Reflow draws its pairs from a teacher: a 2-step toy2d CFM run, with a small pair budget.
  const std::filesystem::path teacher =
      std::filesystem::temp_directory_path() / fmt::format("dualflow-shard-teacher-{}", ::getpid());
  std::filesystem::remove_all(teacher);
  TrainRunOptions quiet;
  quiet.quiet = true;
  quiet.out_dir = teacher.string();
  train_flow_matching(load_config(std::string(DUALFLOW_CONFIG_DIR) + "/toy2d_cfm.toml",
                                  {"train.steps=2", "sample.n=10", "run.threads=1"}, flow_matching_schema()),
                      quiet);
  cases.push_back({"toy2d_reflow.toml",
                   {"reflow.teacher=\"" + (teacher / "checkpoint.safetensors").string() + "\"", "reflow.pairs=256",
                    "reflow.steps=2"}});
  for (const Case& c : cases) {
    INFO(c.config << " " << (c.extra.empty() ? "" : c.extra[0]));
    const double whole = shard_loss(c.config, BatchShard{}, c.extra);
    const BatchShard a = make_batch_shard(0, 3, 64), b = make_batch_shard(1, 3, 64), d = make_batch_shard(2, 3, 64);
    const std::vector<double> w = a.weights(64);
    const double combined = w[0] * shard_loss(c.config, a, c.extra) + w[1] * shard_loss(c.config, b, c.extra) +
                            w[2] * shard_loss(c.config, d, c.extra);
    CHECK(combined == Approx(whole).epsilon(1e-5));
  }
  std::filesystem::remove_all(teacher);
}

}  // namespace
}  // namespace dualflow::testing
