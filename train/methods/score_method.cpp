// method.name = "score": denoising score matching. The network predicts the noise of x_t on a
// path with alpha_0 > 0 (VP or VE) and is sampled through the probability-flow ODE.
#include "train/methods/coupled_batch.h"
#include "train/score_matching.h"

namespace dualflow {

namespace {

class ScoreMethod final : public Method {
 public:
  void prepare_model(VelocityModel& model, const FlowRunSpec& spec) const override {
    use_path_velocity(model, spec);
    auto path = spec.path.affine_path();
    const double alpha0 = scheduler_at(*path, 0.0).alpha.item();
    DF_CHECK(alpha0 > 0,
             "method.name = \"score\" turns predicted noise into a velocity by dividing by alpha_t, which is 0 at "
             "t = 0 on the {} path; use method.path = \"vp\" or \"ve\"",
             spec.path.scheduler);
    model.net = probability_flow_velocity(model.network, path);
  }

  Objective objective(const TrainingSetup& setup) const override {
    const CoupledBatches batches = coupled_batches(setup);
    const std::shared_ptr<AffinePath> path = setup.spec.path.affine_path();
    const VelocityNet net = setup.model.network;
    return [=](Generator& gen, int64_t step) {
      CoupledTrainingBatch b = batches(gen, step);
      return StepOutcome{denoising_score_matching_loss(net, *path, b.x0, b.x1, b.t, b.labels),
                         {{"x0", b.x0}, {"x1", b.x1}, {"t", b.t}},
                         {}};
    };
  }
};

}  // namespace

MethodEntry score_method_entry() {
  MethodEntry e;
  e.name = "score";
  e.description = "denoising score matching: noise prediction, sampled by the probability-flow ODE";
  e.configure = [](const RunConfig&, const FlowRunSpec& spec) {
    DF_CHECK(spec.path.coupling == "independent",
             "method.coupling = \"{}\": method \"score\" learns E[x_0 | x_t] under independently drawn pairs; set "
             "method.coupling = \"independent\"",
             spec.path.coupling);
    return std::make_shared<const ScoreMethod>();
  };
  return e;
}

}  // namespace dualflow
