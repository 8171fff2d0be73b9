// Data-parallel training under `mpirun -np 2` (CTest label mpi): the group's deterministic sum,
// 2 ranks against 1 process on toy2d CFM and MeanFlow, two 2-rank runs bit for bit, resuming
// under another number of ranks, and the desync guard. Every rank runs every case in the same
// order; a case's collectives are called by both ranks, and rank-dependent checks come after them.
// The [cuda] cases run where a GPU answers (their own CTest entry, skipped elsewhere).
#include <unistd.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>

#include "engine/safetensors.h"
#include "models/linear.h"
#include "train/flow_run.h"
#include "train/parallel/data_parallel.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

// MPI starts once per process and ends at exit, so the cases share one group.
ProcessGroup& world() {
  static std::shared_ptr<ProcessGroup> group = ProcessGroup::join();
  return *group;
}

// A folder with the same name on every rank (rank 0's process id), emptied.
fs::path shared_dir(const std::string& name) {
  uint64_t pid = uint64_t(::getpid());
  world().broadcast(&pid, sizeof(pid), 0);
  const fs::path dir = fs::temp_directory_path() / fmt::format("dualflow-dp-{}-{}", name, pid);
  world().barrier();
  if (world().rank() == 0) fs::remove_all(dir);
  world().barrier();
  return dir;
}

std::vector<std::string> run_sets(int64_t steps, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> sets = {fmt::format("train.steps={}", steps), "train.log_every=10", "run.threads=1",
                                   "sample.n=100", "run.sync_check_every=10"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return sets;
}

// Trains configs/<config> into `dir`, on every rank of the world (distributed) or on rank 0 alone.
void train(const std::string& config, const fs::path& dir, int64_t steps, bool distributed, bool resume = false,
           const std::vector<std::string>& extra = {}) {
  if (distributed || world().rank() == 0) {
    TrainRunOptions o;
    o.quiet = true;
    o.out_dir = dir.string();
    o.resume = resume;
    o.group = distributed ? ProcessGroup::join() : ProcessGroup::single();
    train_flow_matching(
        load_config(std::string(DUALFLOW_CONFIG_DIR) + "/" + config, run_sets(steps, extra), flow_matching_schema()),
        o);
  }
  world().barrier();
}

// The largest difference between two checkpoints' tensors whose names start with `prefix`
// ("model.", "ema.", "optim."), relative to each tensor's largest value.
double max_relative_difference(const fs::path& a, const fs::path& b, const std::string& prefix = "") {
  SafetensorsContent x = load_safetensors((a / "checkpoint.safetensors").string());
  SafetensorsContent y = load_safetensors((b / "checkpoint.safetensors").string());
  REQUIRE(x.tensors.size() == y.tensors.size());
  double worst = 0;
  for (const auto& [name, t] : x.tensors) {
    if (name.rfind(prefix, 0) != 0) continue;
    auto it = std::find_if(y.tensors.begin(), y.tensors.end(), [&](const auto& e) { return e.first == name; });
    REQUIRE(it != y.tensors.end());
    const Tensor u = t.to(DType::f64), v = it->second.to(DType::f64);
    REQUIRE(u.shape() == v.shape());
    const double scale = std::max(amax(abs(v)).item(), 1e-30);
    worst = std::max(worst, amax(abs(u - v)).item() / scale);
  }
  return worst;
}

// The metrics lines' losses, in order.
std::vector<double> losses(const fs::path& dir) {
  std::ifstream f(dir / "metrics.jsonl");
  const std::regex loss_field(R"("loss":([-+0-9.eE]+))");
  std::vector<double> out;
  for (std::string line; std::getline(f, line);) {
    std::smatch m;
    if (std::regex_search(line, m, loss_field)) out.push_back(std::stod(m[1]));
  }
  return out;
}

std::string file_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
std::string without_timing(const std::string& metrics) {
  return std::regex_replace(metrics, std::regex(R"re(,"(it_per_s|sync_ms)":[^,}]*)re"), "");
}

TEST_CASE("weighted_sum: the rank-order sum in f64, the same bits on every rank", "[mpi]") {
  ProcessGroup& g = world();
  REQUIRE(g.size() >= 2);
  const int64_t n = 1001;
  auto value = [](int r, int64_t i) { return float(std::sin(0.37 * double(i) * (r + 1)) * std::pow(10.0, i % 9 - 4)); };
  const BatchShard shard = make_batch_shard(g.rank(), g.size(), 255);  // unequal shares: 128 and 127 rows
  const std::vector<double> w = shard.weights(255);
  std::vector<float> data(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) data[size_t(i)] = value(g.rank(), i);
  g.weighted_sum(data.data(), n, w);
  uint64_t mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    double expected = 0;
    for (int r = 0; r < g.size(); ++r) expected += w[size_t(r)] * double(value(r, i));
    mismatches += data[size_t(i)] != float(expected);
  }
  CHECK(mismatches == 0);
  uint64_t bits = 0;
  for (float f : data) bits = bits * 31 + uint64_t(std::bit_cast<uint32_t>(f));
  const std::vector<uint64_t> all = g.all_gather(bits);
  CHECK(std::all_of(all.begin(), all.end(), [&](uint64_t b) { return b == all[0]; }));
}

// Not run by CTest: the transport's own cost, without a training step's imbalance around it.
//   mpirun -np 2 build/tests/test_data_parallel "[.timing]"
TEST_CASE("weighted_sum timing", "[.timing]") {
  ProcessGroup& g = world();
  const std::vector<double> w(size_t(g.size()), 1.0 / g.size());
  for (int64_t n : {int64_t(1) << 10, int64_t(200000), int64_t(1) << 22}) {
    std::vector<float> data(static_cast<size_t>(n), 1.0f);
    g.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    const int reps = n > 1000000 ? 20 : 200;
    for (int i = 0; i < reps; ++i) g.weighted_sum(data.data(), n, w);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
    if (g.rank() == 0) fmt::print("weighted_sum of {} floats on {} ranks: {:.3f} ms\n", n, g.size(), ms);
  }
}

TEST_CASE("broadcast and gather_to_root", "[mpi]") {
  ProcessGroup& g = world();
  std::vector<double> v = {double(g.rank()) + 0.5, -1.0};
  g.broadcast(v.data(), v.size() * sizeof(double), 0);
  CHECK(v[0] == 0.5);
  std::vector<float> mine(size_t(g.rank() + 1), float(g.rank()));
  const std::vector<float> all = g.gather_to_root(mine);
  if (g.rank() == 0) {
    REQUIRE(all.size() == size_t(g.size() * (g.size() + 1) / 2));
    CHECK(all[0] == 0.0f);
    CHECK(all.back() == float(g.size() - 1));
  } else {
    CHECK(all.empty());
  }
}

// The two differ only in the order of floating-point sums (a 256-row batch mean against two
// 128-row means combined). The losses agree to about 1e-7. Plain SGD keeps the weights that
// close; Adam divides each gradient entry by its own running RMS, so entries whose gradient is
// near zero turn rounding noise into updates of up to lr, and its weights agree to about 1e-5.
TEST_CASE("2 ranks train what 1 process trains (toy2d CFM, MeanFlow and iMF, 100 steps)", "[mpi]") {
  struct Case {
    std::string config;
    std::vector<std::string> optimizer;
    double weight_tolerance;
  };
  const std::vector<Case> cases = {
      {"toy2d_cfm.toml", {}, 1e-4},
      {"toy2d_meanflow.toml", {}, 2e-4},
      {"toy2d_cfm.toml", {"optim.name=sgd", "optim.lr=0.05"}, 1e-6},
      {"toy2d_meanflow.toml", {"optim.name=sgd", "optim.lr=0.01"}, 1e-6},
      // iMF shards its draws like MeanFlow and runs its own v head for the tangent.
      {"toy2d_imf.toml", {"optim.name=sgd", "optim.lr=0.01"}, 1e-6},
  };
  for (const Case& c : cases) {
    const std::string what = c.config + (c.optimizer.empty() ? " (adam)" : " (sgd)");
    INFO(what);
    const fs::path one = shared_dir("one"), two = shared_dir("two");
    train(c.config, one, 100, false, false, c.optimizer);
    train(c.config, two, 100, true, false, c.optimizer);
    if (world().rank() == 0) {
      const std::vector<double> a = losses(one), b = losses(two);
      REQUIRE(a.size() == 10);
      REQUIRE(b.size() == a.size());
      double worst_loss = 0;
      for (size_t i = 0; i < a.size(); ++i) worst_loss = std::max(worst_loss, std::abs(a[i] - b[i]) / std::abs(a[i]));
      const double model = max_relative_difference(two, one, "model."), ema = max_relative_difference(two, one, "ema."),
                   optim = max_relative_difference(two, one, "optim.");
      fmt::print("{}: 2 ranks against 1 process after 100 steps, largest relative difference: losses {:.2e}, weights "
                 "{:.2e}, EMA weights {:.2e}, optimizer state {:.2e}\n",
                 what, worst_loss, model, ema, optim);
      CHECK(worst_loss <= 1e-6);
      CHECK(model <= c.weight_tolerance);
      CHECK(ema <= c.weight_tolerance);
      CHECK(file_bytes(two / "metrics.jsonl").find("\"world_size\":2") != std::string::npos);
      fs::remove_all(one);
      fs::remove_all(two);
    }
    world().barrier();
  }
}

TEST_CASE("two 2-rank runs are bit for bit the same", "[mpi]") {
  const fs::path a = shared_dir("repeat-a"), b = shared_dir("repeat-b");
  train("toy2d_meanflow.toml", a, 60, true);
  train("toy2d_meanflow.toml", b, 60, true);
  if (world().rank() == 0) {
    CHECK(file_bytes(a / "checkpoint.safetensors") == file_bytes(b / "checkpoint.safetensors"));
    CHECK(without_timing(file_bytes(a / "metrics.jsonl")) == without_timing(file_bytes(b / "metrics.jsonl")));
    fs::remove_all(a);
    fs::remove_all(b);
  }
  world().barrier();
}

TEST_CASE("a run resumes under another number of ranks", "[mpi]") {
  const fs::path straight = shared_dir("straight"), from_two = shared_dir("from-two"), from_one = shared_dir("from-one");
  train("toy2d_cfm.toml", straight, 100, false);
  // 50 steps on 2 ranks, the rest on 1; and 50 steps on 1, the rest on 2.
  train("toy2d_cfm.toml", from_two, 50, true);
  train("toy2d_cfm.toml", from_two, 100, false, /*resume=*/true);
  train("toy2d_cfm.toml", from_one, 50, false);
  train("toy2d_cfm.toml", from_one, 100, true, /*resume=*/true);
  if (world().rank() == 0) {
    CHECK(losses(from_two).size() == 10);
    CHECK(max_relative_difference(from_two, straight, "model.") <= 1e-4);
    CHECK(max_relative_difference(from_one, straight, "model.") <= 1e-4);
    for (const fs::path& d : {straight, from_two, from_one}) fs::remove_all(d);
  }
  world().barrier();
}

TEST_CASE("samples drawn by 2 ranks and gathered on rank 0 are the one-process draw", "[mpi]") {
  for (const std::string config : {"toy2d_cfm.toml", "toy2d_meanflow.toml"}) {
    INFO(config);
    const FlowRunSpec spec = parse_flow_run_spec(
        load_config(std::string(DUALFLOW_CONFIG_DIR) + "/" + config, run_sets(1), flow_matching_schema()));
    Generator init(spec.run.seed);
    const VelocityModel vm = build_velocity_model(spec, init);
    SampleChoices choices;
    choices.n = 301;  // not a multiple of the ranks
    choices.steps = 10;
    choices.chunk = 64;
    const SampleRequest request = sample_request(spec, vm, choices);
    const DrawnSamples gathered = draw_samples(vm, request, world());
    if (world().rank() == 0) {
      const DrawnSamples alone = draw_samples(vm, request);
      REQUIRE(gathered.x.shape() == alone.x.shape());
      CHECK(gathered.nfe == alone.nfe);
      // The same samples up to the GEMMs' rounding on a different number of rows.
      CHECK(amax(abs(gathered.x - alone.x)).item() <= 1e-5 * amax(abs(alone.x)).item());
    } else {
      CHECK_FALSE(gathered.x.defined());
    }
  }
}

TEST_CASE("a parameter without a gradient on every rank keeps none after the exchange", "[mpi]") {
  Generator gen(4);
  Linear used(3, 2, gen), unused(3, 2, gen);
  NamedTensors params = used.named_parameters();
  for (const auto& p : unused.named_parameters()) params.push_back(p);
  DataParallel sync(ProcessGroup::join(), Device::cpu(), DataParallelOptions{.global_batch = 4});
  mean(square(used.forward(sync.shard().rows(randn({4, 3}, gen))))).backward();
  std::vector<double> scalars = {1.0};
  sync.combine(params, scalars);
  CHECK(scalars.size() == 1);
  CHECK(params[0].second.grad().defined());
  CHECK_FALSE(params[2].second.grad().defined());  // the optimizer skips it, as one process would
}

TEST_CASE("the desync guard stops ranks whose parameters differ, naming the step and the rank", "[mpi]") {
  ProcessGroup& g = world();
  const fs::path dir = shared_dir("desync");
  Generator gen(3);
  Linear model(4, 3, gen);
  const NamedTensors params = model.named_parameters();
  OptimizerOptions adam;
  adam.name = "adam";
  adam.lr = 1e-2;
  std::unique_ptr<Optimizer> opt = make_optimizer(params, adam);
  auto sync = std::make_shared<DataParallel>(ProcessGroup::join(), Device::cpu(),
                                             DataParallelOptions{.global_batch = 8, .sync_check_every = 5});
  LoopSettings ls;
  ls.out_dir = dir.string();
  ls.quiet = true;
  ls.total_steps = 20;
  ls.sync = sync;
  TrainingLoop loop(ls, LoopState{&model, opt.get(), nullptr, {}, params, ""});
  const Tensor x = randn({8, 4}, gen);
  auto compute = [&](int64_t step) {
    if (g.rank() == 1 && step == 3) {
      NoGradGuard no_grad;
      copy_(params[0].second, params[0].second + 1e-3);  // what a silent desync would leave behind
    }
    return StepOutcome{mean(square(model.forward(sync->shard().rows(x)))), {}, {}};
  };
  REQUIRE_THROWS_WITH(loop.run(compute), Contains("step 5") && Contains("rank 1 differ from rank 0"));
  g.barrier();
  if (g.rank() == 0) fs::remove_all(dir);
}

// ---- CUDA ranks (run with --cuda-only where a GPU answers; NCCL carries the gradients when
// each rank has a GPU of its own, the host otherwise) ----

TEST_CASE("CUDA ranks combine gradients into the CPU's weighted sum", "[cuda]") {
  ProcessGroup& g = world();
  const Device dev = rank_device(Device::cuda(), g);
  Generator gen(5);
  Linear model(6, 4, gen);
  model.to(dev);
  const NamedTensors params = model.named_parameters();
  DataParallel sync(ProcessGroup::join(), dev, DataParallelOptions{.global_batch = 10, .sync_check_every = 1});
  const Tensor x = randn({10, 6}, gen);
  mean(square(model.forward(sync.shard().rows(x).to(dev)))).backward();
  std::vector<double> scalars = {double(g.rank() + 1)};
  sync.combine(params, scalars);
  // Every rank's share of the batch on the CPU, weighted and summed here.
  const std::vector<double> w = sync.shard().weights(10);
  Linear cpu(6, 4, gen);
  double expected_scalar = 0;
  std::vector<Tensor> expected(params.size());
  for (int r = 0; r < g.size(); ++r) {
    expected_scalar += w[size_t(r)] * double(r + 1);
    cpu.load_state_dict(model.state_dict());
    cpu.to(Device::cpu());
    cpu.zero_grad();
    mean(square(cpu.forward(make_batch_shard(r, g.size(), 10).rows(x)))).backward();
    const NamedTensors cp = cpu.named_parameters();
    for (size_t i = 0; i < cp.size(); ++i) {
      Tensor part = cp[i].second.grad() * w[size_t(r)];
      expected[i] = expected[i].defined() ? expected[i] + part : part;
    }
  }
  CHECK(scalars[0] == Approx(expected_scalar).epsilon(1e-6));
  for (size_t i = 0; i < params.size(); ++i)
    CHECK(amax(abs(params[i].second.grad().to(Device::cpu()) - expected[i])).item() <=
          1e-5 * amax(abs(expected[i])).item());
  sync.check_in_sync(params, 1);  // the same weights on every GPU
  SUCCEED(sync.transport());
}

TEST_CASE("2 CUDA ranks train what 1 CUDA process trains (toy2d CFM, 50 steps)", "[cuda]") {
  const fs::path one = shared_dir("cuda-one"), two = shared_dir("cuda-two");
  train("toy2d_cfm.toml", one, 50, false, false, {"run.device=cuda", "optim.name=sgd", "optim.lr=0.05"});
  train("toy2d_cfm.toml", two, 50, true, false, {"run.device=cuda", "optim.name=sgd", "optim.lr=0.05"});
  if (world().rank() == 0) {
    const std::vector<double> a = losses(one), b = losses(two);
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) CHECK(b[i] == Approx(a[i]).epsilon(1e-5));
    CHECK(max_relative_difference(two, one, "model.") <= 1e-5);
    fs::remove_all(one);
    fs::remove_all(two);
  }
  world().barrier();
}

}  // namespace
}  // namespace dualflow::testing
