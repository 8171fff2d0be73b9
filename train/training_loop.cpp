// The one training loop (see training_loop.h).
#include "train/training_loop.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "train/gradient_step.h"
#include "train/json_text.h"
#include "train/plots.h"

namespace dualflow {

namespace {

std::atomic<bool> g_stop_requested{false};
extern "C" void request_stop(int) { g_stop_requested.store(true); }

double absmax(const Tensor& t) { return amax(abs(t.detach())).to(DType::f64).item(); }
double as_double(const Tensor& t) { return t.to(DType::f64).item(); }

}  // namespace

void install_stop_signal_handlers() {
  struct sigaction sa = {};
  sa.sa_handler = request_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

TrainingLoop::TrainingLoop(LoopSettings settings, LoopState state)
    : settings_(std::move(settings)), state_(std::move(state)) {
  namespace fs = std::filesystem;
  const std::string& cmd = settings_.command;
  if (settings_.sync) settings_.role = settings_.sync->role();
  const bool writer = settings_.role.writes_files();
  DF_CHECK(!settings_.out_dir.empty(), "{}: an output directory is required (--out DIR)", cmd);
  DF_CHECK(state_.model && state_.optimizer, "{}: the training loop needs a model and an optimizer", cmd);
  checkpoint_path_ = (fs::path(settings_.out_dir) / "checkpoint.safetensors").string();
  metrics_path_ = (fs::path(settings_.out_dir) / "metrics.jsonl").string();
  // Only the file-writing process touches the output directory: the others (on other machines,
  // perhaps) take its state below.
  if (writer) {
    std::error_code ec;
    fs::create_directories(settings_.out_dir, ec);
    DF_CHECK(!ec && fs::is_directory(settings_.out_dir), "{}: cannot create the output directory '{}': {}", cmd,
             settings_.out_dir, ec ? ec.message() : "not a directory");
  }
  if (settings_.resume && writer) {
    DF_CHECK(fs::exists(checkpoint_path_), "{} --resume: no checkpoint at '{}'", cmd, checkpoint_path_);
    step_ = load_checkpoint(checkpoint_path_,
                            CheckpointParts{state_.model, state_.optimizer, state_.ema, state_.generators})
                .step;
  }
  if (settings_.sync) {
    std::vector<Generator*> generators;
    for (const auto& [name, gen] : state_.generators) generators.push_back(gen);
    settings_.sync->broadcast_state(all_state(), generators, step_);
  }
  DF_CHECK(step_ <= settings_.total_steps, "{} --resume: the checkpoint is at step {}, beyond train.steps = {}", cmd,
           step_, settings_.total_steps);
  if (writer) metrics_ = std::make_unique<MetricsLog>(metrics_path_, settings_.resume ? step_ : -1, cmd);
}

NamedTensors TrainingLoop::all_state() const {
  NamedTensors all = state_.model->state_dict();
  for (const auto& [name, t] : state_.optimizer->state()) all.emplace_back("optim." + name, t);
  if (state_.ema)
    for (const auto& [name, t] : state_.ema->state()) all.emplace_back("ema." + name, t);
  return all;
}

void TrainingLoop::save(const std::map<std::string, std::string>& metadata) {
  if (!settings_.role.writes_files()) return;
  CheckpointInfo info;
  info.step = step_;
  info.config = state_.config_text;
  info.metadata = metadata;
  save_checkpoint(checkpoint_path_, CheckpointParts{state_.model, state_.optimizer, state_.ema, state_.generators},
                  info);
  // The curves so far, redrawn beside each checkpoint. A picture that cannot be drawn (no step
  // logged yet) says so and never stops training.
  if (metrics_) {
    const std::string png = (std::filesystem::path(settings_.out_dir) / "metrics.png").string();
    try {
      save_metrics_png(png, {read_metrics_curves(metrics_path_)});
    } catch (const std::exception& e) {
      print_line(fmt::format("metrics.png not drawn: {}", e.what()));
    }
  }
}

void TrainingLoop::log(const std::string& record) {
  if (metrics_) metrics_->write(record);
}

void TrainingLoop::print_line(const std::string& line) const {
  if (settings_.quiet || !settings_.role.writes_files()) return;
  if (settings_.progress_line) fmt::print("\r{:<78}", line);
  else fmt::print("{}\n", line);
  std::fflush(stdout);
}

void TrainingLoop::stop_on_non_finite(const GradientStep& g, const StepOutcome& outcome) {
  namespace fs = std::filesystem;
  // Record the offending batch, keep the last good checkpoint, and stop with the step named.
  std::string report = g.non_finite_record(step_ + 1);
  for (const auto& [name, value] : outcome.inputs) {
    report += fmt::format(R"(,"{}_absmax":{})", name, json_number(absmax(value)));
    if (value.dim() == 1)
      report += fmt::format(R"(,"{}_min":{},"{}_max":{})", name, json_number(as_double(amin(value))), name,
                            json_number(as_double(amax(value))));
  }
  log(report + "}");
  // Every process stops here; the first to stop ends the others, so rank 0 writes first.
  if (settings_.sync) settings_.sync->wait_for_all();
  fail(
      "{}: step {}: the {} is {}; training stopped (lower optim.lr or set optim.grad_clip). The last good checkpoint "
      "is '{}'; the batch's statistics are in '{}'",
      settings_.command, step_ + 1, g.bad_quantity(), g.bad_value(),
      fs::exists(checkpoint_path_) ? checkpoint_path_ : "(none written yet)", metrics_path_);
}

LoopResult TrainingLoop::run(const std::function<StepOutcome(int64_t step)>& compute) {
  using clock = std::chrono::steady_clock;
  const LoopSettings& s = settings_;
  Optimizer& opt = *state_.optimizer;
  const auto started = clock::now();
  auto window_start = started;
  int64_t window_steps = 0;
  double window_loss = 0;
  std::vector<double> window_diagnostics;
  LoopResult result;
  g_stop_requested.store(false);
  // With several processes a stop request is acted on once every process knows of it (it
  // travels with the gradients), so all of them leave the loop after the same step.
  bool stop_agreed = false;
  std::vector<double> combined;  // the loss, the diagnostics and the stop flag, over all processes
  const bool distributed = s.sync && s.role.world_size > 1;
  double window_combine_start = s.sync ? s.sync->combine_seconds() : 0;
  while (step_ < s.total_steps) {
    if (s.sync ? stop_agreed : g_stop_requested.load()) {
      save();
      result.interrupted = true;
      if (!s.quiet && s.role.writes_files())
        fmt::print("{}stopped at step {}: checkpoint saved to {}\n", s.progress_line ? "\n" : "", step_,
                   checkpoint_path_);
      break;
    }
    opt.set_lr(s.schedule.lr_at(step_));
    const StepOutcome outcome = compute(step_);
    GradientCombiner combine;
    if (s.sync)
      combine = [&](double& loss) {
        combined.assign(1, loss);
        for (const auto& d : outcome.diagnostics) combined.push_back(as_double(d.second));
        combined.push_back(g_stop_requested.load() ? 1.0 : 0.0);
        s.sync->combine(state_.params, combined);
        loss = combined.front();
        stop_agreed = combined.back() > 0;
      };
    const GradientStep g = compute_gradients(outcome.loss, opt, state_.params, s.grad_clip, combine);
    auto diagnostic = [&](size_t i) { return s.sync ? combined[1 + i] : as_double(outcome.diagnostics[i].second); };
    if (!g.finite()) stop_on_non_finite(g, outcome);
    opt.step();
    ++step_;
    ++window_steps;
    if (state_.ema) state_.ema->update(step_);
    if (s.sync && s.sync->sync_check_every() > 0 && step_ % s.sync->sync_check_every() == 0)
      s.sync->check_in_sync(state_.params, step_);
    const bool log_now = step_ % s.log_every == 0 || step_ == s.total_steps;
    if (s.window_means) {
      window_loss += g.loss;
      window_diagnostics.resize(outcome.diagnostics.size(), 0.0);
      for (size_t i = 0; i < outcome.diagnostics.size(); ++i)
        window_diagnostics[i] += diagnostic(i);
    }
    if (log_now) {
      const auto now = clock::now();
      const double secs = std::chrono::duration<double>(now - window_start).count();
      const double its = secs > 0 ? double(window_steps) / secs : 0;
      const double loss = s.window_means ? window_loss / double(window_steps) : g.loss;
      std::string diagnostics_json, first_diagnostic;
      for (size_t i = 0; i < outcome.diagnostics.size(); ++i) {
        const auto& [name, value] = outcome.diagnostics[i];
        const double v = s.window_means ? window_diagnostics[i] / double(window_steps) : diagnostic(i);
        diagnostics_json += fmt::format(R"(,"{}":{})", name, json_number(v));
        if (first_diagnostic.empty()) first_diagnostic = fmt::format("  {} {:.5f}", name, v);
      }
      // With several processes: how many, and the gradient exchange's share of each step.
      std::string world_fields;
      if (distributed) {
        const double combine_now = s.sync->combine_seconds();
        world_fields = fmt::format(R"(,"world_size":{},"sync_ms":{:.3f})", s.role.world_size,
                                   1e3 * (combine_now - window_combine_start) / double(window_steps));
        window_combine_start = combine_now;
      }
      log(fmt::format(R"({{"step":{}{}{},"loss":{}{},"lr":{},"grad_norm":{},"it_per_s":{:.3f}}})", step_,
                      world_fields, s.extra_fields ? s.extra_fields(step_) : std::string(), json_number(loss), diagnostics_json,
                      json_number(opt.lr()), json_number(g.grad_norm), its));
      const double eta = its > 0 ? double(s.total_steps - step_) / its : 0;
      print_line(fmt::format("step {}/{}  loss {:.5f}{}  {:.1f} it/s  ETA {:.0f} s", step_, s.total_steps, loss,
                             first_diagnostic, its, eta));
      result.last_loss = loss;
      window_start = now;
      window_steps = 0;
      window_loss = 0;
      window_diagnostics.assign(window_diagnostics.size(), 0.0);
    }
    if (s.checkpoint_every > 0 && step_ % s.checkpoint_every == 0 && step_ < s.total_steps) save();
  }
  if (!result.interrupted && s.save_at_end) save();
  if (!s.quiet && s.progress_line && !result.interrupted) fmt::print("\n");
  result.steps_done = step_;
  result.train_seconds = std::chrono::duration<double>(clock::now() - started).count();
  return result;
}

}  // namespace dualflow
