// `dualflow demo`: the default job until flow-matching training lands. Fits a small MLP to a
// 2-D regression (y = sin(2 x1) cos(x2) + x1 / 2 on [-2, 2]^2) with the engine's autodiff and
// Adam, printing the loss as it falls and the final test error.
#include <fmt/format.h>

#include <chrono>
#include <cmath>

#include "engine/dualflow.h"
#include "engine/threads.h"
#include "train/cli/commands.h"

namespace dualflow::cli {
namespace {

struct DemoOptions {
  int steps = 1500;
  int batch = 256;
  int width = 64;
  double lr = 3e-3;
  uint64_t seed = 0;
  int threads = 0;
};

Tensor target(const Tensor& x) {
  Tensor x1 = x.select(1, 0), x2 = x.select(1, 1);
  return (sin(x1 * 2.0) * cos(x2) + x1 * 0.5).unsqueeze(1);
}

void run_demo(const DemoOptions& o) {
  if (o.threads > 0) set_cpu_threads(o.threads);
  Generator gen(o.seed);
  // PyTorch's default Linear initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  auto linear = [&](int64_t in, int64_t out) {
    double k = 1.0 / std::sqrt(double(in));
    return std::vector<Tensor>{uniform(Shape{in, out}, -k, k, gen), uniform(Shape{out}, -k, k, gen)};
  };
  std::vector<Tensor> params;
  for (auto [i, j] : std::vector<std::pair<int64_t, int64_t>>{{2, o.width}, {o.width, o.width}, {o.width, 1}})
    for (Tensor& p : linear(i, j)) params.push_back(p);
  for (Tensor& p : params) p.set_requires_grad(true);
  auto net = [&](const Tensor& x) {
    Tensor h = silu(matmul(x, params[0]) + params[1]);
    h = silu(matmul(h, params[2]) + params[3]);
    return matmul(h, params[4]) + params[5];
  };
  // Adam (beta 0.9 / 0.999) written with engine ops under NoGradGuard.
  std::vector<Tensor> m, v;
  for (const Tensor& p : params) {
    m.push_back(zeros_like(p.detach()));
    v.push_back(zeros_like(p.detach()));
  }
  Tensor x_test = uniform(Shape{2048, 2}, -2, 2, gen);
  Tensor y_test = target(x_test);
  fmt::print("demo: MLP 2-{}-{}-1 (SiLU), Adam lr {}, batch {}, {} steps\n", o.width, o.width, o.lr, o.batch, o.steps);
  auto t0 = std::chrono::steady_clock::now();
  for (int step = 1; step <= o.steps; ++step) {
    Tensor x = uniform(Shape{o.batch, 2}, -2, 2, gen);
    Tensor loss = mean(square(net(x) - target(x)));
    loss.backward();
    {
      NoGradGuard ng;
      double c1 = 1 - std::pow(0.9, step), c2 = 1 - std::pow(0.999, step);
      for (size_t i = 0; i < params.size(); ++i) {
        Tensor g = params[i].grad();
        m[i] = m[i] * 0.9 + g * 0.1;
        v[i] = v[i] * 0.999 + square(g) * 0.001;
        Tensor update = (m[i] * (1.0 / c1)) / (sqrt(v[i] * (1.0 / c2)) + 1e-8) * o.lr;
        copy_(params[i], params[i] - update);
        params[i].zero_grad();
      }
    }
    if (step == 1 || step % 100 == 0 || step == o.steps) {
      double l = loss.item();
      if (!std::isfinite(l)) fail("demo: the loss became {} at step {}", l, step);
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fmt::print("step {:5d}  loss {:.6f}  ({:.0f} it/s)\n", step, l, step / secs);
      std::fflush(stdout);
    }
  }
  NoGradGuard ng;
  double test_mse = mean(square(net(x_test) - y_test)).item();
  double var_y = var(y_test, {}, 0).item();
  fmt::print("test MSE {:.6f} (target variance {:.4f}, R^2 = {:.4f})\n", test_mse, var_y, 1 - test_mse / var_y);
}

}  // namespace

void add_demo(CLI::App& app) {
  auto opts = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand("demo", "Train a small MLP on a 2-D regression and print the loss falling");
  cmd->add_option("--steps", opts->steps, "Training steps")->check(positive_integer())->capture_default_str();
  cmd->add_option("--batch", opts->batch, "Batch size")->check(positive_integer())->capture_default_str();
  cmd->add_option("--width", opts->width, "Hidden width")->check(positive_integer())->capture_default_str();
  cmd->add_option("--lr", opts->lr, "Adam learning rate")->check(positive_number())->capture_default_str();
  cmd->add_option("--seed", opts->seed, "Random seed")->capture_default_str()->check(non_negative_integer());
  cmd->add_option("--threads", opts->threads, "CPU threads (default: all cores)")->check(positive_integer());
  cmd->callback([opts] { run_demo(*opts); });
}

}  // namespace dualflow::cli
