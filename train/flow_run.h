// A Flow Matching run as the `dualflow train / sample / nll` programs drive it: the model,
// data, path, coupling and optimizer a RunConfig describes, the training loop (metrics,
// progress, periodic atomic checkpoints, a stop on a non-finite loss, a clean stop on
// SIGINT/SIGTERM, bitwise-identical resume), and sampling / likelihood from a checkpoint.
// This version trains on the built-in 2-D datasets with MLPVelocity, with one of the objectives
// conditional flow matching, denoising score matching (sampled through the probability-flow
// ODE), maximum-likelihood CNF training, reflow of a trained flow, or MeanFlow (sampled in a
// few steps of its average velocity, or through the ODE of its instantaneous velocity).
#pragma once
#include <memory>
#include <string>

#include "models/module.h"
#include "train/cfm.h"
#include "train/config.h"
#include "train/likelihood.h"

namespace dualflow {

// The network a config describes, and the velocity field the samplers integrate.
struct VelocityModel {
  std::shared_ptr<Module> module;
  // The module's own output: a velocity, the noise for method "score", or for "meanflow" the
  // average velocity u(z, r, t) called as network(z, t, h = t - r, labels) in MeanFlow's time
  // (see meanflow_time).
  VelocityNet network;
  // The velocity in flow-matching time (noise at t = 0, data at t_end), what the ODE solvers
  // and the likelihood integrate: for "score" the probability-flow ODE's, for "meanflow" the
  // instantaneous velocity (flow_matching_time_velocity).
  VelocityNet net;
  Shape sample_shape;   // one sample, without the batch dim
  int64_t num_classes = 0;
  double t_end = 1.0;       // the data end of time (method.t_max)
  double source_std = 1.0;  // the source at t = 0 is N(0, source_std^2 I) (sigma_max on the VE path)
  // `network` runs in MeanFlow's reversed time (t = 1 noise, t = 0 data) with the interval h
  // as an input, and is sampled by meanflow_sample.
  bool meanflow_time = false;
};
VelocityModel build_velocity_model(const RunConfig& config, Generator& init);

// The instantaneous velocity of a MeanFlow network, u(z, t, t) (h = 0), moved to flow-matching
// time tau = 1 - t: v(x, tau) = -u(x, t = 1 - tau, h = 0). Integrated from tau = 0 (noise) to
// 1 (data) it is the ODE that MeanFlow's average velocity averages. The returned net takes
// h undefined, like every flow-matching velocity.
VelocityNet flow_matching_time_velocity(const VelocityNet& meanflow_network);

// What to draw from a model: `n` samples from fresh noise of `seed`, by integrating the ODE of
// model.net with `ode` (method "ode") or by `meanflow_steps` MeanFlow jumps of model.network
// (method "meanflow", MeanFlow models only). A class-conditional model gets balanced labels
// (grid_labels with 10 columns: row k of a 10-wide grid is class k) and, on the ODE, classifier-
// free guidance of scale `cfg_scale` (1: the conditional model alone); MeanFlow bakes its guidance
// in during training and takes none here.
struct SampleRequest {
  int64_t n = 100;
  std::string method = "ode";
  OdeOptions ode;
  int64_t meanflow_steps = 1;
  double cfg_scale = 1.0;
  uint64_t seed = 0;
  int64_t chunk = 0;  // draw at most this many at once (bounds memory); 0: all at once
};
struct DrawnSamples {
  Tensor x;        // [n, sample_shape...] on the model's device
  Tensor labels;   // i64 [n], undefined for unconditional models
  int64_t nfe = 0;  // network evaluations per sample (guidance's two branches count once)
  std::string how;  // "euler, 50 steps", "MeanFlow, 1 step", ...
};
DrawnSamples draw_samples(const VelocityModel& model, const SampleRequest& request);
// i64 [n]: sample i gets class (i / columns) mod classes.
Tensor grid_labels(int64_t n, int64_t classes, int64_t columns, Device device);

struct TrainRunOptions {
  std::string out_dir;          // receives checkpoint.safetensors, metrics.jsonl, samples.png
  bool resume = false;          // continue from out_dir/checkpoint.safetensors
  bool progress_line = false;   // one updating line (a terminal) instead of plain log lines
  bool quiet = false;           // no console output at all (tests)
};

struct TrainRunResult {
  int64_t steps_done = 0;       // the step count reached (including resumed steps)
  bool interrupted = false;     // stopped by SIGINT/SIGTERM after saving
  double last_loss = 0;
};

// Trains as configured. Throws (after writing what it can) on a non-finite loss, naming the
// step; the last good checkpoint stays in place.
TrainRunResult train_flow_matching(const RunConfig& config, const TrainRunOptions& options);

// Installs SIGINT/SIGTERM handlers that ask a running train_flow_matching to save and stop.
void install_stop_signal_handlers();

// A checkpoint's config and its model with the evaluation (EMA when present) weights loaded.
struct LoadedModel {
  RunConfig config;
  VelocityModel model;
  int64_t step = 0;
};
LoadedModel load_model_from_checkpoint(const std::string& path);

}  // namespace dualflow
