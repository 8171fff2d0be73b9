// method.name = "imf": improved MeanFlow (train/imf.h). The network has two heads, the average
// velocity u and the instantaneous velocity v, and for class-conditional models takes the
// guidance scale and interval as inputs; the loss regresses u + (t - r) sg(du/dt) (the JVP's
// tangent being the network's own guided v) and v onto the guided velocity. Sampled in a few
// jumps of u at a guidance scale and interval chosen at sampling time, or through the ODE of v.
#include <fmt/format.h>

#include "train/imf.h"
#include "train/methods/method.h"

namespace dualflow {

namespace {

constexpr const char* kImfSampler = "imf";

class ImfMethod final : public Method {
 public:
  ImfMethod(ImfOptions options, int64_t sample_steps) : options_(options), sample_steps_(sample_steps) {}

  bool network_takes_interval() const override { return true; }
  int64_t network_conditions() const override { return conditional() ? kImfConditions : 0; }
  int64_t network_heads() const override { return 2; }

  void prepare_model(VelocityModel& model, const FlowRunSpec&) const override {
    // The straight path of MeanFlow from data to N(0, I) over [0, 1]; the ODE integrates the
    // instantaneous-velocity head.
    model.t_end = 1.0;
    model.source_std = 1.0;
    model.net = imf_flow_matching_velocity(model.network, conditional());
  }

  Objective objective(const TrainingSetup& setup) const override {
    const DataSource data = setup.data();
    const VelocityNet net = setup.model.network;
    const ImfOptions o = options_;
    const BatchShard shard = setup.shard;
    return [=](Generator& gen, int64_t step) {
      DataBatch d = data(gen, step);
      ImfDraws in = draw_imf_inputs(d.x, d.labels, o, gen);
      // The whole batch's draws, then this process's rows of each.
      d.x = shard.rows(d.x);
      for (Tensor* a : {&in.e, &in.t, &in.r, &in.labels, &in.dropped_labels, &in.guidance.omega, &in.guidance.t_min,
                        &in.guidance.t_max})
        if (a->defined()) *a = shard.rows(*a);
      ImfLoss l = imf_loss(net, d.x, in, o);
      // The adaptive weights hold the loss near 2 (two heads); the unweighted errors of the
      // compound velocity (mse) and of the v head (v_mse) show the progress.
      return StepOutcome{l.loss, {{"x", d.x}, {"target", l.velocity}, {"dudt", l.dudt}},
                         {{"mse", l.mse}, {"v_mse", l.v_mse}}};
    };
  }

  std::vector<std::string> samplers() const override { return {kImfSampler, kOdeSampler}; }

  Guidance sampler_guidance(const std::string& sampler) const override {
    return sampler == kImfSampler ? Guidance::ScaleAndInterval : Guidance::Scale;
  }

  SampledChunk sample(const VelocityModel& model, const Tensor& noise, const Tensor& labels,
                      const SampleRequest& request) const override {
    if (request.sampler != kImfSampler) return sample_ode(model, noise, labels, request);
    const ImfGuidance guidance =
        conditional() ? constant_guidance(noise.shape()[0], request.cfg_scale, request.cfg_t_min, request.cfg_t_max,
                                          noise.options())
                      : ImfGuidance{};
    const MeanFlowSample s =
        imf_sample(model.network, noise, meanflow_time_grid(steps_of(request)), labels, guidance);
    return {s.x, s.nfe};
  }

  std::string describe_sampling(const SampleRequest& request) const override {
    if (request.sampler == kImfSampler) {
      const int64_t steps = steps_of(request);
      std::string text = fmt::format("iMF, {} step{}", steps, steps == 1 ? "" : "s");
      if (request.cfg_scale != 1.0)
        text += fmt::format(", guidance {:g} on t in [{:g}, {:g}]", request.cfg_scale, request.cfg_t_min,
                            request.cfg_t_max);
      return text;
    }
    return describe_ode_sampling(request, " on the instantaneous velocity");
  }

 private:
  bool conditional() const { return options_.null_label >= 0; }
  int64_t steps_of(const SampleRequest& request) const { return request.steps > 0 ? request.steps : sample_steps_; }

  ImfOptions options_;
  int64_t sample_steps_;
};

ImfOptions parse_imf_options(const RunConfig& c, const FlowRunSpec& spec) {
  ImfOptions o;
  o.time_distribution = parse_time_distribution(c.get_string("imf.time_distribution"));
  o.time_mu = c.get_float("imf.time_mu");
  o.time_sigma = c.get_float("imf.time_sigma");
  o.ratio_r_neq_t = c.get_float("imf.ratio_r_neq_t");
  o.adaptive_p = c.get_float("imf.adaptive_p");
  o.adaptive_c = c.get_float("imf.adaptive_c");
  o.omega_max = c.get_float("imf.omega_max");
  o.omega_beta = c.get_float("imf.omega_beta");
  const int64_t classes = c.get_int("model.classes");
  o.null_label = classes > 0 ? classes : -1;
  o.class_dropout = classes > 0 ? spec.path.class_dropout : 0.0;
  DF_CHECK(spec.path.coupling == "independent",
           "method.coupling = \"{}\": iMF pairs each sample with its own fresh noise; set method.coupling = "
           "\"independent\"",
           spec.path.coupling);
  const double sigma_min = c.get_float("method.sigma_min");
  DF_CHECK(spec.path.scheduler == "condot" && sigma_min == 0.0 && spec.path.t_max == 1.0,
           "method.path = \"{}\", method.sigma_min = {}, method.t_max = {}: iMF trains on MeanFlow's straight path "
           "from data to N(0, I) noise over the whole of [0, 1]; keep method.path = \"condot\", sigma_min = 0, "
           "t_max = 1",
           spec.path.scheduler, sigma_min, spec.path.t_max);
  DF_CHECK(classes > 0 || spec.sample.cfg_scale == 1.0,
           "sample.cfg_scale = {}: guidance needs class labels (model.classes > 0); keep 1", spec.sample.cfg_scale);
  // Scales above omega_max extrapolate (the reference samples its larger models that way).
  DF_CHECK(spec.sample.cfg_scale >= 1.0,
           "sample.cfg_scale = {}: iMF's guidance scales are >= 1 (it learns [1, imf.omega_max = {}])",
           spec.sample.cfg_scale, o.omega_max);
  o.validate();
  return o;
}

}  // namespace

MethodEntry imf_method_entry() {
  MethodEntry e;
  e.name = "imf";
  e.description = "improved MeanFlow (iMF): a second velocity head, the network's own tangent, guidance as an input";
  e.takes_class_labels = true;
  e.add_keys = [](ConfigSchema& s) {
    s.add_float("imf.ratio_r_neq_t", 0.5, "fraction of iMF samples with r != t (the rest use r = t)")
        .at_least(0)
        .at_most(1);
    s.add_string("imf.time_distribution", "logit_normal", "how t and r are drawn before ordering")
        .one_of({"logit_normal", "uniform"});
    s.add_float("imf.time_mu", -0.4, "mean of the logit-normal time distribution");
    s.add_float("imf.time_sigma", 1.0, "std of the logit-normal time distribution").greater_than(0);
    s.add_float("imf.adaptive_p", 1.0, "power p of each head's adaptive loss weight 1/(|error|^2 + c)^p; 0 is MSE")
        .at_least(0);
    s.add_float("imf.adaptive_c", 0.01, "constant c of the adaptive loss weight").greater_than(0);
    s.add_float("imf.omega_max", 8.0, "class-conditional: guidance scales are drawn from [1, omega_max]").at_least(1);
    s.add_float("imf.omega_beta", 1.0, "the scales' density is proportional to omega^-beta (1: log-uniform)")
        .at_least(0);
    s.add_int("imf.sample_steps", 1, "iMF sampling steps (uniform from t = 1 to 0) of the run's samples.png")
        .at_least(1);
  };
  e.configure = [](const RunConfig& c, const FlowRunSpec& spec) {
    return std::make_shared<const ImfMethod>(parse_imf_options(c, spec), c.get_int("imf.sample_steps"));
  };
  return e;
}

}  // namespace dualflow
