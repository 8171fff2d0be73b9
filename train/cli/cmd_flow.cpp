// `dualflow train`, `dualflow sample` and `dualflow nll`: the command-line faces of the Flow
// Matching run in train/flow_run.h (option parsing and output files only).
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/ranges.h>

#include "engine/atomic_file.h"
#include "train/checkpoint.h"
#include "train/cli/commands.h"
#include "train/cli/progress_line.h"
#include "train/data2d.h"
#include "train/flow_run.h"
#include "train/json_text.h"
#include "train/likelihood.h"
#include "train/meanflow.h"
#include "train/memory_check.h"
#include "train/npy.h"
#include "train/parallel/data_parallel.h"
#include "train/plots.h"
#include "train/sample_distance.h"

namespace dualflow::cli {
namespace {

struct TrainArgs {
  std::string config;
  std::vector<std::string> overrides;
  std::string out;
  bool resume = false;
  bool help_config = false;
};

void run_train(const TrainArgs& a) {
  namespace fs = std::filesystem;
  if (a.help_config) {
    fmt::print("{}", flow_matching_schema().help());
    return;
  }
  DF_CHECK(!a.out.empty(), "train: --out DIR is required");
  RunConfig config(flow_matching_schema());
  if (!a.config.empty()) {
    config = load_config(a.config, a.overrides, flow_matching_schema());
  } else {
    // Resuming without a config file continues with the run's own recorded config.
    DF_CHECK(a.resume, "train: give a CONFIG.toml (or --resume DIR to continue a run with its recorded config)");
    const std::string ckpt = (fs::path(a.out) / "checkpoint.safetensors").string();
    CheckpointInfo info;
    // Rank 0 reads the checkpoint; the other ranks (perhaps on machines without the folder) get its config.
    const std::shared_ptr<ProcessGroup> group = ProcessGroup::join();
    if (group->rank() == 0) checkpoint_weights(ckpt, false, &info);
    uint64_t length = info.config.size();
    group->broadcast(&length, sizeof(length), 0);
    info.config.resize(length);
    group->broadcast(info.config.data(), length, 0);
    config = parse_config_text(info.config, ckpt + " (stored config)", a.overrides, flow_matching_schema());
  }
  install_stop_signal_handlers();
  TrainRunOptions o;
  o.out_dir = a.out;
  o.resume = a.resume;
  o.group = ProcessGroup::join();
  // mpirun forwards each rank's output line by line: plain log lines there.
  o.progress_line = isatty(STDOUT_FILENO) != 0 && !o.group->distributed();
  // A run refused before it writes anything (a device that does not exist, data that cannot be
  // read) leaves nothing behind: the directories it created for --out go again while empty.
  std::error_code ec;
  fs::path out = fs::absolute(a.out, ec).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "runs/x/"
  fs::path outermost_new;
  for (fs::path p = out; !ec && !p.empty() && !fs::exists(p, ec) && !ec; p = p.parent_path()) {
    outermost_new = p;
    if (p == p.parent_path()) break;
  }
  try {
    train_flow_matching(config, o);
  } catch (...) {
    // Innermost first, up to the outermost one this run created, stopping at one that holds anything.
    for (fs::path p = out; !outermost_new.empty(); p = p.parent_path())
      if (!fs::is_directory(p, ec) || !fs::is_empty(p, ec) || !fs::remove(p, ec) || p == outermost_new) break;
    throw;
  }
}

struct SampleArgs {
  std::string checkpoint, out;
  int64_t trajectories = 0;
  SampleChoices choices;  // unset options keep the run's settings (cfg < 0: its sample.cfg_scale)
};

void print_sample_distance(const std::string& data, const Tensor& samples, uint64_t seed) {
  const DistanceToData d = distance_to_data(data, samples, seed);
  fmt::print(
      "energy distance to {} {} points: {:.5f} (two independent data draws: {:.5f}; ratio {:.2f}; means of {} "
      "draws)\n",
      d.points, data, d.model, d.floor, d.ratio, d.draws);
}

// Draws the request into the .npy at `out` piece by piece (memory bounded by a piece), with a
// progress line when there is more than one piece. Returns the first rows: what the picture
// and the distance read.
DrawnSamples draw_streamed(const VelocityModel& model, const SampleRequest& request, int64_t piece,
                           const std::string& out) {
  const bool images = model.sample_shape.size() > 1;
  ProgressLine progress("sampled", request.n);
  return draw_samples_to_npy(model, request, piece, out, std::min<int64_t>(request.n, images ? 100 : 20000),
                             [&](int64_t done, int64_t n) {
                               if (n > piece) progress.update(done);
                             });
}

void run_sample(const SampleArgs& a) {
  namespace fs = std::filesystem;
  check_output_file(a.out, "sample --out");  // the .png goes beside it, in the same folder
  LoadedModel lm = load_model_from_checkpoint(a.checkpoint);
  DF_CHECK(a.trajectories == 0 || lm.spec.data.kind != DataKind::Images,
           "sample: --trajectories draws paths over 2-D samples; this checkpoint's data ({}) are images",
           lm.spec.data.name);
  DF_CHECK(a.choices.cfg < 0 || a.choices.cfg == 1.0 || lm.model.num_classes > 0,
           "sample: --cfg {} needs a class-conditional model; this checkpoint's model.classes is 0", a.choices.cfg);
  // The method's own sampler unless another of its samplers is asked for: a MeanFlow model
  // jumps in a few steps, every other model integrates its ODE.
  const std::vector<std::string> samplers = lm.model.method->samplers();
  const std::string sampler = a.choices.sampler.empty() ? samplers.front() : a.choices.sampler;
  DF_CHECK(std::find(samplers.begin(), samplers.end(), sampler) != samplers.end(),
           "sample: --method {}: this checkpoint was trained with method.name = \"{}\", whose models sample with {} "
           "(sample it with --method {})",
           sampler, lm.spec.method_name, fmt::join(samplers, " or "), samplers.front());
  const Method::Guidance guidance = lm.model.method->sampler_guidance(sampler);
  DF_CHECK(a.choices.cfg < 0 || a.choices.cfg == 1.0 || guidance != Method::Guidance::None,
           "sample: --cfg {}: guidance scales the ODE sampler (and iMF's own); the {} sampler's guidance is trained in "
           "(for MeanFlow, meanflow.guidance_*) and it takes none",
           a.choices.cfg, sampler);
  DF_CHECK(a.choices.cfg_interval.empty() || guidance == Method::Guidance::ScaleAndInterval,
           "sample: --cfg-interval: only iMF's own sampler takes a guidance interval; this is method \"{}\" with "
           "sampler {}",
           lm.spec.method_name, sampler);
  DF_CHECK(lm.model.num_classes > 0 || a.choices.cfg_interval.empty(),
           "sample: --cfg-interval needs a class-conditional model; this checkpoint's model.classes is 0");
  DF_CHECK(sampler == kOdeSampler || (a.choices.solver.empty() && a.choices.rtol == 0 && a.choices.atol == 0),
           "sample: --solver, --rtol and --atol choose the ODE solver; the {} sampler takes only --steps (add "
           "--method ode to integrate the model's velocity ODE instead)",
           sampler);
  SampleChoices choices = a.choices;
  choices.sampler = sampler;
  const bool images = lm.spec.data.kind == DataKind::Images;
  choices.chunk = images ? 500 : 0;
  const SampleRequest request = sample_request(lm.spec, lm.model, choices);
  // Under mpirun the processes draw a share each (on their own GPUs) and rank 0 writes the files.
  const std::shared_ptr<ProcessGroup> group = ProcessGroup::join();
  lm.model.module->to(rank_device(model_device(lm.model), *group));
  Shape out_shape = {request.n};
  for (int64_t d : lm.model.sample_shape) out_shape.push_back(d);
  // Refused before any sampling: an output the disk cannot hold, a piece the memory cannot.
  if (group->rank() == 0) {
    const double out_bytes = double(out_shape.numel()) * 4;
    const int64_t free = free_disk_bytes(a.out);
    DF_CHECK(free < 0 || out_bytes <= double(free), "sample: --n {} writes {} to '{}', but its folder has {} free",
             request.n, format_bytes(out_bytes), a.out, format_bytes(double(free)));
  }
  // Pieces: the request's chunks for images, 100,000 points for 2-D data (one piece for the
  // usual sizes, so adaptive solvers step as before).
  const int64_t piece = request.chunk > 0 ? request.chunk : std::min<int64_t>(request.n, 100000);
  const int64_t per_sample = network_bytes_per_sample(lm.model, false);
  check_memory_fits(fmt::format("sample --n {} (pieces of {})", request.n, piece), per_sample * piece * 2,
                    fmt::format("{} a sample for the network's forward pass, twice for the solver's state",
                                format_bytes(double(per_sample))),
                    model_device(lm.model));
  DrawnSamples drawn;
  if (group->distributed()) {
    drawn = draw_samples(lm.model, request, *group);
    if (group->rank() != 0) return;
    save_npy_f32(a.out, drawn.x);
  } else {
    drawn = draw_streamed(lm.model, request, piece, a.out);
  }
  const Tensor& x = drawn.x;
  std::string png = fs::path(a.out).replace_extension(".png").string();
  SampleTrajectories paths;
  if (a.trajectories > 0) paths = sample_trajectories(lm.model, request, std::min(a.trajectories, request.n));
  save_samples_picture(png, lm.spec, lm.model, drawn, paths.paths);
  fmt::print("{} samples from step {} with {} ({} NFE{}) -> {} and {}\n", request.n, lm.step, drawn.how, drawn.nfe,
             group->distributed() ? fmt::format(", drawn by {} processes", group->size()) : "", a.out, png);
  if (!images) print_sample_distance(lm.spec.data.name, x, a.choices.seed);
  if (a.trajectories > 0)
    fmt::print(
        "{} trajectories, {}, drawn over the samples; mean squared distance of their points from their chords: "
        "{:.5f}\n",
        paths.paths.size(0), paths.how, paths.chord_msd);
}

struct NllArgs {
  std::string checkpoint, out, divergence = "exact", solver;
  int64_t n = 1000, steps = 0, probes = 1;
  double rtol = 0, atol = 0;
  uint64_t seed = 1;
};

void run_nll(const NllArgs& a) {
  check_output_file(a.out, "nll --out");
  LoadedModel lm = load_model_from_checkpoint(a.checkpoint);
  DF_CHECK(lm.model.source == kGaussianSource,
           "nll: {} flows from data.source = \"{}\", a set of points with no density to start the likelihood from; nll "
           "needs a model that starts from the Gaussian",
           a.checkpoint, lm.model.source);
  const Device dev = model_device(lm.model);
  Generator data_gen(a.seed), probe_gen(a.seed + 1);
  const std::string data = lm.spec.data.name;
  Tensor x = sample_2d(data, a.n, data_gen, TensorOptions(DType::f32, dev));
  LikelihoodOptions o;
  o.ode = ode_options_with(lm.spec.sample.ode, a.solver.empty() ? "dopri5" : a.solver, a.steps, a.rtol, a.atol);
  o.divergence = parse_divergence_method(a.divergence);
  DF_CHECK(a.probes == 1 || o.divergence == DivergenceMethod::Hutchinson,
           "nll: --probes {} asks for several Hutchinson probes, but --divergence is {}; pass --divergence hutchinson",
           a.probes, a.divergence);
  o.probes = a.probes;
  o.t_data = lm.model.t_end;
  o.prior_std = lm.model.source_std;
  const VelocityNet net = lm.model.net;
  VelocityField field = velocity_field(net);
  NoGradGuard ng;
  LikelihoodResult r = cnf_log_likelihood(field, x, o, probe_gen);
  auto ll = r.log_likelihood.to(DType::f64).to_vector<double>();
  double mean = 0, sq = 0;
  for (double v : ll) mean += v / double(ll.size());
  for (double v : ll) sq += (v - mean) * (v - mean);
  const double stderr_ = std::sqrt(sq / double(ll.size() - 1) / double(ll.size()));
  std::string json = fmt::format(
      R"({{"checkpoint":{},"step":{},"dataset":{},"n":{},"divergence":{},"probes":{},"solver":{},"nll_mean":{},"nll_stderr":{},"nfe":{}}})",
      json_string(a.checkpoint), lm.step, json_string(data), a.n, json_string(a.divergence), a.probes,
      json_string(ode_method_name(o.ode.method)), json_number(-mean), json_number(stderr_), r.nfe);
  write_file_atomically(a.out, json + "\n", "nll");
  fmt::print("NLL {:.4f} ± {:.4f} nats over {} {} points ({} divergence, {} NFE) -> {}\n", -mean, stderr_, a.n, data,
             a.divergence, r.nfe, a.out);
}

}  // namespace

void add_flow_commands(CLI::App& app) {
  auto ta = std::make_shared<TrainArgs>();
  auto* train = app.add_subcommand("train", "Train a flow-matching model from a TOML config");
  train->add_option("config", ta->config, "run configuration (TOML); see --help-config")->check(CLI::ExistingFile);
  train->add_option("--set", ta->overrides, "override a config key: --set optim.lr=3e-4 (repeatable)");
  train->add_option("--out", ta->out, "output directory (checkpoint, metrics.jsonl, samples.png)");
  train->add_flag("--resume", ta->resume, "continue the run in --out from its checkpoint");
  train->add_flag("--help-config", ta->help_config, "list every config key with its type, default and meaning");
  train->callback([ta] { run_train(*ta); });

  auto sa = std::make_shared<SampleArgs>();
  auto* sample = app.add_subcommand("sample", "Draw samples from a trained checkpoint");
  sample->add_option("--checkpoint", sa->checkpoint, "checkpoint.safetensors of a run")
      ->required()
      ->check(CLI::ExistingFile);
  sample->add_option("--out", sa->out, "output .npy file (a .png beside it for 2-D data)")->required();
  sample->add_option(
      "--method", sa->choices.sampler,
      "a sampler of the checkpoint's method: ode (integrate its velocity ODE; for a MeanFlow model the "
      "instantaneous velocity's) or the method's own (meanflow or imf: jumps of the average velocity, the "
      "default for those checkpoints)");
  sample->add_option("--solver", sa->choices.solver,
                     "euler, midpoint, heun, rk4 or dopri5 (rk45 names dopri5 too; default: the run's sample.solver)");
  sample
      ->add_option("--steps", sa->choices.steps,
                   "steps of a fixed-step solver, or MeanFlow steps on a uniform grid from t = 1 to 0 (default: the "
                   "run's meanflow.sample_steps or imf.sample_steps)")
      ->check(positive_integer());
  sample->add_option("--rtol", sa->choices.rtol, "dopri5 relative tolerance")->check(positive_number());
  sample->add_option("--atol", sa->choices.atol, "dopri5 absolute tolerance")->check(positive_number());
  sample->add_option("--n", sa->choices.n, "number of samples (default: the run's sample.n)")
      ->check(positive_integer());
  sample->add_option("--seed", sa->choices.seed, "noise seed")->capture_default_str()->check(non_negative_integer());
  sample
      ->add_option("--trajectories", sa->trajectories,
                   "2-D data: draw the paths of the first K samples over them (through the ODE, or noise to sample "
                   "for MeanFlow jumps) and print how far they bend from straight")
      ->check(positive_integer());
  sample
      ->add_option("--cfg", sa->choices.cfg,
                   "classifier-free guidance scale of a class-conditional flow (default: the run's sample.cfg_scale)")
      ->check(non_negative_number());
  sample
      ->add_option("--cfg-interval", sa->choices.cfg_interval,
                   "T_MIN T_MAX: iMF's guidance interval (t = 1 is noise; default: the run's sample.cfg_t_min/max)")
      ->expected(2)
      ->check(CLI::Range(0.0, 1.0));
  sample->callback([sa] { run_sample(*sa); });

  auto na = std::make_shared<NllArgs>();
  auto* nll = app.add_subcommand("nll", "Negative log-likelihood of held-out data under a checkpoint");
  nll->add_option("--checkpoint", na->checkpoint, "checkpoint.safetensors of a run")
      ->required()
      ->check(CLI::ExistingFile);
  nll->add_option("--out", na->out, "output JSON file")->required();
  nll->add_option("--divergence", na->divergence, "exact or hutchinson")->capture_default_str();
  nll->add_option("--n", na->n, "number of data points")->capture_default_str()->check(positive_integer());
  nll->add_option("--probes", na->probes, "Hutchinson probes per point, averaged (one primal pass for all)")
      ->capture_default_str()
      ->check(positive_integer());
  nll->add_option("--solver", na->solver, "ODE solver (default dopri5)");
  nll->add_option("--steps", na->steps, "steps of a fixed-step solver")->check(positive_integer());
  nll->add_option("--rtol", na->rtol, "dopri5 relative tolerance")->check(positive_number());
  nll->add_option("--atol", na->atol, "dopri5 absolute tolerance")->check(positive_number());
  nll->add_option("--seed", na->seed, "seed of the data points and probes")
      ->capture_default_str()
      ->check(non_negative_integer());
  nll->callback([na] { run_nll(*na); });
}

}  // namespace dualflow::cli
