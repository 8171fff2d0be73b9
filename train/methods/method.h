// A training method (objective) and the method registry. Each method is one file in
// train/methods/ that returns its MethodEntry: its config section and checks (configure), the
// network inputs it needs, the training loss (objective), its samplers, and how a trained
// model turns into the velocity that `sample`, `nll` and `eval` integrate (prepare_model).
// The commands ask the configured Method; nothing outside the registry switches on method
// names. Adding a method is one file plus one line in method_registry.cpp's list, or a
// register_method call from a program (tests/train/test_method_registry.cpp does that).
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "train/batch_shard.h"
#include "train/run_spec.h"
#include "train/sampling.h"
#include "train/training_data.h"
#include "train/training_loop.h"
#include "train/velocity_model.h"

namespace dualflow {

// A method's loss on the batch of one step, drawn from the run's data stream `gen`.
using Objective = std::function<StepOutcome(Generator& gen, int64_t step)>;

// What a method gets to set up its training.
struct TrainingSetup {
  const FlowRunSpec& spec;
  VelocityModel& model;   // built, prepared and on the run's device; the method may load weights
  Generator& data_gen;    // the run's data stream (saved in checkpoints); objectives draw from it
  TensorOptions options;  // f32 on the run's device
  bool resume = false;    // the run continues from a checkpoint
  bool quiet = false;     // no console output
  // This process's rows of each batch (data-parallel runs). An objective draws the whole
  // batch's random inputs from data_gen, as one process would, and runs the network on
  // shard.rows(...) of them only, its loss a mean over those rows.
  BatchShard shard;

  // The run's training data (data.*), batch train.batch, as a function of the step.
  DataSource data() const { return make_data_source(spec, options); }
};

class Method {
 public:
  virtual ~Method() = default;

  // Whether the network takes MeanFlow's interval h = t - r as an input.
  virtual bool network_takes_interval() const { return false; }
  // Further scalar inputs after the interval (the network then takes h as [N, 1 + this]).
  virtual int64_t network_conditions() const { return 0; }
  // Outputs shaped like a sample, concatenated along dim 1 (iMF: the average and the
  // instantaneous velocity).
  virtual int64_t network_heads() const { return 1; }

  // Completes a freshly built model: the velocity in flow-matching time that the ODE samplers
  // and the likelihood integrate (model.net), the source's scale and the data end of time. The
  // default reads them off the run's probability path (use_path_velocity).
  virtual void prepare_model(VelocityModel& model, const FlowRunSpec& spec) const;

  // The training loss. Called once per run, before the optimizer and the EMA are made, so a
  // method may load starting weights into setup.model.
  virtual Objective objective(const TrainingSetup& setup) const = 0;

  // The samplers of this method's models, the default first: "ode" integrates model.net.
  virtual std::vector<std::string> samplers() const { return {kOdeSampler}; }
  // What guidance a sampler of a class-conditional model takes at sampling time: the ODE's
  // classifier-free guidance scale (the default), none, or a scale and an interval of times
  // (iMF, whose network takes both as inputs).
  enum class Guidance { None, Scale, ScaleAndInterval };
  virtual Guidance sampler_guidance(const std::string& sampler) const {
    return sampler == kOdeSampler ? Guidance::Scale : Guidance::None;
  }
  // Draws one chunk: `noise` [n, ...] from the source, `labels` i64 [n] or undefined.
  virtual SampledChunk sample(const VelocityModel& model, const Tensor& noise, const Tensor& labels,
                              const SampleRequest& request) const;
  // "euler, 50 steps", "MeanFlow, 1 step": how a request samples, for messages and results.
  virtual std::string describe_sampling(const SampleRequest& request) const;
};

// The default prepare_model: model.net is the network's output itself, a velocity on the
// configured affine path (or on the Schrödinger bridge of the sb coupling), whose source scale
// it records after checking that the velocity is finite at t_max.
void use_path_velocity(VelocityModel& model, const FlowRunSpec& spec);
// The path's alpha_t, sigma_t and their derivatives at one time t (f64).
SchedulerValues scheduler_at(const AffinePath& path, double t);

// "euler, 50 steps<of_what>, guidance 2": how the ODE sampler of a request integrates.
std::string describe_ode_sampling(const SampleRequest& request, const std::string& of_what = "");

// Integrates model.net from the noise with the request's ODE options and guidance scale.
SampledChunk sample_ode(const VelocityModel& model, const Tensor& noise, const Tensor& labels,
                        const SampleRequest& request);

struct MethodEntry {
  std::string name;                 // the method.name value
  std::string description;          // for the schema's help
  bool takes_class_labels = false;  // can train class-conditional models (model.classes > 0)
  // Adds the method's own section to the schema; may be empty.
  std::function<void(ConfigSchema&)> add_keys;
  // Reads and checks the method's keys against the rest of the spec (data, path, labels are
  // parsed; the model is not yet).
  std::function<std::shared_ptr<const Method>(const RunConfig&, const FlowRunSpec&)> configure;
};

const std::vector<MethodEntry>& method_registry();
// Refuses a name that is already registered.
void register_method(MethodEntry entry);
// Throws naming the registered methods when there is none of that name.
const MethodEntry& find_method(const std::string& name);
std::vector<std::string> methods_taking_labels();

// The built-in methods, one file each.
MethodEntry cfm_method_entry();
MethodEntry score_method_entry();
MethodEntry cnf_mle_method_entry();
MethodEntry reflow_method_entry();
MethodEntry meanflow_method_entry();
MethodEntry imf_method_entry();

}  // namespace dualflow
