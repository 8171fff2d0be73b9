// method.name = "cfm": conditional flow matching. The network regresses the conditional
// velocity of the configured path between coupled noise and data; sampled by its ODE.
#include "train/methods/coupled_batch.h"

namespace dualflow {

namespace {

class CfmMethod final : public Method {
 public:
  Objective objective(const TrainingSetup& setup) const override {
    const CoupledBatches batches = coupled_batches(setup);
    const std::shared_ptr<ProbabilityPath> path = training_path(setup);
    const VelocityNet net = setup.model.network;
    return [=](Generator& gen, int64_t step) {
      CoupledTrainingBatch b = batches(gen, step);
      return StepOutcome{cfm_loss(net, *path, b.x0, b.x1, b.t, b.labels), {{"x0", b.x0}, {"x1", b.x1}, {"t", b.t}}, {}};
    };
  }
};

}  // namespace

MethodEntry cfm_method_entry() {
  MethodEntry e;
  e.name = "cfm";
  e.description = "conditional flow matching";
  e.takes_class_labels = true;
  e.configure = [](const RunConfig&, const FlowRunSpec&) { return std::make_shared<const CfmMethod>(); };
  return e;
}

}  // namespace dualflow
