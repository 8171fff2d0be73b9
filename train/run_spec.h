// The run spec of `dualflow train`, `sample`, `nll` and `eval`: a TOML config plus `--set`
// overrides, checked against the schema and parsed once into typed structs. The schema is the
// common sections below plus the keys each registered network (train/networks/) and method
// (train/methods/) declares, and its choice lists come from those registries. Nothing outside
// this parse reads the config bag: a network's or a method's own keys are parsed by its
// registry entry into its own typed settings, which the spec carries.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/dualflow.h"
#include "models/velocity_network.h"
#include "train/config.h"
#include "train/couplings.h"
#include "train/optim.h"
#include "train/paths.h"
#include "train/solvers.h"

namespace dualflow {

class Method;

struct RunSettings {
  uint64_t seed = 0;
  Device device = Device::cpu();  // checked against the backends when parsed
  int threads = 0;                // CPU worker threads; 0 keeps all cores
  int64_t sync_check_every = 0;   // data-parallel runs: steps between parameter checksums (flow runs)
};

enum class DataKind { Points2D, Images };

// data.source's default: flows start from the Gaussian N(0, I) (or the path's own source).
inline constexpr const char* kGaussianSource = "gaussian";

struct DataSpec {
  std::string name;  // a 2-D set of data2d.h, or an image set
  std::string source = kGaussianSource;  // or a 2-D set of data2d.h: a data-to-data flow
  DataKind kind = DataKind::Points2D;
  std::string path;  // folder of an image set's IDX files
  bool hflip = false;
  int64_t limit = 0;    // images of the training split used; 0: all
  Shape sample_shape;   // one sample without the batch dim: {2} or {1, 28, 28}
  int64_t classes = 0;  // labels the set carries: 0 for 2-D sets
};

// Builds the configured network with its initial weights drawn from `init`.
using NetworkBuilder = std::function<std::shared_ptr<VelocityNetwork>(Generator& init)>;

struct ModelSpec {
  std::string kind;     // a name of the network registry
  int64_t classes = 0;  // labels conditioned on; 0: unconditional
  double time_scale = 1000;
  NetworkBuilder build;  // the registry entry's builder, its own keys already parsed
};

// The probability path from noise (t = 0) to data (t = t_max) and how a batch pairs them.
// method.path = "curved2d": the notes' curved 2-D path (paths.h's CurvedPath2D), which bends
// off the straight CondOT line by curve_amplitude * t (1 - t) perpendicular to x1 - x0.
inline constexpr const char* kCurvedPath = "curved2d";

struct PathSpec {
  std::string scheduler;  // a name of paths.h's scheduler registry (condot, vp, ...) or kCurvedPath
  PathParams params;      // the scheduler's parameters from the method.* keys
  double curve_amplitude = 1.0;  // kCurvedPath's bend
  double t_max = 1.0;
  std::string coupling;  // a name of couplings.h's registry (independent, exact_ot, ...)
  double sinkhorn_reg = 0.05;
  double class_dropout = 0.1;

  bool curved() const { return scheduler == kCurvedPath; }
  // The affine path of the scheduler; refused for the curved path, which is not affine.
  std::shared_ptr<AffinePath> affine_path() const;
  // The path conditional flow matching trains on: the affine path, or the curved one.
  std::shared_ptr<ProbabilityPath> flow_path() const;
  std::shared_ptr<Coupling> make_coupling() const;  // the configured coupling with its parameters
};

struct OptimSpec {
  OptimizerOptions optimizer;
  LrSchedule schedule;
  double grad_clip = 0;  // 0: no clipping
  double ema_decay = 0;  // 0: no EMA
};

struct TrainSpec {
  int64_t steps = 0, batch = 0, log_every = 0, checkpoint_every = 0, sample_every = 0;
};

struct SampleSpec {
  OdeOptions ode;
  int64_t n = 0;
  double cfg_scale = 1.0;
  double cfg_t_min = 0.0, cfg_t_max = 1.0;  // iMF's guidance interval at sampling
};

struct FlowRunSpec {
  explicit FlowRunSpec(RunConfig resolved) : config(std::move(resolved)) {}
  RunConfig config;  // the resolved values, recorded in checkpoints; read by nothing else
  RunSettings run;
  DataSpec data;
  ModelSpec model;
  PathSpec path;
  OptimSpec optim;
  TrainSpec train;
  SampleSpec sample;
  std::shared_ptr<const Method> method;  // configured with its own section
  std::string method_name;
};

// Parses and checks a resolved config (errors name the keys, what they allow and what was given).
FlowRunSpec parse_flow_run_spec(const RunConfig& config);

// The schema of `dualflow train`: run, data, model (plus each network's keys), method (plus
// each method's section), optim, train, sample. Built from the registries at each call, so a
// network or method registered by a program appears in it.
ConfigSchema flow_matching_schema();

// The keys every training run shares, with the defaults of its kind of run: run.seed,
// run.device, run.threads, and optim.* (without optim.ema_decay, which flow runs add).
void add_run_keys(ConfigSchema& schema, const char* seed_help);
struct OptimizerDefaults {
  const char* name;
  double lr, weight_decay;
  int64_t warmup_steps;
  const char* schedule;
};
void add_optimizer_keys(ConfigSchema& schema, const OptimizerDefaults& defaults);
// The optimizer, its schedule over `total_steps` and clipping from the optim.* keys.
OptimSpec parse_optimizer_keys(const RunConfig& config, int64_t total_steps);
// run.seed, run.device (checked), run.threads.
RunSettings parse_run_keys(const RunConfig& config);

// `base` with the solver choices of a command line applied: an empty solver or a 0 keeps the
// base's value.
OdeOptions ode_options_with(const OdeOptions& base, const std::string& solver, int64_t steps, double rtol, double atol);

// The coupling's parameters from the method.* keys (sinkhorn: reg; sb: sigma = sqrt(reg / 2)).
CouplingParams coupling_params(const PathSpec& path);

}  // namespace dualflow
