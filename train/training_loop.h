// The one training loop of every run (flow models and the evaluation classifier): the output
// directory, resume from its checkpoint, the learning-rate schedule, gradients with clipping,
// the stop on a non-finite loss or gradient (naming the step, keeping the last good
// checkpoint), the optimizer and EMA steps, metrics.jsonl with a progress line, periodic
// atomic checkpoints, and a save-and-stop on SIGINT/SIGTERM. A run supplies what one step
// computes; the loop does the rest.
//
// Data-parallel training plugs in through a StepSynchronizer (train/parallel/data_parallel.h):
// the processes start from rank 0's state, combine their gradients after backward and before
// clipping and the optimizer step, agree on stopping, and compare parameter checksums every few
// steps; ProcessRole::writes_files decides which process writes the checkpoint, metrics and
// pictures.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "train/checkpoint.h"
#include "train/metrics_log.h"
#include "train/optim.h"

namespace dualflow {

// What one step computed.
struct StepOutcome {
  Tensor loss;  // a scalar
  // The batch's inputs, summarised (absolute maximum, range) in the record of a non-finite step.
  std::vector<std::pair<std::string, Tensor>> inputs;
  // Scalars the step computed anyway, logged beside the loss (the first also on the progress line).
  std::vector<std::pair<std::string, Tensor>> diagnostics;
};

// This process's place in a run: rank 0 of a world of 1 for a single process.
struct ProcessRole {
  int rank = 0;
  int world_size = 1;
  bool writes_files() const { return rank == 0; }
};

// What the processes of a data-parallel run exchange at the loop's fixed points. A single
// process has none (LoopSettings::sync is null) and exchanges nothing.
class StepSynchronizer {
 public:
  virtual ~StepSynchronizer() = default;
  virtual ProcessRole role() const = 0;
  // Called by every process once per step, after backward: each gradient of `params` (an
  // undefined one counts as zero) and each of `scalars` becomes the sum over the processes of
  // their values weighted by their share of the batch, the same bits on every process.
  virtual void combine(const NamedTensors& params, std::vector<double>& scalars) = 0;
  // Every process takes rank 0's tensors (written in place), generator states and step.
  virtual void broadcast_state(const NamedTensors& state, const std::vector<Generator*>& generators,
                               int64_t& step) = 0;
  // Throws, naming the step and the ranks, when the processes' parameters are not identical.
  virtual void check_in_sync(const NamedTensors& params, int64_t step) = 0;
  // Steps between two check_in_sync calls; 0: never.
  virtual int64_t sync_check_every() const = 0;
  // Seconds spent in combine so far (logged per step as sync_ms).
  virtual double combine_seconds() const = 0;
  // Returns once every process has called it (rank 0's record of a failed step is written
  // before any process stops the run).
  virtual void wait_for_all() = 0;
};

struct LoopSettings {
  std::string command = "train";  // prefixes messages: "train: step 12: ..."
  std::string out_dir;            // receives checkpoint.safetensors and metrics.jsonl
  bool resume = false;            // continue from out_dir's checkpoint
  bool progress_line = false;     // one updating line (a terminal) instead of plain log lines
  bool quiet = false;             // no console output at all (tests)
  int64_t total_steps = 0;
  int64_t log_every = 100;
  int64_t checkpoint_every = 0;  // 0: only at the end
  bool save_at_end = true;       // false: the run saves itself after the loop (with metadata)
  double grad_clip = 0;          // 0: measure the gradient norm without clipping
  LrSchedule schedule;
  // Log the loss and diagnostics as means over the logging window (each step is read back)
  // instead of the logging step's own values.
  bool window_means = false;
  // Further JSON fields of each metrics line, after "step" (",\"epoch\":1.5"); may be empty.
  std::function<std::string(int64_t step)> extra_fields;
  ProcessRole role;  // taken from sync when there is one
  std::shared_ptr<StepSynchronizer> sync;
};

// The live state the loop trains and saves.
struct LoopState {
  Module* model = nullptr;
  Optimizer* optimizer = nullptr;
  Ema* ema = nullptr;                                          // may be null
  std::vector<std::pair<std::string, Generator*>> generators;  // saved and restored with the step
  NamedTensors params;                                         // what the optimizer updates
  std::string config_text;                                     // recorded in the checkpoint
};

struct LoopResult {
  int64_t steps_done = 0;    // the step count reached (including resumed steps)
  bool interrupted = false;  // stopped by SIGINT/SIGTERM after saving
  double last_loss = 0;      // the last logged loss (a window mean with window_means)
  double train_seconds = 0;  // this process's time in the loop
};

class TrainingLoop {
 public:
  // Creates the output directory and, when resuming, loads the checkpoint into the state.
  TrainingLoop(LoopSettings settings, LoopState state);

  int64_t step() const { return step_; }
  // Runs the steps left; `compute` returns the loss of one step (the loop zeroes the gradients,
  // back-propagates, clips and steps the optimizer). Throws on a non-finite loss or gradient,
  // after recording the step in the metrics.
  LoopResult run(const std::function<StepOutcome(int64_t step)>& compute);
  // Writes the checkpoint at the current step (atomically; only the file-writing process).
  void save(const std::map<std::string, std::string>& metadata = {});
  // Appends a record to metrics.jsonl (only the file-writing process).
  void log(const std::string& record);

  const std::string& checkpoint_path() const { return checkpoint_path_; }
  const std::string& metrics_path() const { return metrics_path_; }
  const LoopSettings& settings() const { return settings_; }

 private:
  void stop_on_non_finite(const struct GradientStep& g, const StepOutcome& outcome);
  void print_line(const std::string& line) const;
  NamedTensors all_state() const;

  LoopSettings settings_;
  LoopState state_;
  std::string checkpoint_path_, metrics_path_;
  int64_t step_ = 0;
  std::unique_ptr<MetricsLog> metrics_;
};

// Installs SIGINT/SIGTERM handlers that ask a running TrainingLoop to save and stop.
void install_stop_signal_handlers();

}  // namespace dualflow
