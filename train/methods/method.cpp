// The Method defaults (a velocity on the run's path, sampled by its ODE) and the method
// registry with its built-in list (see method.h).
#include "train/methods/method.h"

#include "train/registry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>

namespace dualflow {

namespace {

using MethodRegistry = Registry<MethodEntry, &MethodEntry::name>;

MethodRegistry& registry() {
  static MethodRegistry methods("method.name", {cfm_method_entry(), score_method_entry(), cnf_mle_method_entry(),
                                                reflow_method_entry(), meanflow_method_entry(),
                                                imf_method_entry()});
  return methods;
}

}  // namespace

const std::vector<MethodEntry>& method_registry() { return registry().entries(); }

void register_method(MethodEntry entry) {
  DF_CHECK(entry.configure, "register_method: the entry \"{}\" has no configure function", entry.name);
  registry().add(std::move(entry));
}

const MethodEntry& find_method(const std::string& name) { return registry().find(name); }

std::vector<std::string> methods_taking_labels() {
  std::vector<std::string> names;
  for (const MethodEntry& e : registry().entries())
    if (e.takes_class_labels) names.push_back(e.name);
  return names;
}

SchedulerValues scheduler_at(const AffinePath& path, double t) {
  return path.scheduler()(full({1}, t, TensorOptions(DType::f64)));
}

void use_path_velocity(VelocityModel& vm, const FlowRunSpec& spec) {
  vm.net = vm.network;
  vm.t_end = spec.path.t_max;
  // The sb coupling brings its own bridge from N(0, I) noise; affine paths say their source.
  if (spec.path.make_coupling()->has_own_path()) return;
  // The curved path runs from N(0, I) noise to the data over [0, 1] like CondOT.
  if (spec.path.curved()) return;
  auto path = spec.path.affine_path();
  SchedulerValues at0 = scheduler_at(*path, 0.0), at_end = scheduler_at(*path, vm.t_end);
  // The source the samplers start from: x_t at t = 0 is alpha_0 x_1 + sigma_0 x_0, and
  // alpha_0 x_1 is negligible (or, on the VE path, small next to sigma_max).
  vm.source_std = at0.sigma.item();
  DF_CHECK(std::isfinite(at_end.d_alpha.item()) && std::isfinite(at_end.d_sigma.item()),
           "method.t_max = {}: the {} path's velocity is infinite there; set method.t_max a little below 1 "
           "(e.g. 0.99999)",
           vm.t_end, spec.path.scheduler);
}

void Method::prepare_model(VelocityModel& model, const FlowRunSpec& spec) const { use_path_velocity(model, spec); }

SampledChunk sample_ode(const VelocityModel& model, const Tensor& noise, const Tensor& labels,
                        const SampleRequest& request) {
  GuidanceOptions g;
  g.labels = labels;
  g.null_label = model.num_classes > 0 ? model.num_classes : -1;
  g.scale = request.cfg_scale;
  OdeResult o = sample_flow(model.net, noise, request.ode, g, model.t_end);
  return {o.x, o.nfe};
}

SampledChunk Method::sample(const VelocityModel& model, const Tensor& noise, const Tensor& labels,
                            const SampleRequest& request) const {
  return sample_ode(model, noise, labels, request);
}

std::string describe_ode_sampling(const SampleRequest& r, const std::string& of_what) {
  std::string how = ode_method_name(r.ode.method);
  if (r.ode.method != OdeMethod::Dopri5) how += fmt::format(", {} steps", r.ode.steps);
  how += of_what;
  if (r.cfg_scale != 1.0) how += fmt::format(", guidance {:g}", r.cfg_scale);
  return how;
}

std::string Method::describe_sampling(const SampleRequest& r) const { return describe_ode_sampling(r); }

}  // namespace dualflow
