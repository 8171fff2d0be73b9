// The run spec: the schema of `dualflow train` assembled from the registries, and the one
// parse of a resolved config into typed structs (see run_spec.h).
#include "train/run_spec.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "train/couplings.h"
#include "train/data2d.h"
#include "train/methods/method.h"
#include "train/networks/network_registry.h"

namespace dualflow {

namespace {

// MNIST-like sets: 28 x 28 grey images of 10 classes (checked when the files are read).
const std::vector<std::string> kImageSets = {"fashion_mnist", "mnist"};
constexpr int64_t kImageSize = 28, kImageClasses = 10;

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

void add_data_keys(ConfigSchema& s) {
  std::vector<std::string> sets = dataset_2d_names();
  sets.insert(sets.end(), kImageSets.begin(), kImageSets.end());
  s.add_string("data.name", "checkerboard", "training distribution: a 2-D toy density or an image set").one_of(sets);
  s.add_string("data.path", "/usr/share/datasets/fashion-mnist",
               "folder of the image set's IDX files (fashion_mnist, mnist)");
  std::vector<std::string> sources = {kGaussianSource};
  for (const std::string& name : dataset_2d_names()) sources.push_back(name);
  s.add_string("data.source", kGaussianSource,
               "what the flow starts from: gaussian (N(0, I), or the path's own source) or a 2-D dataset, for a "
               "data-to-data flow (2-D data, method cfm on the condot or curved2d path)")
      .one_of(sources);
  s.add_bool("data.hflip", false, "mirror each training image left-right with probability 1/2 (image sets)");
  s.add_int("data.limit", 0, "train on the first N images only; 0 uses the whole training split").at_least(0);
}

DataSpec parse_data(const RunConfig& c) {
  DataSpec d;
  d.name = c.get_string("data.name");
  d.source = c.get_string("data.source");
  d.path = c.get_string("data.path");
  d.hflip = c.get_bool("data.hflip");
  d.limit = c.get_int("data.limit");
  if (contains(kImageSets, d.name)) {
    d.kind = DataKind::Images;
    d.sample_shape = {1, kImageSize, kImageSize};
    d.classes = kImageClasses;
  } else {
    DF_CHECK(contains(dataset_2d_names(), d.name),
             "data.name = \"{}\": expected a 2-D dataset ({}) or an image set ({})", d.name,
             fmt::join(dataset_2d_names(), ", "), fmt::join(kImageSets, ", "));
    d.kind = DataKind::Points2D;
    d.sample_shape = {2};
  }
  return d;
}

void add_model_keys(ConfigSchema& s) {
  std::vector<std::string> kinds;
  std::string described;
  for (const NetworkEntry& n : network_registry()) {
    kinds.push_back(n.kind);
    described += fmt::format("{}{} ({})", described.empty() ? "" : ", ", n.kind, n.description);
  }
  s.add_string("model.kind", kinds.front(), "velocity network: " + described).one_of(kinds);
  // The time embedding's frequency scale (a = time_scale * t * freqs). 1000 is the toy2d network
  // of docs/BENCHMARKS.md; MeanFlow runs use a smaller scale because its target differentiates
  // the network along t (see configs/toy2d_meanflow.toml).
  s.add_float("model.time_scale", 1000.0,
              "frequency scale of every network's sinusoidal time embedding (a = scale * t * freqs)")
      .greater_than(0);
  s.add_int("model.classes", 0, "number of class labels to condition on; 0 trains unconditionally").at_least(0);
  for (const NetworkEntry& n : network_registry())
    if (n.add_keys) n.add_keys(s);
}

// Which networks fit a kind of data, for messages: "mlp (the MLP velocity network)".
std::string networks_for(DataKind kind) {
  std::vector<std::string> fits;
  for (const NetworkEntry& n : network_registry())
    if (n.data_kind == kind) fits.push_back(fmt::format("\"{}\" ({})", n.kind, n.description));
  return fmt::format("{}", fmt::join(fits, " or "));
}

ModelSpec parse_model(const RunConfig& c, const DataSpec& data, const Method& method) {
  ModelSpec m;
  m.kind = c.get_string("model.kind");
  m.classes = c.get_int("model.classes");
  m.time_scale = c.get_float("model.time_scale");
  const NetworkEntry& network = find_network(m.kind);
  if (data.kind == DataKind::Points2D) {
    DF_CHECK(network.data_kind == DataKind::Points2D,
             "model.kind = \"{}\": 2-D data ({}) trains {}; set model.kind to it", m.kind, data.name,
             networks_for(DataKind::Points2D));
    DF_CHECK(m.classes == 0, "model.classes = {}: the 2-D datasets have no class labels; set model.classes = 0",
             m.classes);
  } else {
    DF_CHECK(network.data_kind == DataKind::Images, "model.kind = \"{}\": image data ({}) trains {}", m.kind, data.name,
             networks_for(DataKind::Images));
    DF_CHECK(m.classes == 0 || m.classes == data.classes,
             "model.classes = {}: {} has {} classes; set model.classes = {} (class-conditional) or 0", m.classes,
             data.name, data.classes, data.classes);
  }
  NetworkContext context{data, m.classes, method.network_takes_interval(), m.time_scale, method.network_conditions(),
                         method.network_heads()};
  m.build = network.parse(c, context);
  return m;
}

void add_path_keys(ConfigSchema& s) {
  std::vector<std::string> paths = scheduler_names();
  paths.push_back(kCurvedPath);
  s.add_string("method.path", "condot", "probability path from noise to data (curved2d: 2-D data, method cfm)")
      .one_of(paths);
  s.add_float("method.curve_amplitude", 1.0,
              "bend of the curved2d path: x_t leaves the straight line by amplitude * t (1 - t) sideways")
      .at_least(0);
  s.add_float("method.sigma_min", 0.0, "noise left at the data end of the CondOT path").at_least(0);
  s.add_float("method.vp_beta_min", 0.1, "beta_min of the VP path").greater_than(0);
  s.add_float("method.vp_beta_max", 20.0, "beta_max of the VP path").greater_than(0);
  s.add_float("method.ve_sigma_min", 0.01, "noise level of the VE path at the data end").greater_than(0);
  s.add_float("method.ve_sigma_max", 50.0,
              "noise level of the VE path at the noise end (its source is N(0, sigma_max^2 I))")
      .greater_than(0);
  s.add_float("method.poly_n", 2.0, "exponent n of the polynomial path alpha_t = t^n").greater_than(0);
  s.add_float("method.t_max", 1.0,
              "the data end of time: train on t in [0, t_max] and sample up to it; set it just below 1 for the VP "
              "path, whose velocity is singular at t = 1")
      .greater_than(0)
      .at_most(1);
  s.add_string("method.coupling", "independent", "how noise and data are paired within a batch")
      .one_of(coupling_names());
  s.add_float("method.sinkhorn_reg", 0.05, "entropic regularisation of the sinkhorn and sb couplings").greater_than(0);
  s.add_float("method.class_dropout", 0.1, "probability of dropping the label, for classifier-free guidance")
      .at_least(0)
      .at_most(1);
}

// The scheduler's parameters live under method.*: each scheduler takes its own keys.
PathParams scheduler_params(const RunConfig& c, const std::string& scheduler) {
  if (scheduler == "condot") return {{"sigma_min", c.get_float("method.sigma_min")}};
  if (scheduler == "vp")
    return {{"beta_min", c.get_float("method.vp_beta_min")}, {"beta_max", c.get_float("method.vp_beta_max")}};
  if (scheduler == "ve")
    return {{"sigma_min", c.get_float("method.ve_sigma_min")}, {"sigma_max", c.get_float("method.ve_sigma_max")}};
  if (scheduler == "polynomial") return {{"n", c.get_float("method.poly_n")}};
  return {};
}

PathSpec parse_path(const RunConfig& c) {
  PathSpec p;
  p.scheduler = c.get_string("method.path");
  p.params = scheduler_params(c, p.scheduler);
  p.curve_amplitude = c.get_float("method.curve_amplitude");
  p.t_max = c.get_float("method.t_max");
  p.coupling = c.get_string("method.coupling");
  p.sinkhorn_reg = c.get_float("method.sinkhorn_reg");
  p.class_dropout = c.get_float("method.class_dropout");
  return p;
}

void add_train_keys(ConfigSchema& s) {
  s.add_int("train.steps", 10000, "optimizer steps to train for").at_least(1);
  s.add_int("train.batch", 1024, "samples per step").at_least(1);
  s.add_int("train.log_every", 100, "steps between metric lines").at_least(1);
  s.add_int("train.checkpoint_every", 1000, "steps between checkpoints; 0 writes one at the end only").at_least(0);
  s.add_int("train.sample_every", 0, "steps between sample plots; 0 turns them off").at_least(0);
}

void add_sample_keys(ConfigSchema& s) {
  s.add_string("sample.solver", "euler", "ODE solver from noise to data; dopri5 (also named rk45) is adaptive")
      .one_of(ode_method_names());
  s.add_int("sample.steps", 100, "steps of the fixed-step solvers").at_least(1);
  s.add_float("sample.rtol", 1e-5, "relative tolerance of dopri5").greater_than(0);
  s.add_float("sample.atol", 1e-5, "absolute tolerance of dopri5").greater_than(0);
  s.add_int("sample.n", 2000, "number of samples to draw").at_least(1);
  s.add_float("sample.cfg_scale", 1.0, "classifier-free guidance scale; 1 is the conditional model alone").at_least(0);
  s.add_float("sample.cfg_t_min", 0.0, "iMF: guidance applies to times t in [cfg_t_min, cfg_t_max] (t = 1 is noise)")
      .at_least(0)
      .at_most(1);
  s.add_float("sample.cfg_t_max", 1.0, "iMF: guidance applies to times t in [cfg_t_min, cfg_t_max] (t = 1 is noise)")
      .at_least(0)
      .at_most(1);
}

}  // namespace

std::shared_ptr<AffinePath> PathSpec::affine_path() const {
  DF_CHECK(!curved(), "method.path = \"{}\" is not an affine path; this needs one of {}", scheduler,
           fmt::join(scheduler_names(), ", "));
  return make_affine_path(scheduler, params);
}
std::shared_ptr<ProbabilityPath> PathSpec::flow_path() const {
  if (curved()) return std::make_shared<CurvedPath2D>(curve_amplitude);
  return affine_path();
}
std::shared_ptr<Coupling> PathSpec::make_coupling() const {
  return ::dualflow::make_coupling(coupling, coupling_params(*this));
}

void add_run_keys(ConfigSchema& s, const char* seed_help) {
  s.add_int("run.seed", 0, seed_help).at_least(0);
  s.add_string("run.device", "cpu", "where to run: cpu, cuda or cuda:N");
  s.add_int("run.threads", 0, "CPU worker threads; 0 uses all cores").at_least(0);
}

RunSettings parse_run_keys(const RunConfig& c) {
  RunSettings r;
  r.seed = uint64_t(c.get_int("run.seed"));
  r.device = Device::parse(c.get_string("run.device"));
  check_device(r.device);  // a clear error when the device does not exist
  r.threads = int(c.get_int("run.threads"));
  return r;
}

void add_optimizer_keys(ConfigSchema& s, const OptimizerDefaults& d) {
  s.add_string("optim.name", d.name, "optimizer").one_of(optimizer_names());
  s.add_float("optim.lr", d.lr, "peak learning rate (reached after warmup)").greater_than(0);
  s.add_float("optim.weight_decay", d.weight_decay, "L2 (sgd, adam) or decoupled (adamw) weight decay").at_least(0);
  s.add_float("optim.beta1", 0.9, "Adam first-moment decay; SGD momentum").at_least(0).less_than(1);
  s.add_float("optim.beta2", 0.999, "Adam second-moment decay").at_least(0).less_than(1);
  s.add_float("optim.grad_clip", 0.0, "clip the global gradient norm to this; 0 turns clipping off").at_least(0);
  s.add_int("optim.warmup_steps", d.warmup_steps, "steps of linear learning-rate warmup from 0").at_least(0);
  s.add_string("optim.schedule", d.schedule,
               "learning rate after warmup: constant, or cosine decay to 0 at train.steps")
      .one_of({"constant", "cosine"});
}

OptimSpec parse_optimizer_keys(const RunConfig& c, int64_t total_steps) {
  OptimSpec o;
  o.optimizer.name = c.get_string("optim.name");
  o.optimizer.lr = c.get_float("optim.lr");
  o.optimizer.weight_decay = c.get_float("optim.weight_decay");
  // optim.beta1 is Adam's first-moment decay and SGD's momentum, as the schema says.
  if (o.optimizer.name == "sgd") {
    o.optimizer.momentum = c.get_float("optim.beta1");
  } else {
    o.optimizer.beta1 = c.get_float("optim.beta1");
    o.optimizer.beta2 = c.get_float("optim.beta2");
  }
  o.grad_clip = c.get_float("optim.grad_clip");
  o.schedule.base_lr = o.optimizer.lr;
  o.schedule.warmup_steps = c.get_int("optim.warmup_steps");
  o.schedule.kind = LrSchedule::parse_kind(c.get_string("optim.schedule"));
  o.schedule.total_steps = total_steps;
  o.schedule.validate();
  return o;
}

OdeOptions ode_options_with(const OdeOptions& base, const std::string& solver, int64_t steps, double rtol,
                            double atol) {
  OdeOptions o = base;
  if (!solver.empty()) o.method = parse_ode_method(solver);
  if (steps > 0) o.steps = steps;
  if (rtol > 0) o.rtol = rtol;
  if (atol > 0) o.atol = atol;
  return o;
}

ConfigSchema flow_matching_schema() {
  ConfigSchema s;
  add_run_keys(s, "seed of every random stream (data, init, noise, time samples)");
  s.add_int("run.sync_check_every", 100,
            "under mpirun: compare a checksum of every rank's parameters every this many steps and stop when they "
            "differ; 0 turns the check off")
      .at_least(0);
  add_data_keys(s);
  add_model_keys(s);
  std::vector<std::string> methods;
  std::string described;
  for (const MethodEntry& m : method_registry()) {
    methods.push_back(m.name);
    described += fmt::format("{}{} ({})", described.empty() ? "" : ", ", m.name, m.description);
  }
  s.add_string("method.name", methods.front(), "training objective: " + described).one_of(methods);
  add_path_keys(s);
  for (const MethodEntry& m : method_registry())
    if (m.add_keys) m.add_keys(s);
  add_optimizer_keys(s, {"adam", 1e-3, 0.0, 0, "constant"});
  s.add_float("optim.ema_decay", 0.999, "decay of the weights' exponential moving average; 0 keeps no EMA")
      .at_least(0)
      .less_than(1);
  add_train_keys(s);
  add_sample_keys(s);
  return s;
}

FlowRunSpec parse_flow_run_spec(const RunConfig& c) {
  FlowRunSpec spec(c);
  spec.data = parse_data(c);
  spec.path = parse_path(c);
  spec.method_name = c.get_string("method.name");
  const MethodEntry& method = find_method(spec.method_name);
  // Checks that need only the data and the labels come first, then the method's own.
  const int64_t classes = c.get_int("model.classes");
  if (classes > 0) {
    DF_CHECK(method.takes_class_labels,
             "method.name = \"{}\" trains unconditional models only; set model.classes = 0 (or use {})",
             spec.method_name, fmt::join(methods_taking_labels(), " / "));
    // Labels ride with the data rows; couplings that resample or reorder data rows would need
    // them carried along.
    DF_CHECK(spec.path.make_coupling()->keeps_first_in_order(),
             "method.coupling = \"{}\": a class-conditional run pairs noise with labelled data by the independent or "
             "the exact_ot coupling, which keep each image with its label",
             spec.path.coupling);
  }
  spec.train.steps = c.get_int("train.steps");
  spec.train.batch = c.get_int("train.batch");
  spec.train.log_every = c.get_int("train.log_every");
  spec.train.checkpoint_every = c.get_int("train.checkpoint_every");
  spec.train.sample_every = c.get_int("train.sample_every");
  spec.sample.ode.method = parse_ode_method(c.get_string("sample.solver"));
  spec.sample.ode.steps = c.get_int("sample.steps");
  spec.sample.ode.rtol = c.get_float("sample.rtol");
  spec.sample.ode.atol = c.get_float("sample.atol");
  spec.sample.n = c.get_int("sample.n");
  spec.sample.cfg_scale = c.get_float("sample.cfg_scale");
  spec.sample.cfg_t_min = c.get_float("sample.cfg_t_min");
  spec.sample.cfg_t_max = c.get_float("sample.cfg_t_max");
  DF_CHECK(spec.sample.cfg_t_min <= spec.sample.cfg_t_max, "sample.cfg_t_min = {} must not exceed sample.cfg_t_max = {}",
           spec.sample.cfg_t_min, spec.sample.cfg_t_max);
  if (spec.data.source != kGaussianSource) {
    // A data-to-data flow: conditional flow matching between two sample sets, on a path whose
    // ends are the pair itself (no noise scale at t = 0, unlike vp or ve).
    DF_CHECK(spec.data.kind == DataKind::Points2D,
             "data.source = \"{}\" flows between 2-D sets; data.name = \"{}\" is an image set", spec.data.source,
             spec.data.name);
    DF_CHECK(spec.method_name == "cfm",
             "data.source = \"{}\": a data-to-data flow is trained by conditional flow matching; set method.name = "
             "\"cfm\" (not \"{}\")",
             spec.data.source, spec.method_name);
    DF_CHECK(spec.path.scheduler == "condot" || spec.path.curved(),
             "data.source = \"{}\": the {} path starts from its own noise; a data-to-data flow takes method.path = "
             "\"condot\" or \"{}\"",
             spec.data.source, spec.path.scheduler, kCurvedPath);
  }
  if (spec.path.curved()) {
    DF_CHECK(spec.data.kind == DataKind::Points2D,
             "method.path = \"{}\" bends paths in the plane; it needs 2-D data, not data.name = \"{}\"", kCurvedPath,
             spec.data.name);
    DF_CHECK(spec.method_name == "cfm",
             "method.path = \"{}\" is trained by conditional flow matching; set method.name = \"cfm\" (not \"{}\")",
             kCurvedPath, spec.method_name);
    DF_CHECK(!spec.path.make_coupling()->has_own_path(),
             "method.path = \"{}\" and method.coupling = \"{}\": that coupling brings its own bridge path",
             kCurvedPath, spec.path.coupling);
  }
  spec.method = method.configure(c, spec);
  spec.model = parse_model(c, spec.data, *spec.method);
  {
    // A guidance interval is read only by a sampler that takes one (iMF's, on class-conditional models).
    const std::string sampler = spec.method->samplers().front();
    DF_CHECK((spec.sample.cfg_t_min == 0.0 && spec.sample.cfg_t_max == 1.0) ||
                 (spec.model.classes > 0 &&
                  spec.method->sampler_guidance(sampler) == Method::Guidance::ScaleAndInterval),
             "sample.cfg_t_min = {}, sample.cfg_t_max = {}: a guidance interval is taken by iMF's sampler of "
             "class-conditional models only (method.name = \"imf\", model.classes > 0); this run is method \"{}\" "
             "with model.classes = {}; keep [0, 1]",
             spec.sample.cfg_t_min, spec.sample.cfg_t_max, spec.method_name, spec.model.classes);
  }
  spec.run = parse_run_keys(c);
  spec.run.sync_check_every = c.get_int("run.sync_check_every");
  spec.optim = parse_optimizer_keys(c, spec.train.steps);
  spec.optim.ema_decay = c.get_float("optim.ema_decay");
  return spec;
}

CouplingParams coupling_params(const PathSpec& path) {
  // Schrödinger-bridge CFM: reg = 2 sigma^2 fixes the bridge's noise level.
  if (path.coupling == "sinkhorn") return {{"reg", path.sinkhorn_reg}};
  if (path.coupling == "sb") return {{"sigma", std::sqrt(path.sinkhorn_reg / 2)}};
  return {};
}

}  // namespace dualflow
