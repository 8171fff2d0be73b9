// The training run behind `dualflow train`: its output files, resume that is bit-identical to
// an uninterrupted run, a stop on a non-finite loss that keeps the last good checkpoint, and
// loading a checkpoint for sampling.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "engine/safetensors.h"
#include "tests/engine/test_util.h"
#include "train/data2d.h"
#include "train/flow_run.h"
#include "train/meanflow.h"
#include "train/memory_check.h"
#include "train/metrics_log.h"
#include "train/npy.h"
#include "train/sampling.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;

RunConfig small_run(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> sets = {"model.width=32",
                                   "model.depth=2",
                                   "train.batch=64",
                                   "train.log_every=5",
                                   "train.checkpoint_every=10",
                                   "sample.n=200",
                                   "sample.steps=10",
                                   "method.coupling=\"exact_ot\""};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return parse_config_text("", "<test>", sets, flow_matching_schema());
}

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / fmt::format("dualflow-run-{}-{}", name, ::getpid());
  fs::remove_all(d);
  return d;
}

std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(f, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST_CASE("train run: outputs, and resume equals an uninterrupted run bit for bit", "[flow_run]") {
  fs::path straight = fresh_dir("straight"), resumed = fresh_dir("resumed");
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = straight.string();
  TrainRunResult full = train_flow_matching(small_run({"train.steps=30"}), o);
  REQUIRE(full.steps_done == 30);
  REQUIRE(fs::exists(straight / "checkpoint.safetensors"));
  REQUIRE(fs::exists(straight / "samples.png"));
  std::vector<std::string> m = lines_of(straight / "metrics.jsonl");
  REQUIRE(m.size() == 6);
  REQUIRE(m.back().find("\"step\":30,") != std::string::npos);
  REQUIRE(m.back().find("\"it_per_s\"") != std::string::npos);

  o.out_dir = resumed.string();
  train_flow_matching(small_run({"train.steps=20"}), o);
  {
    // As if the run had gone on past its checkpoint at step 20 and been killed mid-line.
    std::ofstream f(resumed / "metrics.jsonl", std::ios::app);
    f << R"({"step":25,"loss":123,"lr":0.001,"grad_norm":1,"it_per_s":1})"
      << "\n"
      << R"({"step":30,"lo)";
  }
  o.resume = true;
  TrainRunResult rest = train_flow_matching(small_run({"train.steps=30"}), o);
  REQUIRE(rest.steps_done == 30);
  REQUIRE(rest.last_loss == full.last_loss);
  // The log reads as the uninterrupted run's (timings aside), with the resume marked.
  std::vector<std::string> mr = lines_of(resumed / "metrics.jsonl");
  REQUIRE(mr.size() == m.size() + 1);
  REQUIRE(mr[4] == R"({"step":20,"event":"resume"})");
  mr.erase(mr.begin() + 4);
  auto without_timing = [](std::string line) { return line.substr(0, line.find(",\"it_per_s\"")); };
  for (size_t i = 0; i < m.size(); ++i) REQUIRE(without_timing(mr[i]) == without_timing(m[i]));
  SafetensorsContent a = load_safetensors((straight / "checkpoint.safetensors").string());
  SafetensorsContent b = load_safetensors((resumed / "checkpoint.safetensors").string());
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    INFO(a.tensors[i].first);
    REQUIRE(a.tensors[i].first == b.tensors[i].first);
    REQUIRE(max_abs_diff(a.tensors[i].second, b.tensors[i].second) == 0.0);
  }
  // The checkpoint rebuilds the model for sampling, with its recorded config.
  LoadedModel lm = load_model_from_checkpoint((straight / "checkpoint.safetensors").string());
  REQUIRE(lm.step == 30);
  REQUIRE(lm.spec.config.get_int("model.width") == 32);
  Generator g(3);
  Tensor v = lm.model.net(randn({4, 2}, g), rand({4}, g), Tensor(), Tensor());
  REQUIRE(v.shape() == Shape{4, 2});
  fs::remove_all(straight);
  fs::remove_all(resumed);
}

TEST_CASE("metrics log: a resume keeps earlier steps and every event, drops later steps and torn lines", "[flow_run]") {
  const std::string text = R"({"step":5,"loss":1}
{"step":10,"loss":0.5}
{"step":11,"event":"non_finite","loss":"nan"}
{"step":15,"loss":0.4}
not json
{"step":20,"loss":0.3}
{"step":25,"lo)";
  REQUIRE(metrics_kept_on_resume(text, 10) == R"({"step":5,"loss":1}
{"step":10,"loss":0.5}
{"step":11,"event":"non_finite","loss":"nan"}
)");
  REQUIRE(metrics_kept_on_resume(text, 100).find("not json") == std::string::npos);
  REQUIRE(metrics_kept_on_resume("", 3).empty());
}

TEST_CASE("train run: MeanFlow trains with its diagnostics, resumes bit for bit and loads in both time conventions",
          "[flow_run]") {
  auto meanflow_run = [](int steps) {
    return small_run({"method.name=\"meanflow\"", "method.coupling=\"independent\"", "model.time_scale=10",
                      "meanflow.adaptive_p=0.5", fmt::format("train.steps={}", steps)});
  };
  fs::path straight = fresh_dir("mf-straight"), resumed = fresh_dir("mf-resumed");
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = straight.string();
  TrainRunResult full = train_flow_matching(meanflow_run(30), o);
  REQUIRE(fs::exists(straight / "samples.png"));
  std::vector<std::string> m = lines_of(straight / "metrics.jsonl");
  REQUIRE(m.size() == 6);
  REQUIRE(m.back().find("\"mse\":") != std::string::npos);
  REQUIRE(m.back().find("\"velocity_error\":") != std::string::npos);

  o.out_dir = resumed.string();
  train_flow_matching(meanflow_run(20), o);
  o.resume = true;
  TrainRunResult rest = train_flow_matching(meanflow_run(30), o);
  REQUIRE(rest.last_loss == full.last_loss);
  SafetensorsContent a = load_safetensors((straight / "checkpoint.safetensors").string());
  SafetensorsContent b = load_safetensors((resumed / "checkpoint.safetensors").string());
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    INFO(a.tensors[i].first);
    REQUIRE(a.tensors[i].first == b.tensors[i].first);
    REQUIRE(max_abs_diff(a.tensors[i].second, b.tensors[i].second) == 0.0);
  }

  LoadedModel lm = load_model_from_checkpoint((straight / "checkpoint.safetensors").string());
  REQUIRE(lm.model.method->samplers().front() == "meanflow");
  Generator g(3);
  Tensor x = randn({5, 2}, g), tau = rand({5}, g);
  // The ODE velocity in flow-matching time tau is -u(x, t = 1 - tau, h = 0).
  Tensor u = lm.model.network(x, 1.0 - tau, zeros({5}), Tensor());
  REQUIRE(max_abs_diff(lm.model.net(x, tau, Tensor(), Tensor()), -u) == 0.0);
  REQUIRE_THROWS_WITH(lm.model.net(x, tau, zeros({5}), Tensor()), Catch::Contains("no interval h"));
  // One Euler step of that ODE from tau = 0 and one MeanFlow step at h = 0 would agree; the
  // MeanFlow step uses h = 1 instead, so the two samplers differ.
  OdeOptions euler;
  euler.method = OdeMethod::Euler;
  euler.steps = 1;
  Tensor noise = randn({6, 2}, g);
  Tensor ode = sample_flow(lm.model.net, noise, euler).x;
  REQUIRE(max_abs_diff(ode, noise - lm.model.network(noise, ones({6}), zeros({6}), Tensor())) < 1e-6);
  MeanFlowSample one = meanflow_sample(lm.model.network, noise, 1);
  REQUIRE(one.nfe == 1);
  REQUIRE(max_abs_diff(one.x, ode) > 1e-4);
  fs::remove_all(straight);
  fs::remove_all(resumed);
}

TEST_CASE("train run: a non-finite loss stops with the step named and keeps the last checkpoint", "[flow_run]") {
  fs::path dir = fresh_dir("nonfinite");
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = dir.string();
  train_flow_matching(small_run({"train.steps=10"}), o);
  const auto before = fs::last_write_time(dir / "checkpoint.safetensors");
  std::string ckpt_bytes_before;
  {
    std::ifstream f(dir / "checkpoint.safetensors", std::ios::binary);
    ckpt_bytes_before.assign(std::istreambuf_iterator<char>(f), {});
  }
  // A learning rate this large sends the weights to infinity within a few steps.
  o.resume = true;
  REQUIRE_THROWS_WITH(
      train_flow_matching(small_run({"train.steps=200", "optim.lr=1e30"}), o),
      Catch::Contains("train: step") && Catch::Contains("training stopped") && Catch::Contains("last good checkpoint"));
  std::string after;
  {
    std::ifstream f(dir / "checkpoint.safetensors", std::ios::binary);
    after.assign(std::istreambuf_iterator<char>(f), {});
  }
  REQUIRE(after == ckpt_bytes_before);
  (void)before;
  std::vector<std::string> m = lines_of(dir / "metrics.jsonl");
  REQUIRE(m.back().find("\"event\":\"non_finite\"") != std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("train run: score matching, CNF-MLE and reflow runs train, save and sample", "[flow_run]") {
  TrainRunOptions o;
  o.quiet = true;
  fs::path score = fresh_dir("score"), mle = fresh_dir("mle"), reflow = fresh_dir("reflow");
  o.out_dir = score.string();
  train_flow_matching(small_run({"train.steps=8", "method.name=\"score\"", "method.path=\"vp\"",
                                 "method.coupling=\"independent\"", "method.t_max=0.999"}),
                      o);
  LoadedModel sm = load_model_from_checkpoint((score / "checkpoint.safetensors").string());
  REQUIRE(sm.model.t_end == 0.999);
  Generator g(3);
  Tensor x = randn({4, 2}, g), t = rand({4}, g);
  // The sampled field is the probability-flow velocity, not the raw noise prediction.
  REQUIRE(max_abs_diff(sm.model.net(x, t, Tensor(), Tensor()), sm.model.network(x, t, Tensor(), Tensor())) > 1e-3);

  o.out_dir = mle.string();
  TrainRunResult r = train_flow_matching(
      small_run({"train.steps=4", "method.name=\"cnf_mle\"", "cnf.solver=\"euler\"", "cnf.steps=3"}), o);
  REQUIRE(std::isfinite(r.last_loss));
  REQUIRE(fs::exists(mle / "samples.png"));

  // Reflow from the CNF-MLE run: starts from its weights.
  o.out_dir = reflow.string();
  const std::string teacher = (mle / "checkpoint.safetensors").string();
  RunConfig rc = small_run({"train.steps=3", "method.name=\"reflow\"", "method.coupling=\"independent\"",
                            "reflow.pairs=100", "reflow.steps=4", "reflow.teacher=\"" + teacher + "\""});
  train_flow_matching(rc, o);
  REQUIRE(fs::exists(reflow / "checkpoint.safetensors"));
  RunConfig wrong = small_run({"train.steps=3", "method.name=\"reflow\"", "method.coupling=\"independent\"",
                               "model.width=16", "reflow.pairs=10", "reflow.teacher=\"" + teacher + "\""});
  REQUIRE_THROWS_WITH(train_flow_matching(wrong, o), Catch::Contains("init_from_teacher"));
  for (const auto& d : {score, mle, reflow}) fs::remove_all(d);
}

TEST_CASE("train run: unsupported settings and a missing checkpoint are clear errors", "[flow_run]") {
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = fresh_dir("errors").string();
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({"method.name=\"meanflow\""}), o),
                      Catch::Contains("method.coupling") && Catch::Contains("independent"));
  const std::string meanflow_independent[] = {"method.name=\"meanflow\"", "method.coupling=\"independent\""};
  auto meanflow_run = [&](const std::string& extra) {
    return small_run({meanflow_independent[0], meanflow_independent[1], extra});
  };
  REQUIRE_THROWS_WITH(train_flow_matching(meanflow_run("meanflow.guidance_omega=2.0"), o),
                      Catch::Contains("guidance") && Catch::Contains("class labels"));
  REQUIRE_THROWS_WITH(train_flow_matching(meanflow_run("method.path=\"vp\""), o), Catch::Contains("method.path"));
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({meanflow_independent[0], meanflow_independent[1],
                                                     "meanflow.guidance_t_min=0.9", "meanflow.guidance_t_max=0.5"}),
                                          o),
                      Catch::Contains("guidance interval"));
  REQUIRE_THROWS_WITH(
      train_flow_matching(small_run({"data.name=\"fashion_mnist\""}), o),
      Catch::Contains("image data (fashion_mnist) trains \"unet\" (a U-Net") && Catch::Contains("\"dit\""));
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({"model.kind=\"unet\""}), o), Catch::Contains("MLP"));
  const std::string images = "data.name=\"fashion_mnist\"", unet = "model.kind=\"unet\"";
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({images, unet, "model.classes=5"}), o),
                      Catch::Contains("10 classes") && Catch::Contains("model.classes = 5"));
  REQUIRE_THROWS_WITH(
      train_flow_matching(small_run({images, unet, "model.classes=10", "method.coupling=\"sinkhorn\""}), o),
      Catch::Contains("exact_ot") && Catch::Contains("sinkhorn"));
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({images, unet, "model.classes=10", "method.name=\"cnf_mle\""}), o),
                      Catch::Contains("unconditional"));
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({images, "model.kind=\"dit\"", "model.dit_preset=\"S/8\""}), o),
                      Catch::Contains("patch size 8") && Catch::Contains("28x28"));
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({images, unet, "data.path=\"/nonexistent/fmnist\""}), o),
                      Catch::Contains("/nonexistent/fmnist"));
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({"run.device=\"cuda:7\""}), o), Catch::Contains("cuda"));
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({"method.name=\"score\"", "method.coupling=\"independent\""}), o),
                      Catch::Contains("alpha_t") && Catch::Contains("vp"));
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({"method.name=\"score\"", "method.path=\"vp\""}), o),
                      Catch::Contains("method.coupling"));
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({"method.path=\"vp\"", "method.t_max=1.0"}), o),
                      Catch::Contains("method.t_max"));
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({"method.name=\"reflow\"", "method.coupling=\"independent\""}), o),
                      Catch::Contains("reflow.teacher"));
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({"method.name=\"reflow\"", "method.coupling=\"independent\"",
                                                     "reflow.teacher=\"/nonexistent/ckpt.safetensors\""}),
                                          o),
                      Catch::Contains("/nonexistent/ckpt.safetensors"));
  o.resume = true;
  REQUIRE_THROWS_WITH(train_flow_matching(small_run(), o), Catch::Contains("no checkpoint at"));
  fs::remove_all(o.out_dir);
}


TEST_CASE("image run: a tiny class-conditional DiT MeanFlow run resumes bit for bit and loads with its buffers",
          "[flow_run]") {
  // Epoch-shuffled image batches are a function of the step, so resuming mid-epoch sees the
  // same batches; the DiT's positional embedding is a buffer, which the EMA weights do not hold.
  auto run = [](int64_t steps) {
    return small_run({"data.name=\"fashion_mnist\"", "data.limit=96", "data.hflip=true", "model.kind=\"dit\"",
                      "model.classes=10", "model.dit_hidden=32", "model.dit_depth=1", "model.dit_heads=2",
                      "model.time_scale=10.0", "method.name=\"meanflow\"", "method.coupling=\"independent\"",
                      "meanflow.guidance_omega=1.5", "train.batch=32", "train.checkpoint_every=0",
                      fmt::format("train.steps={}", steps)});
  };
  fs::path straight = fresh_dir("dit-straight"), resumed = fresh_dir("dit-resumed");
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = straight.string();
  TrainRunResult full = train_flow_matching(run(6), o);
  o.out_dir = resumed.string();
  train_flow_matching(run(4), o);  // steps 0-3 cover one epoch of 96 images and a third of the next
  o.resume = true;
  TrainRunResult rest = train_flow_matching(run(6), o);
  REQUIRE(rest.last_loss == full.last_loss);
  SafetensorsContent a = load_safetensors((straight / "checkpoint.safetensors").string());
  SafetensorsContent b = load_safetensors((resumed / "checkpoint.safetensors").string());
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    INFO(a.tensors[i].first);
    REQUIRE(max_abs_diff(a.tensors[i].second, b.tensors[i].second) == 0.0);
  }
  LoadedModel lm = load_model_from_checkpoint((straight / "checkpoint.safetensors").string());
  REQUIRE(lm.model.num_classes == 10);
  REQUIRE(lm.model.sample_shape == Shape({1, 28, 28}));
  SampleRequest r;
  r.n = 12;
  r.sampler = "meanflow";
  r.steps = 2;
  DrawnSamples s = draw_samples(lm.model, r);
  REQUIRE(s.x.shape() == Shape({12, 1, 28, 28}));
  REQUIRE(s.nfe == 2);
  REQUIRE(s.labels.to_vector<int64_t>() == std::vector<int64_t>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1});
  REQUIRE(std::isfinite(amax(abs(s.x)).to(DType::f64).item()));
  REQUIRE(fs::exists(straight / "samples.png"));
  fs::remove_all(straight);
  fs::remove_all(resumed);
}

TEST_CASE("train run on CUDA: resume equals an uninterrupted run bit for bit", "[cuda]") {
  // The CUDA kernels are deterministic (no atomics in sums; index_add, an embedding's gradient,
  // sums in the CPU's order), and cuBLAS repeats its results on one GPU with one stream, so the
  // CPU's bitwise guarantee should hold on CUDA too: a 2-D CFM run with the exact OT coupling,
  // and a class-conditional DiT MeanFlow run on images (label embedding, JVP, guidance).
  REQUIRE(cuda_available());
  auto compare = [](const std::vector<std::string>& sets, int64_t steps, int64_t stop) {
    auto run = [&](int64_t n) {
      std::vector<std::string> all = sets;
      all.push_back("run.device=\"cuda\"");
      all.push_back(fmt::format("train.steps={}", n));
      return small_run(all);
    };
    fs::path straight = fresh_dir("cuda-straight"), resumed = fresh_dir("cuda-resumed");
    TrainRunOptions o;
    o.quiet = true;
    o.out_dir = straight.string();
    TrainRunResult full = train_flow_matching(run(steps), o);
    o.out_dir = resumed.string();
    train_flow_matching(run(stop), o);
    o.resume = true;
    TrainRunResult rest = train_flow_matching(run(steps), o);
    REQUIRE(rest.steps_done == steps);
    REQUIRE(rest.last_loss == full.last_loss);
    SafetensorsContent a = load_safetensors((straight / "checkpoint.safetensors").string());
    SafetensorsContent b = load_safetensors((resumed / "checkpoint.safetensors").string());
    REQUIRE(a.tensors.size() == b.tensors.size());
    for (size_t i = 0; i < a.tensors.size(); ++i) {
      INFO(a.tensors[i].first);
      REQUIRE(max_abs_diff(a.tensors[i].second, b.tensors[i].second) == 0.0);
    }
    fs::remove_all(straight);
    fs::remove_all(resumed);
  };
  SECTION("2-D CFM, exact OT coupling") { compare({}, 30, 20); }
  SECTION("class-conditional DiT MeanFlow on images") {
    compare({"data.name=\"fashion_mnist\"", "data.limit=96", "data.hflip=true", "model.kind=\"dit\"",
             "model.classes=10", "model.dit_hidden=32", "model.dit_depth=1", "model.dit_heads=2",
             "model.time_scale=10.0", "method.name=\"meanflow\"", "method.coupling=\"independent\"",
             "meanflow.guidance_omega=1.5", "train.batch=32", "train.checkpoint_every=0"},
            6, 4);
  }
}

TEST_CASE("run spec: optim.beta1 is SGD's momentum in flow runs, as the schema says", "[flow_run]") {
  FlowRunSpec spec = parse_flow_run_spec(small_run({"optim.name=\"sgd\"", "optim.beta1=0.8"}));
  REQUIRE(spec.optim.optimizer.name == "sgd");
  REQUIRE(spec.optim.optimizer.momentum == 0.8);
  FlowRunSpec adam = parse_flow_run_spec(small_run({"optim.beta1=0.8"}));
  REQUIRE(adam.optim.optimizer.beta1 == 0.8);
  REQUIRE(adam.optim.optimizer.momentum == 0.0);
  // The run keeps a momentum buffer per parameter in its checkpoint.
  fs::path dir = fresh_dir("sgd");
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = dir.string();
  train_flow_matching(small_run({"optim.name=\"sgd\"", "optim.beta1=0.8", "train.steps=3"}), o);
  SafetensorsContent c = load_safetensors((dir / "checkpoint.safetensors").string());
  int buffers = 0;
  for (const auto& [name, t] : c.tensors) buffers += name.find("momentum") != std::string::npos;
  REQUIRE(buffers > 0);
  fs::remove_all(dir);
}


TEST_CASE("run spec: method.path = curved2d trains CFM on the notes' curved 2-D path, and only that",
          "[flow_run]") {
  using Catch::Matchers::Contains;
  const FlowRunSpec spec = parse_flow_run_spec(
      small_run({"method.path=\"curved2d\"", "method.curve_amplitude=0.5", "method.coupling=\"independent\""}));
  REQUIRE(spec.path.curved());
  REQUIRE(spec.path.curve_amplitude == 0.5);
  REQUIRE(spec.path.flow_path()->name() == "curved2d");
  REQUIRE_THROWS_WITH(spec.path.affine_path(), Contains("not an affine path"));
  // Its targets are CurvedPath2D's: at t = 1/2 the point sits amplitude / 4 off the chord.
  const Tensor x0 = from_vector(std::vector<float>{0, 0}, {1, 2}), x1 = from_vector(std::vector<float>{2, 0}, {1, 2});
  const PathSample ps = spec.path.flow_path()->sample(x0, x1, full({1}, 0.5));
  CHECK(ps.x_t.to_vector<float>() == std::vector<float>{1.0f, 0.125f});
  REQUIRE_THROWS_WITH(parse_flow_run_spec(small_run({"method.path=\"curved2d\"", "method.name=\"score\"",
                                                     "method.coupling=\"independent\""})),
                      Contains("set method.name = \"cfm\""));
  REQUIRE_THROWS_WITH(parse_flow_run_spec(small_run({"method.path=\"curved2d\"", "method.coupling=\"sb\""})),
                      Contains("brings its own bridge path"));
  REQUIRE_THROWS_WITH(
      parse_flow_run_spec(small_run({"method.path=\"curved2d\"", "data.name=\"fashion_mnist\"", "model.kind=\"unet\""})),
      Contains("needs 2-D data"));
  // A short run trains and samples through the loop.
  fs::path dir = fresh_dir("curved");
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = dir.string();
  const TrainRunResult r = train_flow_matching(
      small_run({"method.path=\"curved2d\"", "method.coupling=\"independent\"", "train.steps=5"}), o);
  CHECK(r.steps_done == 5);
  CHECK(std::isfinite(r.last_loss));
  fs::remove_all(dir);
}


TEST_CASE("streamed sampling: pieces written to the .npy equal the whole draw; the first rows come back",
          "[flow_run]") {
  const fs::path dir = fresh_dir("stream");
  fs::create_directories(dir);
  auto check = [&](const FlowRunSpec& spec, const std::string& solver, int64_t n, int64_t piece, int64_t keep) {
    Generator init(5);
    VelocityModel vm = build_velocity_model(spec, init);
    vm.module->eval();
    SampleChoices c;
    c.n = n;
    c.seed = 9;
    c.solver = solver;
    c.steps = 6;
    if (!solver.empty()) c.sampler = kOdeSampler;
    const SampleRequest request = sample_request(spec, vm, c);
    const DrawnSamples whole = draw_samples(vm, request);
    const std::string path = (dir / "x.npy").string();
    std::vector<int64_t> seen;
    const DrawnSamples first =
        draw_samples_to_npy(vm, request, piece, path, keep, [&](int64_t done, int64_t) { seen.push_back(done); });
    // The progress callback after every piece, ending at n.
    REQUIRE(int64_t(seen.size()) == (n + piece - 1) / piece);
    REQUIRE(seen.back() == n);
    // The file: the whole draw's header, and its values (rows computed in other batch sizes:
    // equal to GEMM rounding).
    std::ifstream f(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), {});
    const std::string expected = npy_f32_bytes(whole.x);
    REQUIRE(bytes.size() == expected.size());
    const size_t header = npy_f32_header(whole.x.shape()).size();
    REQUIRE(bytes.compare(0, header, expected, 0, header) == 0);
    std::vector<float> got(size_t(whole.x.numel())), want(got.size());
    std::memcpy(got.data(), bytes.data() + header, got.size() * 4);
    std::memcpy(want.data(), expected.data() + header, want.size() * 4);
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, double(std::abs(got[i] - want[i])));
    INFO("largest difference " << worst);
    REQUIRE(worst <= 1e-5);
    REQUIRE(first.x.shape()[0] == keep);
    REQUIRE(first.nfe == whole.nfe);
    REQUIRE(first.how == whole.how);
    REQUIRE(max_abs_diff(first.x, whole.x.narrow(0, 0, keep)) <= 1e-5);
  };
  SECTION("2-D points, Euler, pieces of 300 of 1000") {
    check(parse_flow_run_spec(small_run()), "euler", 1000, 300, 400);
  }
  SECTION("images of a class-conditional U-Net, MeanFlow's own sampler, pieces of 4 of 10") {
    check(parse_flow_run_spec(small_run({"data.name=\"fashion_mnist\"", "data.limit=16", "model.kind=\"dit\"",
                                         "model.classes=10", "model.dit_hidden=32", "model.dit_depth=1",
                                         "model.dit_heads=2", "method.name=\"meanflow\"",
                                         "method.coupling=\"independent\""})),
          "", 10, 4, 7);
  }
  fs::remove_all(dir);
}

TEST_CASE("memory checks: a batch measured per sample, refused up front with the bytes it needs", "[flow_run]") {
  const FlowRunSpec spec = parse_flow_run_spec(small_run());
  Generator init(5);
  VelocityModel vm = build_velocity_model(spec, init);
  const NamedTensors before = vm.module->state_dict();
  const int64_t forward = network_bytes_per_sample(vm, false), both = network_bytes_per_sample(vm, true);
  // Width 32, depth 2: a few hidden rows of 32 floats a sample; backward keeps more than forward.
  REQUIRE(forward >= 32 * 4);
  REQUIRE(both > forward);
  REQUIRE(both < 64 * 1024);
  // Nothing of the model changed: weights, mode, gradients.
  REQUIRE(vm.module->is_training());
  for (const auto& [name, p] : vm.module->named_parameters()) REQUIRE_FALSE(p.grad().defined());
  for (const auto& [name, t] : before) REQUIRE(max_abs_diff(vm.module->find(name), t) == 0);
  REQUIRE(available_memory_bytes(Device::cpu()) > 0);
  REQUIRE(format_bytes(1.5 * (1 << 30)) == "1.5 GiB");
  REQUIRE(format_bytes(2048) == "2.0 KiB");
  REQUIRE_THROWS_WITH(check_memory_fits("train.batch = 1e15", int64_t(1) << 62, "a test", Device::cpu()),
                      Catch::Contains("train.batch = 1e15 needs about") && Catch::Contains("GiB available"));
  REQUIRE_NOTHROW(check_memory_fits("train.batch = 1", 1024, "a test", Device::cpu()));
  // Through the run: refused before anything is written.
  const fs::path out = fresh_dir("too-big");
  TrainRunOptions o;
  o.out_dir = out.string();
  o.quiet = true;
  REQUIRE_THROWS_WITH(train_flow_matching(small_run({"train.batch=100000000000"}), o),
                      Catch::Contains("train.batch = 100000000000 needs about") &&
                          Catch::Contains("a sample for the network's forward and backward pass"));
  REQUIRE_FALSE(fs::exists(out / "checkpoint.safetensors"));
  fs::remove_all(out);
}


TEST_CASE("sample trajectories: ODE paths from the draw's noise to its samples; MeanFlow jumps are straight",
          "[flow_run]") {
  const FlowRunSpec spec = parse_flow_run_spec(small_run());
  Generator init(5);
  VelocityModel vm = build_velocity_model(spec, init);
  vm.module->eval();
  SampleChoices c;
  c.n = 50;
  c.seed = 4;
  c.solver = "euler";
  c.steps = 8;
  const SampleRequest request = sample_request(spec, vm, c);
  const SampleTrajectories t = sample_trajectories(vm, request, 6, 9);
  REQUIRE(t.paths.shape() == Shape{6, 9, 2});
  // Starts at the noise the draw gives its first samples, ends at those samples.
  Generator noise_gen(4);
  const Tensor noise = randn(Shape{50, 2}, noise_gen).narrow(0, 0, 6);
  REQUIRE(max_abs_diff(t.paths.select(1, 0), noise) == 0);
  REQUIRE(max_abs_diff(t.paths.select(1, 8), draw_samples(vm, request).x.narrow(0, 0, 6)) <= 1e-5);
  REQUIRE(t.chord_msd > 0);  // an untrained network's paths bend
  REQUIRE_THAT(t.how, Catch::Contains("paths through the ODE (euler, 8 steps)"));
  // MeanFlow's own sampler: the line from noise to sample.
  const FlowRunSpec mf = parse_flow_run_spec(small_run({"method.name=\"meanflow\"", "method.coupling=\"independent\""}));
  VelocityModel mvm = build_velocity_model(mf, init);
  SampleChoices one;
  one.n = 20;
  const SampleRequest jumps = sample_request(mf, mvm, one);
  const SampleTrajectories j = sample_trajectories(mvm, jumps, 3);
  REQUIRE(j.chord_msd < 1e-10);
  REQUIRE_THAT(j.how, Catch::Contains("noise to sample (MeanFlow, 1 step)"));
  REQUIRE_THROWS_WITH(sample_trajectories(vm, request, 51), Catch::Contains("k must be 1 to the 50 samples drawn"));
}


TEST_CASE("data.source: a data-to-data flow trains from the source set's points and samples from fresh ones",
          "[flow_run]") {
  const FlowRunSpec spec = parse_flow_run_spec(small_run({"data.name=\"moons\"", "data.source=\"8gaussians\""}));
  REQUIRE(spec.data.source == "8gaussians");
  // Training: a short exact-OT run saves, loads and keeps its source.
  const fs::path out = fresh_dir("source");
  TrainRunOptions o;
  o.out_dir = out.string();
  o.quiet = true;
  train_flow_matching(small_run({"data.name=\"moons\"", "data.source=\"8gaussians\"", "train.steps=10"}), o);
  const LoadedModel lm = load_model_from_checkpoint((out / "checkpoint.safetensors").string());
  REQUIRE(lm.model.source == "8gaussians");
  // Samples start at the source's points (each piece its own rows of one draw), and the
  // trajectories start where the samples do.
  Generator gen(3);
  const Tensor want = sample_2d("8gaussians", 12, gen, DType::f32);
  REQUIRE(max_abs_diff(source_points(lm.model, 3, 0, 12), want) == 0);
  REQUIRE(max_abs_diff(source_points(lm.model, 3, 5, 12), want.narrow(0, 5, 7)) == 0);
  SampleChoices c;
  c.n = 12;
  c.seed = 3;
  c.solver = "euler";
  c.steps = 4;
  const SampleRequest request = sample_request(lm.spec, lm.model, c);
  const SampleTrajectories t = sample_trajectories(lm.model, request, 12, 5);
  REQUIRE(max_abs_diff(t.paths.select(1, 0), want) == 0);
  REQUIRE(max_abs_diff(t.paths.select(1, 4), draw_samples(lm.model, request).x) <= 1e-5);
  fs::remove_all(out);
  // Where it does not apply, the reason.
  REQUIRE_THROWS_WITH(
      parse_flow_run_spec(small_run({"data.name=\"fashion_mnist\"", "model.kind=\"unet\"", "data.source=\"moons\""})),
      Catch::Contains("data.source = \"moons\" flows between 2-D sets; data.name = \"fashion_mnist\" is an image set"));
  REQUIRE_THROWS_WITH(parse_flow_run_spec(small_run({"data.source=\"moons\"", "method.name=\"meanflow\"",
                                                     "method.coupling=\"independent\""})),
                      Catch::Contains("trained by conditional flow matching; set method.name = \"cfm\""));
  REQUIRE_THROWS_WITH(parse_flow_run_spec(small_run({"data.source=\"moons\"", "method.path=\"vp\""})),
                      Catch::Contains("the vp path starts from its own noise"));
  REQUIRE_THROWS_WITH(parse_flow_run_spec(small_run({"data.source=\"swissroll\""})), Catch::Contains("data.source"));
}

}  // namespace dualflow::testing
