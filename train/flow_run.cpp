// Training a flow run and loading its checkpoints (see flow_run.h).
#include "train/flow_run.h"

#include <fmt/format.h>

#include <filesystem>

#include "engine/threads.h"
#include "train/memory_check.h"
#include "train/parallel/data_parallel.h"
#include "train/plots.h"

namespace dualflow {
namespace {

// Above this model.time_scale a MeanFlow-type run gets a note. The shipped ones use 10; the 2-D
// MeanFlow's one-step energy-distance ratio was 130 at 1000, 12.5 at 100 and 1.3 at 10.
constexpr double kSlowTimeScaleLimit = 30.0;

}  // namespace

TrainRunResult train_flow_matching(const RunConfig& config, const TrainRunOptions& options) {
  return train_flow_matching(parse_flow_run_spec(config), options);
}

TrainRunResult train_flow_matching(const FlowRunSpec& configured, const TrainRunOptions& o) {
  namespace fs = std::filesystem;
  DF_CHECK(!o.out_dir.empty(), "train: an output directory is required (--out DIR)");
  const bool distributed = o.group && o.group->distributed();
  FlowRunSpec spec = configured;
  if (distributed) spec.run.device = rank_device(spec.run.device, *o.group);
  if (spec.run.threads > 0) set_cpu_threads(spec.run.threads);
  const uint64_t seed = spec.run.seed;
  Generator init_gen(seed), data_gen(seed + 0x9E3779B97F4A7C15ull);
  VelocityModel vm = build_velocity_model(spec, init_gen);
  vm.module->to(spec.run.device);
  const TensorOptions f32(DType::f32, spec.run.device);
  std::shared_ptr<DataParallel> data_parallel;
  if (distributed)
    data_parallel = std::make_shared<DataParallel>(
        o.group, spec.run.device, DataParallelOptions{spec.train.batch, spec.run.sync_check_every});
  const ProcessRole role = data_parallel ? data_parallel->role() : ProcessRole{};
  {  // A batch that cannot fit is refused before anything is written.
    const int64_t world = distributed ? o.group->size() : 1, rows = (spec.train.batch + world - 1) / world;
    const int64_t per_sample = network_bytes_per_sample(vm, true);
    check_memory_fits(fmt::format("train.batch = {}", spec.train.batch), per_sample * rows,
                      fmt::format("{} a sample for the network's forward and backward pass, measured on two batch sizes{}",
                                  format_bytes(double(per_sample)),
                                  world > 1 ? fmt::format(", {} rows on each of {} processes", rows, world) : ""),
                      spec.run.device);
  }
  const bool quiet = o.quiet || !role.writes_files();
  // The objective comes before the optimizer and the EMA: a method may load starting weights.
  const Objective objective = spec.method->objective(TrainingSetup{
      spec, vm, data_gen, f32, o.resume, quiet, data_parallel ? data_parallel->shard() : BatchShard{}});
  // The methods whose network takes the interval h = t - r (MeanFlow, iMF) differentiate it
  // along t, and that derivative follows the time embedding's fastest frequency: at the
  // default scale the target is mostly that oscillation (configs/toy2d_meanflow.toml).
  if (!quiet && spec.method->network_takes_interval() && spec.model.time_scale > kSlowTimeScaleLimit)
    fmt::print("note: model.time_scale = {} with method.name = \"{}\": this method's target differentiates the "
               "network along t, which grows with the time embedding's frequencies; the shipped MeanFlow and iMF "
               "configs use model.time_scale = 10\n",
               spec.model.time_scale, spec.method_name);
  if (data_parallel && !quiet)
    fmt::print("training on {} processes ({} each), gradients combined by {}\n", role.world_size,
               spec.run.device.str(), data_parallel->transport());

  const NamedTensors params = vm.module->named_parameters();
  std::unique_ptr<Optimizer> opt = make_optimizer(params, spec.optim.optimizer);
  std::unique_ptr<Ema> ema;
  // With warmup the average forgets the initial weights quickly (decay (1 + s) / (10 + s) early
  // on); a plain 0.999 average still holds 22% of the initialisation after 1500 steps.
  if (spec.optim.ema_decay > 0)
    ema = std::make_unique<Ema>(params, EmaOptions{.decay = spec.optim.ema_decay, .warmup = true});

  LoopSettings ls;
  ls.command = "train";
  ls.out_dir = o.out_dir;
  ls.resume = o.resume;
  ls.progress_line = o.progress_line;
  ls.quiet = o.quiet;
  ls.total_steps = spec.train.steps;
  ls.log_every = spec.train.log_every;
  ls.checkpoint_every = spec.train.checkpoint_every;
  ls.grad_clip = spec.optim.grad_clip;
  ls.schedule = spec.optim.schedule;
  ls.sync = data_parallel;
  TrainingLoop loop(
      ls, LoopState{vm.module.get(), opt.get(), ema.get(), {{"data", &data_gen}}, params, spec.config.to_toml()});
  const LoopResult r = loop.run([&](int64_t step) { return objective(data_gen, step); });

  TrainRunResult result{r.steps_done, r.interrupted, r.last_loss};
  if (r.interrupted) return result;
  // Samples from the evaluation (EMA) weights, drawn by every process; rank 0 draws the picture.
  if (ema) ema->swap();
  const bool images = spec.data.kind == DataKind::Images;
  SampleChoices choices;
  choices.n = images ? 100 : 0;
  choices.seed = seed + 7;
  const SampleRequest request = sample_request(spec, vm, choices);
  const DrawnSamples drawn =
      distributed ? draw_samples(vm, request, *o.group) : draw_samples(vm, request);
  if (ema) ema->swap();
  if (!role.writes_files()) return result;
  const std::string png = (fs::path(o.out_dir) / "samples.png").string();
  save_samples_picture(png, spec, vm, drawn);
  if (!o.quiet)
    fmt::print("trained {} steps in {:.1f} s; checkpoint {}; samples {} ({} NFE)\n", r.steps_done, r.train_seconds,
               loop.checkpoint_path(), png, drawn.nfe);
  return result;
}

LoadedModel load_model_from_checkpoint(const std::string& path) {
  CheckpointInfo info;
  NamedTensors weights = checkpoint_weights(path, true, &info);
  DF_CHECK(!info.config.empty(), "checkpoint {}: holds no run config (metadata 'dualflow.config' is empty)", path);
  LoadedModel lm{
      parse_flow_run_spec(parse_config_text(info.config, path + " (stored config)", {}, flow_matching_schema())),
      {},
      info.step};
  Generator init(0);
  lm.model = build_velocity_model(lm.spec, init);
  lm.model.module->load_state_dict(weights);
  lm.model.module->eval();
  lm.model.module->to(lm.spec.run.device);
  return lm;
}

}  // namespace dualflow
