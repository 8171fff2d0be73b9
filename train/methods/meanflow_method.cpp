// method.name = "meanflow": MeanFlow. The network u(z, t, h = t - r) learns the average
// velocity over [r, t] with the target v - (t - r) du/dt from one JVP, an adaptive loss
// weight, a (t, r) sampler and guidance folded into the target; sampled in a few jumps of
// the average velocity, or through the ODE of its instantaneous velocity u(z, t, t).
#include <fmt/format.h>

#include "train/flow_run.h"
#include "train/meanflow.h"
#include "train/methods/method.h"

namespace dualflow {

namespace {

constexpr const char* kMeanFlowSampler = "meanflow";

class MeanFlowMethod final : public Method {
 public:
  MeanFlowMethod(MeanFlowOptions options, int64_t sample_steps) : options_(options), sample_steps_(sample_steps) {}

  bool network_takes_interval() const override { return true; }

  void prepare_model(VelocityModel& model, const FlowRunSpec&) const override {
    // MeanFlow's own straight path runs from data to N(0, I) over the whole of [0, 1].
    model.t_end = 1.0;
    model.source_std = 1.0;
    model.net = flow_matching_time_velocity(model.network);
  }

  Objective objective(const TrainingSetup& setup) const override {
    const DataSource data = setup.data();
    const VelocityNet net = setup.model.network;
    const MeanFlowOptions mo = options_;
    const BatchShard shard = setup.shard;
    return [=](Generator& gen, int64_t step) {
      DataBatch d = data(gen, step);
      const MeanFlowDraws in = draw_meanflow_inputs(d.x, d.labels, mo, gen);
      d.x = shard.rows(d.x);
      MeanFlowLoss l = meanflow_loss(net, d.x, shard.rows(in.e), shard.rows(in.t), shard.rows(in.r), mo,
                                     shard.rows(in.labels));
      // With the adaptive weight the loss is about mean L / (L + c), close to 1 whatever the
      // fit; the unweighted mse and the error against the instantaneous velocity v = e - x
      // show the progress.
      return StepOutcome{l.loss,
                         {{"x", d.x}, {"target", l.target}, {"dudt", l.dudt}},
                         {{"mse", l.mse}, {"velocity_error", l.velocity_error}}};
    };
  }

  std::vector<std::string> samplers() const override { return {kMeanFlowSampler, kOdeSampler}; }

  SampledChunk sample(const VelocityModel& model, const Tensor& noise, const Tensor& labels,
                      const SampleRequest& request) const override {
    if (request.sampler != kMeanFlowSampler) return sample_ode(model, noise, labels, request);
    MeanFlowSample s = meanflow_sample(model.network, noise, steps_of(request), labels);
    return {s.x, s.nfe};
  }

  std::string describe_sampling(const SampleRequest& request) const override {
    if (request.sampler == kMeanFlowSampler) {
      const int64_t steps = steps_of(request);
      return fmt::format("MeanFlow, {} step{}", steps, steps == 1 ? "" : "s");
    }
    return describe_ode_sampling(request, " on the instantaneous velocity");
  }

 private:
  int64_t steps_of(const SampleRequest& request) const { return request.steps > 0 ? request.steps : sample_steps_; }

  MeanFlowOptions options_;
  int64_t sample_steps_;
};

MeanFlowOptions parse_meanflow_options(const RunConfig& c, const FlowRunSpec& spec) {
  MeanFlowOptions o;
  o.time_distribution = parse_time_distribution(c.get_string("meanflow.time_distribution"));
  o.time_mu = c.get_float("meanflow.time_mu");
  o.time_sigma = c.get_float("meanflow.time_sigma");
  o.ratio_r_neq_t = c.get_float("meanflow.ratio_r_neq_t");
  o.adaptive_p = c.get_float("meanflow.adaptive_p");
  o.adaptive_c = c.get_float("meanflow.adaptive_c");
  o.class_dropout = spec.path.class_dropout;
  // The models' null class is num_classes; without classes there is none (and no labels).
  const int64_t classes = c.get_int("model.classes");
  o.null_label = classes > 0 ? classes : -1;
  o.guidance_omega = c.get_float("meanflow.guidance_omega");
  o.guidance_kappa = c.get_float("meanflow.guidance_kappa");
  o.guidance_t_min = c.get_float("meanflow.guidance_t_min");
  o.guidance_t_max = c.get_float("meanflow.guidance_t_max");
  // MeanFlow draws its own noise and times on its own straight path z_t = (1 - t) x + t e.
  DF_CHECK(spec.path.coupling == "independent",
           "method.coupling = \"{}\": MeanFlow pairs each sample with its own fresh noise; set method.coupling = "
           "\"independent\"",
           spec.path.coupling);
  const double sigma_min = c.get_float("method.sigma_min");
  DF_CHECK(
      spec.path.scheduler == "condot" && sigma_min == 0.0 && spec.path.t_max == 1.0,
      "method.path = \"{}\", method.sigma_min = {}, method.t_max = {}: MeanFlow trains on its own straight path "
      "from data to N(0, I) noise over the whole of [0, 1]; keep method.path = \"condot\", sigma_min = 0, t_max = 1",
      spec.path.scheduler, sigma_min, spec.path.t_max);
  DF_CHECK(classes > 0 || (o.guidance_omega == 1.0 && o.guidance_kappa == 0.0),
           "meanflow.guidance_omega = {}, meanflow.guidance_kappa = {}: guidance in training needs class labels "
           "(model.classes > 0); keep omega = 1 and kappa = 0",
           o.guidance_omega, o.guidance_kappa);
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

MethodEntry meanflow_method_entry() {
  MethodEntry e;
  e.name = "meanflow";
  e.description = "MeanFlow";
  e.takes_class_labels = true;
  e.add_keys = [](ConfigSchema& s) {
    s.add_float("meanflow.ratio_r_neq_t", 0.25, "fraction of MeanFlow samples with r != t (the rest use r = t)")
        .at_least(0)
        .at_most(1);
    s.add_float("meanflow.time_mu", -0.4, "mean of the logit-normal time distribution");
    s.add_float("meanflow.time_sigma", 1.0, "std of the logit-normal time distribution").greater_than(0);
    s.add_float("meanflow.adaptive_p", 1.0, "power p of the adaptive loss weight 1/(|error|^2 + c)^p; 0 is plain MSE")
        .at_least(0);
    s.add_float("meanflow.adaptive_c", 1e-3, "constant c of the adaptive loss weight, keeps it finite").greater_than(0);
    s.add_string("meanflow.time_distribution", "logit_normal", "how t and r are drawn before ordering")
        .one_of({"logit_normal", "uniform"});
    s.add_float("meanflow.guidance_omega", 1.0,
                "guidance omega folded into the training target (class-conditional models); 1 is none")
        .greater_than(0);
    s.add_float("meanflow.guidance_kappa", 0.0,
                "guidance kappa (the conditional branch's share); effective scale omega/(1 - kappa)")
        .at_least(0)
        .less_than(1);
    s.add_float("meanflow.guidance_t_min", 0.0, "guidance applies to times t in [t_min, t_max]").at_least(0).at_most(1);
    s.add_float("meanflow.guidance_t_max", 1.0, "guidance applies to times t in [t_min, t_max]").at_least(0).at_most(1);
    s.add_int("meanflow.sample_steps", 1, "MeanFlow sampling steps (uniform from t = 1 to 0) of the run's samples.png")
        .at_least(1);
  };
  e.configure = [](const RunConfig& c, const FlowRunSpec& spec) {
    return std::make_shared<const MeanFlowMethod>(parse_meanflow_options(c, spec), c.get_int("meanflow.sample_steps"));
  };
  return e;
}

}  // namespace dualflow
