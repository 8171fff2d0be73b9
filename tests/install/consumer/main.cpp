// An outside program on the installed dualflow: a gradient of the engine, then a
// short flow-matching run through the library's run spec and training loop.
#include <fmt/format.h>

#include <cmath>
#include <filesystem>

#include "engine/dualflow.h"
#include "train/flow_run.h"

int main(int argc, char** argv) {
  using namespace dualflow;
  if (argc != 2) {
    fmt::print(stderr, "usage: consumer OUT_DIR\n");
    return 2;
  }
  // d/dx sum(x^3) = 3 x^2.
  Tensor x = from_vector(std::vector<double>{1.0, 2.0}, {2}, TensorOptions(DType::f64));
  x.set_requires_grad(true);
  Tensor y = sum(x * x * x);
  y.backward();
  const std::vector<double> g = x.grad().to_vector<double>();
  if (std::abs(g[0] - 3.0) > 1e-12 || std::abs(g[1] - 12.0) > 1e-12) {
    fmt::print(stderr, "consumer: wrong gradient {} {}\n", g[0], g[1]);
    return 1;
  }
  RunConfig config = parse_config_text("", "<consumer>",
                                       {"model.width=16", "model.depth=1", "train.steps=5", "train.batch=32",
                                        "train.log_every=5", "sample.n=20", "sample.steps=2", "run.threads=1"},
                                       flow_matching_schema());
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = argv[1];
  TrainRunResult r = train_flow_matching(config, o);
  if (r.steps_done != 5 || !std::isfinite(r.last_loss) ||
      !std::filesystem::exists(std::filesystem::path(argv[1]) / "checkpoint.safetensors")) {
    fmt::print(stderr, "consumer: the training run did not finish\n");
    return 1;
  }
  fmt::print("consumer: ok (loss {:.4f} after {} steps)\n", r.last_loss, r.steps_done);
  return 0;
}
