// A flow run as the `dualflow train / sample / nll / eval` programs drive it: training a run
// spec's model with its method through the shared training loop (then drawing samples.png
// from the evaluation weights), and loading a checkpoint's model for sampling and likelihood.
// What a run does is decided by its spec's registries: the network (train/networks/) and
// the method (train/methods/).
#pragma once
#include <memory>
#include <string>

#include "train/methods/method.h"
#include "train/parallel/process_group.h"

namespace dualflow {

struct TrainRunOptions {
  std::string out_dir;         // receives checkpoint.safetensors, metrics.jsonl, samples.png
  bool resume = false;         // continue from out_dir/checkpoint.safetensors
  bool progress_line = false;  // one updating line (a terminal) instead of plain log lines
  bool quiet = false;          // no console output at all (tests)
  // The processes that train together (ProcessGroup::join() under mpirun; rank 0 writes the
  // files); null or a group of one: this process alone.
  std::shared_ptr<ProcessGroup> group;
};

struct TrainRunResult {
  int64_t steps_done = 0;    // the step count reached (including resumed steps)
  bool interrupted = false;  // stopped by SIGINT/SIGTERM after saving
  double last_loss = 0;
};

// Trains as configured. Throws (after writing what it can) on a non-finite loss, naming the
// step; the last good checkpoint stays in place.
TrainRunResult train_flow_matching(const FlowRunSpec& spec, const TrainRunOptions& options);
TrainRunResult train_flow_matching(const RunConfig& config, const TrainRunOptions& options);

// A checkpoint's run spec and its model with the evaluation (EMA when present) weights loaded,
// in eval mode on the run's device.
struct LoadedModel {
  FlowRunSpec spec;
  VelocityModel model;
  int64_t step = 0;
};
LoadedModel load_model_from_checkpoint(const std::string& path);

// The instantaneous velocity of a MeanFlow network, u(z, t, t) (h = 0), moved to flow-matching
// time tau = 1 - t: v(x, tau) = -u(x, t = 1 - tau, h = 0). Integrated from tau = 0 (noise) to
// 1 (data) it is the ODE that MeanFlow's average velocity averages. The returned net takes
// h undefined, like every flow-matching velocity.
VelocityNet flow_matching_time_velocity(const VelocityNet& meanflow_network);

}  // namespace dualflow
