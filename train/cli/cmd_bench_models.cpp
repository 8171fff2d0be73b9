// `dualflow bench models`: ms per training step of the three networks — MLPVelocity (the toy2d
// network), the fmnist-unet-cfm U-Net and DiT-S/4 on 28x28x1 — for a forward pass, a
// forward + backward pass (a CFM step without the optimizer) and a forward + JVP + backward
// pass (a MeanFlow step: the JVP along (v, dt = 1, dr = 0) with tangents off the tape), with
// parameter counts and the peak bytes held by tensors during each.
#include <fmt/format.h>

#include <fstream>
#include <memory>

#include "engine/threads.h"
#include "models/models.h"
#include "train/cli/bench_timing.h"
#include "train/cli/json_lines_file.h"
#include "train/cli/commands.h"

namespace dualflow::cli {
namespace {

struct ModelBenchOptions {
  std::string device = "cpu";
  int threads = 0;
  std::string json;
  std::string model = "all";
  int samples = 20;
  int batch = 0;  // 0: the workload's batch (1024 for the MLP, 64 for images)
};

// A network as the benchmark sees it: velocity(x, t, h) and its parameters.
struct Workload {
  std::string name, description;
  std::shared_ptr<Module> module;
  std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)> net;
  Shape sample_shape;  // one sample, without the batch dim
  int64_t batch = 0;
};

// Labels 0, 1, ..., 9, 0, ... for a batch of n.
Tensor cycling_labels(int64_t n, const Device& dev) {
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[size_t(i)] = i % 10;
  return from_vector(y, {n}).to(dev);
}

Workload make_workload(const std::string& which, const Device& dev, int batch_override, Generator& gen) {
  Workload w;
  w.name = which;
  if (which == "mlp") {
    auto net = std::make_shared<MLPVelocity>(MLPVelocityConfig{}, gen);
    w.module = net;
    w.description = "MLPVelocity toy2d (130-256x4-2)";
    w.net = [net](const Tensor& x, const Tensor& t, const Tensor& h) { return net->forward(x, t, h); };
    w.sample_shape = {2};
    w.batch = 1024;
  } else if (which == "unet") {
    UNetConfig c;  // docs/BENCHMARKS.md's fmnist-unet-cfm network, plus the h input for the MeanFlow row
    c.num_classes = 10;
    c.use_h = true;
    auto net = std::make_shared<UNet>(c, gen);
    w.module = net;
    w.description = "UNet fmnist-unet-cfm (32, [1,2,2], attn 7x7)";
    w.sample_shape = {1, 28, 28};
    w.batch = 64;
    w.net = [net, labels = Tensor()](const Tensor& x, const Tensor& t, const Tensor& h) mutable {
      if (!labels.defined() || labels.shape()[0] != x.shape()[0]) labels = cycling_labels(x.shape()[0], x.device());
      return net->forward(x, t, h, labels);
    };
  } else if (which == "dit") {
    DiTConfig base;
    base.input_size = 28;
    base.in_channels = 1;
    base.num_classes = 10;
    base.use_h = true;
    auto net = std::make_shared<DiT>(DiTConfig::preset("S/4", base), gen);
    w.module = net;
    w.description = "DiT-S/4 28x28x1 (t and h embedders)";
    w.sample_shape = {1, 28, 28};
    w.batch = 64;
    w.net = [net, labels = Tensor()](const Tensor& x, const Tensor& t, const Tensor& h) mutable {
      if (!labels.defined() || labels.shape()[0] != x.shape()[0]) labels = cycling_labels(x.shape()[0], x.device());
      return net->forward(x, t, h, labels);
    };
  } else {
    fail("bench models: unknown model '{}' (expected mlp, unet, dit or all)", which);
  }
  if (batch_override > 0) w.batch = batch_override;
  w.module->to(dev);
  return w;
}

void run_models(const ModelBenchOptions& o) {
  Device dev = Device::parse(o.device);
  check_device(dev);  // a clear error when the device is missing
  if (o.threads > 0) set_cpu_threads(o.threads);
  JsonLinesFile json(o.json, "bench models --json");
  std::vector<std::string> models =
      o.model == "all" ? std::vector<std::string>{"mlp", "unet", "dit"} : std::vector<std::string>{o.model};
  fmt::print("device {}, {} CPU thread(s), median of {} steps after 2 warm-up steps\n", dev.str(), cpu_threads(),
             o.samples);
  fmt::print("{:<6} {:>6} {:>11} {:<22} {:>10} {:>10}  {}\n", "model", "batch", "params", "pass", "ms/step", "peak MiB",
             "note");
  for (const std::string& which : models) {
    Generator gen(1);
    Workload w = make_workload(which, dev, o.batch, gen);
    Shape shape = w.sample_shape;
    std::vector<int64_t> dims = {w.batch};
    for (int64_t d : shape) dims.push_back(d);
    const TensorOptions f32(DType::f32, dev);
    Tensor x0 = randn(Shape(dims), gen, f32), x1 = randn(Shape(dims), gen, f32);
    Tensor t = rand({w.batch}, gen, f32), h = mul(rand({w.batch}, gen, f32), t);
    // z_t = (1 - t) x + t e along the batch dim, broadcast over the sample dims.
    std::vector<int64_t> tdims(dims.size(), 1);
    tdims[0] = w.batch;
    Tensor tb = t.reshape(Shape(tdims));
    Tensor z = (1.0 - tb) * x1 + tb * x0, v = x0 - x1;

    struct Pass {
      const char* name;
      std::function<void()> run;
    };
    Module& m = *w.module;
    std::vector<Pass> passes = {
        {"forward",
         [&] {
           NoGradGuard ng;
           w.net(z, t, h);
         }},
        {"forward+backward",
         [&] {
           m.zero_grad();
           Tensor loss = mean(square(w.net(z, t, zeros_like(h)) - v));
           loss.backward();
         }},
        {"forward+jvp+backward",
         [&] {
           m.zero_grad();
           auto f = [&](const std::vector<Tensor>& in) { return std::vector<Tensor>{w.net(in[0], in[1], in[2])}; };
           JvpResult r =
               jvp(f, {z, t, h}, {v, ones_like(t), ones_like(h)}, JvpOptions{.differentiable_tangents = false});
           Tensor target = stop_gradient(v - h.reshape(Shape(tdims)) * r.tangents[0]);
           Tensor loss = mean(square(r.outputs[0] - target));
           loss.backward();
         }},
    };
    double base_ms = 0;
    for (const Pass& p : passes) {
      reset_peak_memory(dev);
      const int64_t before = memory_stats(dev).current_bytes;
      double ms = median_ms(p.run, dev, o.samples);
      m.zero_grad();
      const double peak_mib = double(memory_stats(dev).peak_bytes - before) / (1 << 20);
      std::string note;
      if (std::string(p.name) == "forward+backward") base_ms = ms;
      if (std::string(p.name) == "forward+jvp+backward" && base_ms > 0)
        note = fmt::format("{:.2f}x forward+backward", ms / base_ms);
      fmt::print("{:<6} {:>6} {:>11} {:<22} {:>10.2f} {:>10.1f}  {}\n", which, w.batch, m.num_parameters(), p.name, ms,
                 peak_mib, note);
      std::fflush(stdout);
      if (json)
        json
            << fmt::format(
                   R"({{"model":"{}","description":"{}","device":"{}","threads":{},"batch":{},"params":{},"pass":"{}","median_ms":{:.4f},"peak_mib":{:.2f}}})",
                   which, w.description, dev.str(), cpu_threads(), w.batch, m.num_parameters(), p.name, ms, peak_mib)
            << "\n";
    }
  }
  json.commit();
}

}  // namespace

void add_bench_models(CLI::App* bench) {
  auto opts = std::make_shared<ModelBenchOptions>();
  auto* cmd =
      bench->add_subcommand("models", "Time forward, forward+backward and forward+JVP+backward of the networks");
  cmd->add_option("--model", opts->model, "mlp, unet, dit or all")->capture_default_str();
  cmd->add_option("--device", opts->device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--threads", opts->threads, "CPU threads (default: all cores)")->check(positive_integer());
  cmd->add_option("--samples", opts->samples, "timed steps per pass (the median is reported)")
      ->capture_default_str()
      ->check(positive_integer());
  cmd->add_option("--batch", opts->batch, "batch size (default: 1024 for mlp, 64 for unet/dit)")
      ->check(positive_integer());
  cmd->add_option("--json", opts->json, "Also write one JSON object per row to this file");
  cmd->callback([opts] { run_models(*opts); });
}

}  // namespace dualflow::cli
