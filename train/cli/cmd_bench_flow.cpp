// `dualflow bench toy2d-cfm | toy2d-meanflow | toy2d-euler | toy2d-dopri5 | toy2d-nll-exact`: the 2-D flow
// workloads of docs/BENCHMARKS.md ("toy2d network") on MLPVelocity, and `dualflow bench
// fmnist-unet-cfm | fmnist-dit-meanflow`: its image workloads (28x28x1, batch 64, AdamW lr 1e-4)
// on the U-Net and DiT-S/4. Each step runs through the library code that `dualflow train`,
// `sample` and `nll` run (cfm_loss over a CondOT AffinePath and meanflow_training_loss, each with
// an optimizer from make_optimizer; sample_flow through odeint; cnf_log_likelihood with the exact
// divergence), so the figures measure what a user gets. tools/bench_torch.py times the same
// workloads in PyTorch for the side-by-side ratio (tools/bench_toy2d.sh and
// tools/bench_fmnist.sh run both).
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>

#include "engine/gemm_recorder.h"
#include "engine/threads.h"
#include "models/models.h"
#include "train/cfm.h"
#include "train/cli/bench_timing.h"
#include "train/cli/commands.h"
#include "train/cli/json_lines_file.h"
#include "train/data2d.h"
#include "train/likelihood.h"
#include "train/meanflow.h"
#include "train/optim.h"
#include "train/paths.h"
#include "train/solvers.h"

namespace dualflow::cli {
namespace {

struct FlowBenchOptions {
  std::string device = "cpu";
  int threads = 0;
  std::string json;
  int steps = 20;
  int warmup = 3;
  bool params = false;       // list the network's parameters and exit
  bool gemm_shapes = false;  // print the roofline's per-shape table
  bool roofline = true;      // false: skip the GEMM roofline (profiles of the steps alone)
};

// The GEMM roofline of a step: its GEMMs (recorded during one step) timed one shape at a time,
// alone. Their sum is the least time the step could take with this GEMM and everything else free;
// `fraction` = that time / the step's median time. On a shared machine the steps and the GEMMs
// timed minutes apart can meet different loads, so `paired_fraction` is also measured: rounds of
// one step and then all its GEMMs alone, each round's ratio taken, their median reported.
struct GemmRoofline {
  int64_t calls = 0;
  size_t shapes = 0;
  int rounds = 0;
  double gflop = 0, alone_ms = 0, fraction = 0, paired_fraction = 0;
};

GemmRoofline measure_gemm_roofline(const std::function<void()>& step, const Device& dev, double step_ms,
                                   bool print_shapes) {
  std::map<GemmShape, int64_t> counts;
  {
    GemmRecorder recorder;
    step();
    synchronize(dev);
    counts = recorder.counts();
  }
  GemmRoofline r;
  r.shapes = counts.size();
  struct Row {
    GemmShape shape;
    int64_t count;
    double ms;
    std::function<void()> run;  // the shape on fresh operands (gemm_runner)
  };
  std::vector<Row> rows;
  for (const auto& [shape, count] : counts) {
    std::function<void()> run = gemm_runner(shape);
    const double t0 = now_ms();
    run();
    synchronize(dev);
    const double once = std::max(now_ms() - t0, 1e-3);
    const int inner = int(std::clamp(2.0 / once, 1.0, 1000.0));  // samples of about 2 ms
    const double ms = median_ms(run, dev, 5, inner, 1);
    rows.push_back({shape, count, ms, run});
    r.calls += count;
    r.gflop += shape.flops() * double(count) / 1e9;
    r.alone_ms += ms * double(count);
  }
  r.fraction = step_ms > 0 ? r.alone_ms / step_ms : 0.0;
  // Paired rounds, about 2 s of timed work (at least 3 for a median, at most 25). A short step's
  // halves are timed warm, as the unpaired figures are: a step after an untimed step (the GEMMs
  // alone evict its data), and each shape's calls after one untimed call.
  r.rounds = int(std::clamp(2000.0 / std::max(step_ms + r.alone_ms, 1e-3), 3.0, 25.0));
  const bool warm = step_ms < 50.0;
  std::vector<double> ratios;
  for (int round = 0; round < r.rounds; ++round) {
    if (warm) step();
    synchronize(dev);
    double t0 = now_ms();
    step();
    synchronize(dev);
    const double step_once = now_ms() - t0;
    double gemms = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (warm) rows[i].run();
      synchronize(dev);
      t0 = now_ms();
      for (int64_t c = 0; c < rows[i].count; ++c) rows[i].run();
      synchronize(dev);
      gemms += now_ms() - t0;
    }
    ratios.push_back(gemms / std::max(step_once, 1e-6));
  }
  std::sort(ratios.begin(), ratios.end());
  r.paired_fraction = ratios[ratios.size() / 2];  // the upper median of an even count
  if (print_shapes) {
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.ms * a.count > b.ms * b.count; });
    fmt::print("{:<52} {:>6} {:>10} {:>9} {:>8}\n", "GEMM shape", "calls", "ms alone", "GFLOP/s", "share");
    for (const Row& row : rows)
      fmt::print("{:<52} {:>6} {:>10.4f} {:>9.1f} {:>7.1f}%\n", row.shape.str(), row.count, row.ms,
                 row.shape.flops() / row.ms / 1e6, 100.0 * row.ms * double(row.count) / step_ms);
  }
  return r;
}

// One workload: its network, a step to time (state captured inside it) and how many samples a
// step handles.
struct FlowWorkload {
  std::string name, description;
  std::shared_ptr<Module> net;
  int64_t batch = 0;
  std::function<void()> step;
  // Network evaluations of the last step, for the sampling and likelihood workloads (an
  // adaptive solver's count is part of its cost); 0 for training steps.
  std::shared_ptr<int64_t> nfe = std::make_shared<int64_t>(0);
};

// The sizes of docs/BENCHMARKS.md.
constexpr int64_t kTrainBatch = 1024;
constexpr int64_t kSamplePoints = 10000;
constexpr int64_t kLikelihoodPoints = 1000;
constexpr int64_t kOdeSteps = 100;
constexpr int64_t kImageBatch = 64;
constexpr int64_t kImageSize = 28;
constexpr int64_t kImageClasses = 10;
// Random "images" in [-1, 1) with labels 0..9, drawn before timing and cycled through, so data
// loading is no part of a step.
constexpr int64_t kImageBatches = 4;

// The benchmark network embeds h = t - r as well as t (130 input features); flow matching has
// r = t, so the methods call it without h and it is filled with zeros here.
VelocityNet with_zero_interval(const std::shared_ptr<MLPVelocity>& net) {
  return [net](const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& labels) {
    return net->forward(x, t, h.defined() ? h : zeros_like(t), labels);
  };
}

OptimizerOptions adam_options() {
  OptimizerOptions o;
  o.name = "adam";
  o.lr = 1e-3;
  return o;
}

// The image workloads' optimizer: AdamW, lr 1e-4 (weight decay 0.01, PyTorch's default).
OptimizerOptions adamw_options() {
  OptimizerOptions o;
  o.name = "adamw";
  o.lr = 1e-4;
  return o;
}

// docs/BENCHMARKS.md's fmnist-unet-cfm network: base 32, multipliers [1, 2, 2], 2 residual blocks
// per level, attention at 7x7 with 4 heads, GroupNorm(8), 10 classes and the null class.
UNetConfig fmnist_unet_config() {
  UNetConfig c;
  c.in_channels = 1;
  c.image_size = kImageSize;
  c.base_channels = 32;
  c.channel_mult = {1, 2, 2};
  c.num_res_blocks = 2;
  c.attention_resolutions = {7};
  c.attention_heads = 4;
  c.norm_groups = 8;
  c.num_classes = kImageClasses;
  return c;
}

// DiT-S/4 on 28x28x1 with the t and h embedders and 10 classes plus the null class.
DiTConfig fmnist_dit_config() {
  DiTConfig base;
  base.input_size = kImageSize;
  base.in_channels = 1;
  base.num_classes = kImageClasses;
  base.use_h = true;
  return DiTConfig::preset("S/4", base);
}

// A fixed pool of random image batches (x in [-1, 1), labels 0..9) and the index of the next one.
struct ImagePool {
  std::vector<Tensor> images, labels;
  size_t next = 0;
  ImagePool(Generator& gen, const Device& dev) {
    const TensorOptions f32(DType::f32, dev);
    for (int64_t i = 0; i < kImageBatches; ++i) {
      images.push_back(uniform({kImageBatch, 1, kImageSize, kImageSize}, -1.0, 1.0, gen, f32));
      labels.push_back(randint(0, kImageClasses, {kImageBatch}, gen).to(dev));
    }
  }
  std::pair<Tensor, Tensor> take() {
    const size_t i = next;
    next = (next + 1) % images.size();
    return {images[i], labels[i]};
  }
};

FlowWorkload make_image_workload(const std::string& which, const Device& dev) {
  const TensorOptions f32(DType::f32, dev);
  Generator init(1);
  auto gen = std::make_shared<Generator>(2);
  auto pool = std::make_shared<ImagePool>(*gen, dev);
  FlowWorkload w;
  w.name = which;
  w.batch = kImageBatch;
  if (which == "fmnist-unet-cfm") {
    w.description =
        "CFM step: 64 random 28x28x1 images with labels, CondOT path, UNet forward + backward + AdamW (lr 1e-4)";
    auto net = std::make_shared<UNet>(fmnist_unet_config(), init);
    net->to(dev);
    w.net = net;
    const VelocityNet vnet = [net](const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& labels) {
      return net->forward(x, t, h, labels);
    };
    std::shared_ptr<const ProbabilityPath> path = make_affine_path("condot");
    std::shared_ptr<Optimizer> opt = make_optimizer(net->named_parameters(), adamw_options());
    w.step = [vnet, path, opt, gen, pool, f32] {
      auto [x1, labels] = pool->take();
      Tensor x0 = randn(x1.shape(), *gen, f32);
      Tensor t = rand({x1.shape()[0]}, *gen, f32);
      Tensor loss = cfm_loss(vnet, *path, x0, x1, t, labels);
      opt->zero_grad();
      loss.backward();
      opt->step();
    };
  } else if (which == "fmnist-dit-meanflow") {
    w.description =
        "MeanFlow step: 64 random 28x28x1 images with labels, logit-normal(-0.4, 1) times, 25% r != t, JVP, adaptive "
        "weight, no CFG training, DiT-S/4 + AdamW (lr 1e-4)";
    auto net = std::make_shared<DiT>(fmnist_dit_config(), init);
    net->to(dev);
    w.net = net;
    const VelocityNet vnet = [net](const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& labels) {
      return net->forward(x, t, h, labels);
    };
    MeanFlowOptions mo;  // docs/BENCHMARKS.md's sampler and loss weight are its defaults
    mo.class_dropout = 0.0;
    mo.guidance_omega = 1.0;
    mo.null_label = kImageClasses;
    std::shared_ptr<Optimizer> opt = make_optimizer(net->named_parameters(), adamw_options());
    w.step = [vnet, mo, opt, gen, pool] {
      auto [x, labels] = pool->take();
      MeanFlowLoss l = meanflow_training_loss(vnet, x, labels, mo, *gen);
      opt->zero_grad();
      l.loss.backward();
      opt->step();
    };
  } else {
    fail("bench: unknown image workload '{}'", which);
  }
  return w;
}

FlowWorkload make_flow_workload(const std::string& which, const Device& dev) {
  if (which.rfind("fmnist-", 0) == 0) return make_image_workload(which, dev);
  const TensorOptions f32(DType::f32, dev);
  Generator init(1);
  auto net = std::make_shared<MLPVelocity>(MLPVelocityConfig{.use_h = true}, init);
  net->to(dev);
  const VelocityNet vnet = with_zero_interval(net);
  auto gen = std::make_shared<Generator>(2);
  FlowWorkload w;
  w.name = which;
  w.net = net;
  if (which == "toy2d-cfm") {
    w.description = "CFM step: checkerboard, CondOT path, forward + backward + Adam (lr 1e-3)";
    w.batch = kTrainBatch;
    std::shared_ptr<const ProbabilityPath> path = make_affine_path("condot");
    std::shared_ptr<Optimizer> opt = make_optimizer(net->named_parameters(), adam_options());
    w.step = [vnet, path, opt, gen, f32, batch = w.batch] {
      Tensor x1 = sample_2d("checkerboard", batch, *gen, f32);
      Tensor x0 = randn({batch, 2}, *gen, f32);
      Tensor t = rand({batch}, *gen, f32);
      Tensor loss = cfm_loss(vnet, *path, x0, x1, t);
      opt->zero_grad();
      loss.backward();
      opt->step();
    };
  } else if (which == "toy2d-meanflow") {
    w.description = "MeanFlow step: checkerboard, logit-normal(-0.4, 1) times, 25% r != t, JVP, adaptive weight, Adam";
    w.batch = kTrainBatch;
    const MeanFlowOptions mo;  // its defaults are docs/BENCHMARKS.md's sampler and loss weight
    std::shared_ptr<Optimizer> opt = make_optimizer(net->named_parameters(), adam_options());
    w.step = [vnet, mo, opt, gen, f32, batch = w.batch] {
      Tensor x = sample_2d("checkerboard", batch, *gen, f32);
      MeanFlowLoss l = meanflow_training_loss(vnet, x, Tensor(), mo, *gen);
      opt->zero_grad();
      l.loss.backward();
      opt->step();
    };
  } else if (which == "toy2d-euler" || which == "toy2d-dopri5") {
    const bool adaptive = which == "toy2d-dopri5";
    w.description = adaptive ? "sampling: 10,000 points, dopri5 at rtol = atol = 1e-5, no gradients"
                             : "sampling: 10,000 points, 100 Euler steps, no gradients";
    w.batch = kSamplePoints;
    Tensor noise = randn({w.batch, 2}, *gen, f32);
    OdeOptions ode;  // dopri5's default tolerances are 1e-5
    ode.method = adaptive ? OdeMethod::Dopri5 : OdeMethod::Euler;
    ode.steps = kOdeSteps;
    w.step = [vnet, noise, ode, nfe = w.nfe] { *nfe = sample_flow(vnet, noise, ode).nfe; };
  } else if (which == "toy2d-nll-exact") {
    w.description = "log-likelihood: 1,000 points, reverse Euler 100 steps, exact divergence";
    w.batch = kLikelihoodPoints;
    Tensor x = sample_2d("checkerboard", w.batch, *gen, f32);
    LikelihoodOptions lo;
    lo.ode.method = OdeMethod::Euler;
    lo.ode.steps = kOdeSteps;
    lo.divergence = DivergenceMethod::Exact;
    const VelocityField field = velocity_field(vnet);
    w.step = [field, x, lo, nfe = w.nfe] {
      NoGradGuard ng;
      *nfe = cnf_log_likelihood(field, x, lo).nfe;
    };
  } else {
    fail("bench: unknown flow workload '{}'", which);
  }
  return w;
}

void run_flow_bench(const std::string& which, const FlowBenchOptions& o) {
  Device dev = Device::parse(o.device);
  check_device(dev);  // a clear error when the device is missing
  if (o.threads > 0) set_cpu_threads(o.threads);
  JsonLinesFile json(o.json, fmt::format("bench {} --json", which));
  FlowWorkload w = make_flow_workload(which, dev);
  const std::shared_ptr<Module>& net = w.net;
  if (o.params) {
    // One line per parameter tensor, to hold against the PyTorch replica (bench_torch.py --params).
    for (const auto& [name, p] : net->named_parameters()) fmt::print("{:<48} {}\n", name, p.shape().str());
    fmt::print("{}: {} ({} params)\n", w.name, net->describe(), net->num_parameters());
    return;
  }

  fmt::print("{}: {}\n", w.name, w.description);
  fmt::print("device {}, {} CPU thread(s), {} timed steps after {} warm-up steps, {} ({} params)\n", dev.str(),
             cpu_threads(), o.steps, o.warmup, net->describe(), net->num_parameters());
  reset_peak_memory(dev);
  const int64_t before = memory_stats(dev).current_bytes;
  const StepTimes st = time_steps(w.step, dev, o.steps, o.warmup);
  const double peak_mib = double(memory_stats(dev).peak_bytes - before) / (1 << 20);
  const double samples_per_s = double(w.batch) / (st.median_ms / 1000.0);
  const int64_t nfe = *w.nfe;
  fmt::print("{:<20} {:>6} {:>10} {:>9} {:>9} {:>9} {:>9} {:>11} {:>9} {:>5}\n", "workload", "batch", "median_ms",
             "min_ms", "q1_ms", "q3_ms", "max_ms", "samples/s", "peak MiB", "NFE");
  fmt::print("{:<20} {:>6} {:>10.3f} {:>9.3f} {:>9.3f} {:>9.3f} {:>9.3f} {:>11.0f} {:>9.1f} {:>5}\n", w.name, w.batch,
             st.median_ms, st.min_ms, st.q1_ms, st.q3_ms, st.max_ms, samples_per_s, peak_mib,
             nfe > 0 ? fmt::format("{}", nfe) : "-");
  const GemmRoofline roof =
      o.roofline ? measure_gemm_roofline(w.step, dev, st.median_ms, o.gemm_shapes) : GemmRoofline{};
  if (o.roofline)
    fmt::print(
        "GEMM roofline: {:.2f} GFLOP per step in {} GEMMs of {} shapes; alone they take {:.3f} ms ({:.1f} GFLOP/s), "
        "{:.1f}% of the step; paired with a step in each of {} rounds, {:.1f}%\n",
        roof.gflop, roof.calls, roof.shapes, roof.alone_ms, roof.alone_ms > 0 ? roof.gflop / roof.alone_ms * 1e3 : 0.0,
        100.0 * roof.fraction, roof.rounds, 100.0 * roof.paired_fraction);
  if (json)
    json
        << fmt::format(
               R"({{"workload":"{}","framework":"dualflow","device":"{}","threads":{},"batch":{},"params":{},"steps":{},"warmup":{},"median_ms":{:.4f},"min_ms":{:.4f},"q1_ms":{:.4f},"q3_ms":{:.4f},"max_ms":{:.4f},"samples_per_s":{:.1f},"peak_mib":{:.2f},"nfe":{},"gemm_gflop":{:.4f},"gemm_calls":{},"gemm_alone_ms":{:.4f},"gemm_roofline":{:.4f},"gemm_roofline_paired":{:.4f}}})",
               w.name, dev.str(), cpu_threads(), w.batch, net->num_parameters(), st.steps, o.warmup, st.median_ms,
               st.min_ms, st.q1_ms, st.q3_ms, st.max_ms, samples_per_s, peak_mib, nfe, roof.gflop, roof.calls,
               roof.alone_ms, roof.fraction, roof.paired_fraction)
        << "\n";
  json.commit();
}

}  // namespace

void add_bench_flow(CLI::App* bench) {
  const std::vector<std::pair<std::string, std::string>> workloads = {
      {"toy2d-cfm", "Time a CFM training step of the toy2d network (batch 1024, Adam)"},
      {"toy2d-meanflow", "Time a MeanFlow training step of the toy2d network (batch 1024, Adam)"},
      {"toy2d-euler", "Time sampling 10,000 points with 100 Euler steps of the toy2d network"},
      {"toy2d-dopri5", "Time sampling 10,000 points with dopri5 (rtol = atol = 1e-5) of the toy2d network"},
      {"toy2d-nll-exact", "Time the exact-divergence log-likelihood of 1,000 points (reverse Euler, 100 steps)"},
      {"fmnist-unet-cfm", "Time a CFM training step of the U-Net on 28x28x1 images (batch 64, AdamW)"},
      {"fmnist-dit-meanflow", "Time a MeanFlow training step of DiT-S/4 on 28x28x1 images (batch 64, AdamW)"},
  };
  for (const auto& [name, help] : workloads) {
    auto opts = std::make_shared<FlowBenchOptions>();
    auto* cmd = bench->add_subcommand(name, help);
    cmd->add_option("--device", opts->device, "cpu, cuda or cuda:N")->capture_default_str();
    cmd->add_option("--threads", opts->threads, "CPU threads (default: all cores)")->check(positive_integer());
    cmd->add_option("--steps", opts->steps, "timed steps (the median is reported)")
        ->capture_default_str()
        ->check(positive_integer());
    cmd->add_option("--warmup", opts->warmup, "untimed steps first")
        ->capture_default_str()
        ->check(non_negative_integer());
    cmd->add_option("--json", opts->json, "Also write the result as one JSON object to this file");
    cmd->add_flag("--params", opts->params, "List the network's parameters with their shapes and exit without timing");
    cmd->add_flag("--gemm-shapes", opts->gemm_shapes,
                  "Print the GEMM roofline's table: each GEMM shape of a step, its calls and its time alone");
    cmd->add_flag("!--no-roofline", opts->roofline,
                  "Skip the GEMM roofline (one recorded step, then its GEMM shapes timed alone); its JSON keys are 0");
    cmd->callback([name, opts] { run_flow_bench(name, *opts); });
  }
}

}  // namespace dualflow::cli
