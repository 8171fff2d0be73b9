// The Flow Matching training run and checkpoint-based model loading (see flow_run.h).
#include "train/flow_run.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <limits>

#include "kernels/cpu/parallel.h"
#include "models/dit.h"
#include "models/mlp_velocity.h"
#include "models/unet.h"
#include "train/checkpoint.h"
#include "train/couplings.h"
#include "train/data2d.h"
#include "train/gradient_step.h"
#include "train/image_data.h"
#include "train/json_text.h"
#include "train/meanflow.h"
#include "train/metrics_log.h"
#include "train/optim.h"
#include "train/plots.h"
#include "train/reflow.h"
#include "train/score_matching.h"

namespace dualflow {

namespace {

std::atomic<bool> g_stop_requested{false};
extern "C" void request_stop(int) { g_stop_requested.store(true); }

bool is_2d_dataset(const std::string& name) {
  for (const auto& n : dataset_2d_names())
    if (n == name) return true;
  return false;
}

bool is_image_dataset(const std::string& name) { return name == "fashion_mnist" || name == "mnist"; }

// MNIST-like sets: 28 x 28 grey images of 10 classes (checked when the files are read).
constexpr int64_t kImageSize = 28, kImageClasses = 10;

void check_supported(const RunConfig& c) {
  const std::string data = c.get_string("data.name"), kind = c.get_string("model.kind");
  const std::string method = c.get_string("method.name");
  const int64_t classes = c.get_int("model.classes");
  if (is_2d_dataset(data)) {
    DF_CHECK(kind == "mlp", "model.kind = \"{}\": 2-D data ({}) trains the MLP velocity network; set model.kind = \"mlp\"",
             kind, data);
    DF_CHECK(classes == 0, "model.classes = {}: the 2-D datasets have no class labels; set model.classes = 0", classes);
  } else {
    DF_CHECK(is_image_dataset(data), "data.name = \"{}\": expected a 2-D dataset ({}) or an image set (fashion_mnist, mnist)",
             data, fmt::join(dataset_2d_names(), ", "));
    DF_CHECK(kind == "unet" || kind == "dit",
             "model.kind = \"{}\": image data ({}) trains a U-Net or a DiT; set model.kind = \"unet\" or \"dit\"", kind,
             data);
    DF_CHECK(classes == 0 || classes == kImageClasses,
             "model.classes = {}: {} has {} classes; set model.classes = {} (class-conditional) or 0", classes, data,
             kImageClasses, kImageClasses);
  }
  if (classes > 0) {
    // Labels ride with the data rows; couplings that resample or reorder data rows would need
    // them carried along, and these objectives take no labels.
    DF_CHECK(method == "cfm" || method == "meanflow",
             "method.name = \"{}\" trains unconditional models only; set model.classes = 0 (or use cfm / meanflow)",
             method);
    const std::string coupling = c.get_string("method.coupling");
    DF_CHECK(coupling == "independent" || coupling == "exact_ot",
             "method.coupling = \"{}\": a class-conditional run pairs noise with labelled data by the independent or "
             "the exact_ot coupling, which keep each image with its label",
             coupling);
  }
  const std::string coupling = c.get_string("method.coupling");
  if (method == "meanflow") {
    // MeanFlow draws its own noise and times on its own straight path z_t = (1 - t) x + t e.
    DF_CHECK(coupling == "independent",
             "method.coupling = \"{}\": MeanFlow pairs each sample with its own fresh noise; set method.coupling = "
             "\"independent\"",
             coupling);
    DF_CHECK(c.get_string("method.path") == "condot" && c.get_float("method.sigma_min") == 0.0 &&
                 c.get_float("method.t_max") == 1.0,
             "method.path = \"{}\", method.sigma_min = {}, method.t_max = {}: MeanFlow trains on its own straight path "
             "from data to N(0, I) noise over the whole of [0, 1]; keep method.path = \"condot\", sigma_min = 0, t_max = 1",
             c.get_string("method.path"), c.get_float("method.sigma_min"), c.get_float("method.t_max"));
    DF_CHECK(classes > 0 || (c.get_float("meanflow.guidance_omega") == 1.0 && c.get_float("meanflow.guidance_kappa") == 0.0),
             "meanflow.guidance_omega = {}, meanflow.guidance_kappa = {}: guidance in training needs class labels "
             "(model.classes > 0); keep omega = 1 and kappa = 0",
             c.get_float("meanflow.guidance_omega"), c.get_float("meanflow.guidance_kappa"));
  }
  if (method == "score" || method == "reflow")
    DF_CHECK(coupling == "independent",
             "method.coupling = \"{}\": method \"{}\" {}; set method.coupling = \"independent\"", coupling, method,
             method == "score" ? "learns E[x_0 | x_t] under independently drawn pairs"
                               : "trains on the teacher's own (noise, sample) pairs");
  if (method == "reflow") {
    DF_CHECK(!c.get_string("reflow.teacher").empty(),
             "method.name = \"reflow\" needs reflow.teacher = the checkpoint of a trained flow");
    DF_CHECK(c.get_string("method.path") == "condot",
             "method.path = \"{}\": reflow trains straight (CondOT) paths between its pairs; set method.path = \"condot\"",
             c.get_string("method.path"));
  }
}

Device run_device(const RunConfig& c) {
  Device d = Device::parse(c.get_string("run.device"));
  backend_for(d);  // a clear error when the device does not exist
  return d;
}

std::shared_ptr<AffinePath> affine_path(const RunConfig& c) {
  const std::string name = c.get_string("method.path");
  PathParams params;
  if (name == "condot") params = {{"sigma_min", c.get_float("method.sigma_min")}};
  if (name == "vp") params = {{"beta_min", c.get_float("method.vp_beta_min")}, {"beta_max", c.get_float("method.vp_beta_max")}};
  if (name == "ve")
    params = {{"sigma_min", c.get_float("method.ve_sigma_min")}, {"sigma_max", c.get_float("method.ve_sigma_max")}};
  if (name == "polynomial") params = {{"n", c.get_float("method.poly_n")}};
  return make_affine_path(name, params);
}

SchedulerValues scheduler_at(const AffinePath& path, double t) {
  return path.scheduler()(full({1}, t, TensorOptions(DType::f64)));
}

struct Parts {
  std::shared_ptr<ProbabilityPath> path;
  std::shared_ptr<Coupling> coupling;
};

Parts make_parts(const RunConfig& c, Generator& noise_gen) {
  Parts p;
  const std::string coupling = c.get_string("method.coupling");
  const double reg = c.get_float("method.sinkhorn_reg");
  if (coupling == "sb") {
    // Schrödinger-bridge CFM: reg = 2 sigma^2 fixes the bridge's noise level.
    const double sigma = std::sqrt(reg / 2);
    p.coupling = make_coupling("sb", {{"sigma", sigma}});
    p.path = std::make_shared<SchrodingerBridgePath>(sigma, noise_gen);
  } else {
    p.coupling = coupling == "sinkhorn" ? make_coupling("sinkhorn", {{"reg", reg}}) : make_coupling(coupling);
    p.path = affine_path(c);
  }
  return p;
}

OdeOptions sampler_options(const RunConfig& c) {
  OdeOptions o;
  o.method = parse_ode_method(c.get_string("sample.solver"));
  o.steps = c.get_int("sample.steps");
  o.rtol = c.get_float("sample.rtol");
  o.atol = c.get_float("sample.atol");
  return o;
}

double absmax(const Tensor& t) { return amax(abs(t.detach())).to(DType::f64).item(); }

MeanFlowOptions meanflow_options(const RunConfig& c) {
  MeanFlowOptions o;
  o.time_distribution = parse_time_distribution(c.get_string("meanflow.time_distribution"));
  o.time_mu = c.get_float("meanflow.time_mu");
  o.time_sigma = c.get_float("meanflow.time_sigma");
  o.ratio_r_neq_t = c.get_float("meanflow.ratio_r_neq_t");
  o.adaptive_p = c.get_float("meanflow.adaptive_p");
  o.adaptive_c = c.get_float("meanflow.adaptive_c");
  o.class_dropout = c.get_float("method.class_dropout");
  // The models' null class is num_classes; without classes there is none (and no labels).
  const int64_t classes = c.get_int("model.classes");
  o.null_label = classes > 0 ? classes : -1;
  o.guidance_omega = c.get_float("meanflow.guidance_omega");
  o.guidance_kappa = c.get_float("meanflow.guidance_kappa");
  o.guidance_t_min = c.get_float("meanflow.guidance_t_min");
  o.guidance_t_max = c.get_float("meanflow.guidance_t_max");
  o.validate();
  return o;
}

}  // namespace

VelocityNet flow_matching_time_velocity(const VelocityNet& meanflow_network) {
  return [meanflow_network](const Tensor& x, const Tensor& tau, const Tensor& h, const Tensor& labels) {
    DF_CHECK(!h.defined(), "flow_matching_time_velocity: the instantaneous velocity takes no interval h, got {}",
             h.shape().str());
    Tensor t = 1.0 - tau;
    return -meanflow_network(x, t, zeros_like(t), labels);
  };
}

void install_stop_signal_handlers() {
  struct sigaction sa = {};
  sa.sa_handler = request_stop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

VelocityModel build_velocity_model(const RunConfig& c, Generator& init) {
  check_supported(c);
  const std::string kind = c.get_string("model.kind");
  const bool use_h = c.get_string("method.name") == "meanflow";
  VelocityModel vm;
  vm.num_classes = c.get_int("model.classes");
  if (kind == "mlp") {
    MLPVelocityConfig m;
    m.data_dim = 2;
    m.width = c.get_int("model.width");
    m.depth = c.get_int("model.depth");
    m.use_h = use_h;
    m.time_scale = c.get_float("model.time_scale");
    auto net = std::make_shared<MLPVelocity>(m, init);
    vm.module = net;
    vm.sample_shape = {2};
    vm.network = [net](const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& labels) {
      return net->forward(x, t, h, labels);
    };
  } else if (kind == "unet") {
    UNetConfig u;
    u.in_channels = 1;
    u.image_size = kImageSize;
    u.base_channels = c.get_int("model.unet_channels");
    u.channel_mult = c.get_int_list("model.unet_mult");
    u.num_res_blocks = c.get_int("model.unet_blocks");
    u.attention_resolutions = c.get_int_list("model.unet_attention");
    u.num_classes = vm.num_classes;
    u.use_h = use_h;
    u.time_scale = c.get_float("model.time_scale");
    auto net = std::make_shared<UNet>(u, init);
    vm.module = net;
    vm.sample_shape = {1, kImageSize, kImageSize};
    vm.network = [net](const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& labels) {
      return net->forward(x, t, h, labels);
    };
  } else {
    DiTConfig d;
    d.input_size = kImageSize;
    d.in_channels = 1;
    d.num_classes = vm.num_classes;
    d.use_h = use_h;
    d.time_scale = c.get_float("model.time_scale");
    d = DiTConfig::preset(c.get_string("model.dit_preset"), d);
    if (c.get_int("model.dit_hidden") > 0) d.hidden_size = c.get_int("model.dit_hidden");
    if (c.get_int("model.dit_depth") > 0) d.depth = c.get_int("model.dit_depth");
    if (c.get_int("model.dit_heads") > 0) d.num_heads = c.get_int("model.dit_heads");
    DF_CHECK(kImageSize % d.patch_size == 0,
             "model.dit_preset = \"{}\": patch size {} does not divide the {}x{} images of {}; use patch 2 or 4",
             c.get_string("model.dit_preset"), d.patch_size, kImageSize, kImageSize, c.get_string("data.name"));
    auto net = std::make_shared<DiT>(d, init);
    vm.module = net;
    vm.sample_shape = {1, kImageSize, kImageSize};
    vm.network = [net](const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& labels) {
      return net->forward(x, t, h, labels);
    };
  }
  vm.net = vm.network;
  vm.t_end = c.get_float("method.t_max");
  const std::string method = c.get_string("method.name");
  if (method == "meanflow") {
    meanflow_options(c);  // refuses inconsistent MeanFlow settings before any training
    vm.meanflow_time = true;
    vm.net = flow_matching_time_velocity(vm.network);
    return vm;
  }
  if (c.get_string("method.coupling") != "sb" && method != "reflow") {
    auto path = affine_path(c);
    SchedulerValues at0 = scheduler_at(*path, 0.0), at_end = scheduler_at(*path, vm.t_end);
    // The source the samplers start from: x_t at t = 0 is alpha_0 x_1 + sigma_0 x_0, and
    // alpha_0 x_1 is negligible (or, on the VE path, small next to sigma_max).
    vm.source_std = at0.sigma.item();
    DF_CHECK(std::isfinite(at_end.d_alpha.item()) && std::isfinite(at_end.d_sigma.item()),
             "method.t_max = {}: the {} path's velocity is infinite there; set method.t_max a little below 1 "
             "(e.g. 0.99999)",
             vm.t_end, c.get_string("method.path"));
    if (method == "score") {
      DF_CHECK(at0.alpha.item() > 0,
               "method.name = \"score\" turns predicted noise into a velocity by dividing by alpha_t, which is 0 at "
               "t = 0 on the {} path; use method.path = \"vp\" or \"ve\"",
               c.get_string("method.path"));
      vm.net = probability_flow_velocity(vm.network, path);
    }
  }
  return vm;
}

namespace {

// A training objective turns a fresh batch into a loss; `inputs` are kept for the report that
// a non-finite loss writes, and `diagnostics` (scalars the objective computed anyway) go to
// the metrics lines beside the loss.
struct ObjectiveBatch {
  Tensor loss;
  std::vector<std::pair<std::string, Tensor>> inputs;
  std::vector<std::pair<std::string, Tensor>> diagnostics;
};
using Objective = std::function<ObjectiveBatch(Generator& gen, int64_t step)>;

// A training batch of data: x [B, ...] with labels i64 [B] (undefined for unlabelled data).
struct DataBatch {
  Tensor x, labels;
};
// The batch of step `step`: 2-D toy data is drawn fresh from `gen`; an image set is read in
// epoch-shuffled order as a function of the step (image_data.h), so resumed runs see the same
// batches either way.
using DataSource = std::function<DataBatch(Generator& gen, int64_t step)>;

DataSource make_data_source(const RunConfig& c, TensorOptions opts) {
  const std::string data = c.get_string("data.name");
  const int64_t batch = c.get_int("train.batch");
  if (is_2d_dataset(data))
    return [=](Generator& gen, int64_t) { return DataBatch{sample_2d(data, batch, gen, opts), Tensor()}; };
  auto set = std::make_shared<const ImageDataset>(
      load_image_dataset(c.get_string("data.path"), ImageSplit::Train, c.get_int("data.limit")));
  DF_CHECK(set->images.size(2) == kImageSize && set->images.size(3) == kImageSize,
           "data.path = '{}': expected {}x{} images for data.name = \"{}\", got {}x{}", c.get_string("data.path"),
           kImageSize, kImageSize, data, set->images.size(2), set->images.size(3));
  auto batcher = std::make_shared<const ImageBatcher>(*set, batch, uint64_t(c.get_int("run.seed")) + 0xDA7A5E7ull,
                                                      c.get_bool("data.hflip"));
  const bool labelled = c.get_int("model.classes") > 0;
  return [set, batcher, labelled, opts](Generator&, int64_t step) {
    ImageBatch b = batcher->batch_at(step, opts);
    return DataBatch{b.images, labelled ? b.labels.to(opts.device) : Tensor()};
  };
}

LikelihoodOptions training_likelihood(const RunConfig& c, const VelocityModel& vm) {
  LikelihoodOptions o;
  o.ode.method = parse_ode_method(c.get_string("cnf.solver"));
  o.ode.steps = c.get_int("cnf.steps");
  o.divergence = parse_divergence_method(c.get_string("cnf.divergence"));
  o.probe = parse_probe_distribution(c.get_string("cnf.probe"));
  o.t_data = vm.t_end;
  o.prior_std = vm.source_std;
  return o;
}

Objective make_objective(const RunConfig& c, const VelocityModel& vm, const Parts& parts,
                         std::shared_ptr<const ReflowPairs> reflow, TensorOptions opts) {
  const std::string method = c.get_string("method.name");
  const int64_t batch = c.get_int("train.batch");
  const double t_max = c.get_float("method.t_max");
  if (method == "reflow") {
    return [=](Generator& gen, int64_t) {
      Tensor rows = randint(0, reflow->x0.size(0), {batch}, gen, TensorOptions(DType::i64, opts.device));
      Tensor x0 = index_select(reflow->x0, 0, rows), x1 = index_select(reflow->x1, 0, rows);
      Tensor t = rand({batch}, gen, opts) * t_max;
      return ObjectiveBatch{cfm_loss(vm.network, *parts.path, x0, x1, t), {{"x0", x0}, {"x1", x1}, {"t", t}}, {}};
    };
  }
  const DataSource data = make_data_source(c, opts);
  if (method == "cnf_mle") {
    const LikelihoodOptions lo = training_likelihood(c, vm);
    const VelocityField field = velocity_field(vm.net);
    const double jitter = c.get_float("cnf.grid_jitter");
    return [=](Generator& gen, int64_t step) {
      Tensor x1 = data(gen, step).x;
      LikelihoodOptions step_options = lo;
      if (jitter > 0) step_options.ode.time_grid = jittered_time_grid(lo.t_data, 0.0, lo.ode.steps, jitter, gen);
      return ObjectiveBatch{cnf_nll_loss(field, x1, step_options, gen), {{"x1", x1}}, {}};
    };
  }
  if (method == "meanflow") {
    const MeanFlowOptions mo = meanflow_options(c);
    return [=](Generator& gen, int64_t step) {
      DataBatch d = data(gen, step);
      MeanFlowLoss l = meanflow_training_loss(vm.network, d.x, d.labels, mo, gen);
      // With the adaptive weight the loss is about mean L / (L + c), close to 1 whatever the
      // fit; the unweighted mse and the error against the instantaneous velocity v = e - x
      // show the progress.
      return ObjectiveBatch{l.loss,
                            {{"x", d.x}, {"target", l.target}, {"dudt", l.dudt}},
                            {{"mse", l.mse}, {"velocity_error", l.velocity_error}}};
    };
  }
  const double class_dropout = c.get_float("method.class_dropout");
  const int64_t null_label = vm.num_classes;
  return [=](Generator& gen, int64_t step) {
    DataBatch d = data(gen, step);
    Tensor x0 = randn(d.x.shape(), gen, opts);
    CoupledBatch pair;
    if (d.labels.defined()) {
      // The data rows keep their order (and their labels): the coupling re-pairs the noise. The
      // couplings allowed with labels (independent, exact OT) keep their first argument in order.
      CoupledBatch swapped = parts.coupling->couple(d.x, x0, gen);
      pair = {swapped.x1, swapped.x0};
    } else {
      pair = parts.coupling->couple(x0, d.x, gen);
    }
    Tensor labels = d.labels.defined() && class_dropout > 0 ? drop_class_labels(d.labels, class_dropout, null_label, gen)
                                                            : d.labels;
    Tensor t = rand({d.x.size(0)}, gen, opts) * t_max;
    Tensor loss = method == "score"
                      ? denoising_score_matching_loss(vm.network, dynamic_cast<const AffinePath&>(*parts.path), pair.x0,
                                                      pair.x1, t, labels)
                      : cfm_loss(vm.network, *parts.path, pair.x0, pair.x1, t, labels);
    return ObjectiveBatch{loss, {{"x0", pair.x0}, {"x1", pair.x1}, {"t", t}}, {}};
  };
}

// The teacher's pairs for reflow (drawn again, identically, when a run resumes), after checking
// that the teacher fits this run.
std::shared_ptr<const ReflowPairs> reflow_pairs(const RunConfig& c, const LoadedModel& teacher, TensorOptions opts) {
  const std::string path = c.get_string("reflow.teacher");
  DF_CHECK(teacher.config.get_string("data.name") == c.get_string("data.name"),
           "reflow.teacher '{}' was trained on data.name = \"{}\", this run names \"{}\"", path,
           teacher.config.get_string("data.name"), c.get_string("data.name"));
  DF_CHECK(std::abs(teacher.model.source_std - 1.0) < 1e-3,
           "reflow.teacher '{}' starts from N(0, {:.3g}^2 I); reflow trains CondOT paths from N(0, I) noise, so "
           "the teacher must use a path with a unit-variance source (not ve)",
           path, teacher.model.source_std);
  OdeOptions o;
  o.method = parse_ode_method(c.get_string("reflow.solver"));
  o.steps = c.get_int("reflow.steps");
  o.rtol = c.get_float("sample.rtol");
  o.atol = c.get_float("sample.atol");
  Generator pair_gen(uint64_t(c.get_int("run.seed")) + 0x5DEECE66Dull);
  return std::make_shared<const ReflowPairs>(draw_reflow_pairs(teacher.model.net, c.get_int("reflow.pairs"),
                                                               teacher.model.sample_shape, o, pair_gen, opts, 4096,
                                                               1.0, teacher.model.t_end));
}

}  // namespace

TrainRunResult train_flow_matching(const RunConfig& c, const TrainRunOptions& o) {
  namespace fs = std::filesystem;
  check_supported(c);
  DF_CHECK(!o.out_dir.empty(), "train: an output directory is required (--out DIR)");
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  DF_CHECK(!ec && fs::is_directory(o.out_dir), "train: cannot create the output directory '{}': {}", o.out_dir,
           ec ? ec.message() : "not a directory");
  const std::string ckpt = (fs::path(o.out_dir) / "checkpoint.safetensors").string();
  const std::string metrics_path = (fs::path(o.out_dir) / "metrics.jsonl").string();
  DF_CHECK(!o.resume || fs::exists(ckpt), "train --resume: no checkpoint at '{}'", ckpt);
  if (c.get_int("run.threads") > 0) cpu::set_num_threads(int(c.get_int("run.threads")));

  const Device dev = run_device(c);
  const uint64_t seed = uint64_t(c.get_int("run.seed"));
  Generator init_gen(seed), data_gen(seed + 0x9E3779B97F4A7C15ull);
  VelocityModel vm = build_velocity_model(c, init_gen);
  vm.module->to(dev);
  const TensorOptions f32(DType::f32, dev);
  std::shared_ptr<const ReflowPairs> pairs;
  if (c.get_string("method.name") == "reflow") {
    LoadedModel teacher = load_model_from_checkpoint(c.get_string("reflow.teacher"));
    if (!o.quiet) fmt::print("drawing {} pairs from the teacher {}\n", c.get_int("reflow.pairs"), c.get_string("reflow.teacher"));
    pairs = reflow_pairs(c, teacher, f32);
    if (c.get_bool("reflow.init_from_teacher") && !o.resume) {
      NamedTensors teacher_weights = teacher.model.module->state_dict();
      try {
        vm.module->load_state_dict(teacher_weights);
      } catch (const std::exception& e) {
        fail("reflow.init_from_teacher: the teacher's network does not fit this run's model settings ({}); give "
             "the same model.* keys or set reflow.init_from_teacher = false",
             e.what());
      }
    }
  }
  NamedTensors params = vm.module->named_parameters();
  OptimizerOptions oo;
  oo.name = c.get_string("optim.name");
  oo.lr = c.get_float("optim.lr");
  oo.weight_decay = c.get_float("optim.weight_decay");
  if (oo.name != "sgd") {
    oo.beta1 = c.get_float("optim.beta1");
    oo.beta2 = c.get_float("optim.beta2");
  }
  std::unique_ptr<Optimizer> opt = make_optimizer(params, oo);
  LrSchedule schedule;
  schedule.base_lr = oo.lr;
  schedule.warmup_steps = c.get_int("optim.warmup_steps");
  schedule.kind = LrSchedule::parse_kind(c.get_string("optim.schedule"));
  schedule.total_steps = c.get_int("train.steps");
  schedule.validate();
  const double ema_decay = c.get_float("optim.ema_decay");
  std::unique_ptr<Ema> ema;
  // With warmup the average forgets the initial weights quickly (decay (1 + s) / (10 + s) early
  // on); a plain 0.999 average still holds 22% of the initialisation after 1500 steps.
  if (ema_decay > 0) ema = std::make_unique<Ema>(params, EmaOptions{.decay = ema_decay, .warmup = true});
  Parts parts = make_parts(c, data_gen);
  const Objective objective = make_objective(c, vm, parts, pairs, f32);

  const std::string config_text = c.to_toml();
  CheckpointParts ckpt_parts{vm.module.get(), opt.get(), ema.get(), {{"data", &data_gen}}};
  int64_t step = 0;
  if (o.resume) step = load_checkpoint(ckpt, ckpt_parts).step;
  auto save = [&] {
    CheckpointInfo info;
    info.step = step;
    info.config = config_text;
    save_checkpoint(ckpt, ckpt_parts, info);
  };

  MetricsLog metrics(metrics_path, o.resume ? step : -1, "train");
  const int64_t total = c.get_int("train.steps");
  const int64_t log_every = c.get_int("train.log_every"), ckpt_every = c.get_int("train.checkpoint_every");
  const double clip = c.get_float("optim.grad_clip");
  DF_CHECK(step <= total, "train --resume: the checkpoint is at step {}, beyond train.steps = {}", step, total);

  using clock = std::chrono::steady_clock;
  const auto started = clock::now();
  auto window_start = started;
  int64_t window_steps = 0;
  TrainRunResult result;
  g_stop_requested.store(false);
  while (step < total) {
    if (g_stop_requested.load()) {
      save();
      result.interrupted = true;
      if (!o.quiet) fmt::print("{}stopped at step {}: checkpoint saved to {}\n", o.progress_line ? "\n" : "", step, ckpt);
      break;
    }
    opt->set_lr(schedule.lr_at(step));
    ObjectiveBatch b = objective(data_gen, step);
    const GradientStep g = compute_gradients(b.loss, *opt, params, clip);
    const double loss_value = g.loss, grad_norm = g.grad_norm;
    if (!g.finite()) {
      // Record the offending batch, keep the last good checkpoint, and stop with the step named.
      std::string report = g.non_finite_record(step + 1);
      for (const auto& [name, value] : b.inputs) {
        report += fmt::format(R"(,"{}_absmax":{})", name, json_number(absmax(value)));
        if (value.dim() == 1)
          report += fmt::format(R"(,"{}_min":{},"{}_max":{})", name, json_number(amin(value).to(DType::f64).item()),
                                name, json_number(amax(value).to(DType::f64).item()));
      }
      metrics.write(report + "}");
      fail("train: step {}: the {} is {}; training stopped. The last good checkpoint is '{}'; the batch's "
           "statistics are in '{}'",
           step + 1, g.bad_quantity(), g.bad_value(), fs::exists(ckpt) ? ckpt : "(none written yet)",
           metrics_path);
    }
    opt->step();
    ++step;
    ++window_steps;
    if (ema) ema->update(step);
    result.last_loss = loss_value;
    if (step % log_every == 0 || step == total) {
      const auto now = clock::now();
      const double secs = std::chrono::duration<double>(now - window_start).count();
      const double its = secs > 0 ? window_steps / secs : 0;
      window_start = now;
      window_steps = 0;
      std::string diagnostics_json, first_diagnostic;
      for (const auto& [name, value] : b.diagnostics) {
        const double v = value.to(DType::f64).item();
        diagnostics_json += fmt::format(R"(,"{}":{})", name, json_number(v));
        if (first_diagnostic.empty()) first_diagnostic = fmt::format("  {} {:.5f}", name, v);
      }
      metrics.write(fmt::format(R"({{"step":{},"loss":{}{},"lr":{},"grad_norm":{},"it_per_s":{:.3f}}})", step,
                                json_number(loss_value), diagnostics_json, json_number(opt->lr()), json_number(grad_norm),
                                its));
      if (!o.quiet) {
        const double eta = its > 0 ? double(total - step) / its : 0;
        std::string line = fmt::format("step {}/{}  loss {:.5f}{}  {:.1f} it/s  ETA {:.0f} s", step, total, loss_value,
                                       first_diagnostic, its, eta);
        if (o.progress_line) fmt::print("\r{:<78}", line);
        else fmt::print("{}\n", line);
        std::fflush(stdout);
      }
    }
    if (ckpt_every > 0 && step % ckpt_every == 0 && step < total) save();
  }
  if (!result.interrupted) {
    save();
    if (!o.quiet && o.progress_line) fmt::print("\n");
    // Samples from the evaluation (EMA) weights.
    if (ema) ema->swap();
    SampleRequest request;
    const bool images = vm.sample_shape.size() == 3;
    request.n = images ? 100 : c.get_int("sample.n");
    request.method = vm.meanflow_time ? "meanflow" : "ode";
    request.ode = sampler_options(c);
    request.meanflow_steps = c.get_int("meanflow.sample_steps");
    request.cfg_scale = vm.num_classes > 0 && !vm.meanflow_time ? c.get_float("sample.cfg_scale") : 1.0;
    request.seed = seed + 7;
    DrawnSamples drawn = draw_samples(vm, request);
    const Tensor& samples = drawn.x;
    const int64_t nfe = drawn.nfe;
    if (ema) ema->swap();
    const std::string png = (fs::path(o.out_dir) / "samples.png").string();
    if (images) save_image_grid_png(png, samples, 10);
    else save_scatter_png(png, samples);
    if (!o.quiet)
      fmt::print("trained {} steps in {:.1f} s; checkpoint {}; samples {} ({} NFE)\n", step,
                 std::chrono::duration<double>(clock::now() - started).count(), ckpt, png, nfe);
  }
  result.steps_done = step;
  return result;
}

Tensor grid_labels(int64_t n, int64_t classes, int64_t columns, Device device) {
  DF_CHECK(classes > 0 && columns > 0, "grid_labels: classes and columns must be positive, got {} and {}", classes, columns);
  std::vector<int64_t> v(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = (i / columns) % classes;
  return from_vector(v, {n}, TensorOptions(DType::i64, device));
}

DrawnSamples draw_samples(const VelocityModel& model, const SampleRequest& r) {
  DF_CHECK(r.n >= 1, "draw_samples: n must be at least 1, got {}", r.n);
  DF_CHECK(r.method == "ode" || r.method == "meanflow", "draw_samples: method expects ode or meanflow, got '{}'", r.method);
  DF_CHECK(r.method == "ode" || model.meanflow_time, "draw_samples: MeanFlow jumps need a MeanFlow model");
  DF_CHECK(r.cfg_scale == 1.0 || (model.num_classes > 0 && r.method == "ode"),
           "draw_samples: guidance scale {} needs a class-conditional flow sampled by its ODE", r.cfg_scale);
  const Device dev = model.module->parameters().front().device();
  const TensorOptions f32(DType::f32, dev);
  Generator gen(r.seed);
  std::vector<int64_t> dims = {r.n};
  for (int64_t d : model.sample_shape) dims.push_back(d);
  Tensor noise = randn(Shape(dims), gen, f32) * model.source_std;
  DrawnSamples out;
  if (model.num_classes > 0) out.labels = grid_labels(r.n, model.num_classes, 10, dev);
  const int64_t chunk = r.chunk > 0 ? r.chunk : r.n;
  std::vector<Tensor> parts;
  for (int64_t start = 0; start < r.n; start += chunk) {
    const int64_t len = std::min(chunk, r.n - start);
    Tensor z = noise.narrow(0, start, len);
    Tensor labels = out.labels.defined() ? out.labels.narrow(0, start, len) : Tensor();
    if (r.method == "meanflow") {
      MeanFlowSample s = meanflow_sample(model.network, z, r.meanflow_steps, labels);
      parts.push_back(s.x);
      out.nfe = std::max(out.nfe, s.nfe);
    } else {
      GuidanceOptions g;
      g.labels = labels;
      g.null_label = model.num_classes > 0 ? model.num_classes : -1;
      g.scale = r.cfg_scale;
      OdeResult o = sample_flow(model.net, z, r.ode, g, model.t_end);
      parts.push_back(o.x);
      out.nfe = std::max(out.nfe, o.nfe);
    }
  }
  out.x = parts.size() == 1 ? parts[0] : cat(parts, 0);
  if (r.method == "meanflow") {
    out.how = fmt::format("MeanFlow, {} step{}", r.meanflow_steps, r.meanflow_steps == 1 ? "" : "s");
  } else {
    out.how = ode_method_name(r.ode.method);
    if (r.ode.method != OdeMethod::Dopri5) out.how += fmt::format(", {} steps", r.ode.steps);
    if (model.meanflow_time) out.how += " on the instantaneous velocity";
    if (r.cfg_scale != 1.0) out.how += fmt::format(", guidance {:g}", r.cfg_scale);
  }
  return out;
}

LoadedModel load_model_from_checkpoint(const std::string& path) {
  CheckpointInfo info;
  NamedTensors weights = checkpoint_weights(path, true, &info);
  DF_CHECK(!info.config.empty(), "checkpoint {}: holds no run config (metadata 'dualflow.config' is empty)", path);
  LoadedModel lm{parse_config_text(info.config, path + " (stored config)", {}, flow_matching_schema()), {}, info.step};
  Generator init(0);
  lm.model = build_velocity_model(lm.config, init);
  lm.model.module->load_state_dict(weights);
  lm.model.module->eval();
  lm.model.module->to(run_device(lm.config));
  return lm;
}

}  // namespace dualflow
