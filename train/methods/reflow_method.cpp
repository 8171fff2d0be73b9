// method.name = "reflow": rectified-flow reflow. A trained flow (the teacher) draws (noise,
// sample) pairs through its ODE once; the network learns straight CondOT paths between them,
// starting from the teacher's weights.
#include <fmt/format.h>

#include "train/flow_run.h"
#include "train/methods/method.h"
#include "train/reflow.h"

namespace dualflow {

namespace {

struct ReflowSettings {
  std::string teacher;
  int64_t pairs = 0;
  OdeOptions ode;  // the solver that draws the pairs
  bool init_from_teacher = true;
};

class ReflowMethod final : public Method {
 public:
  explicit ReflowMethod(ReflowSettings settings) : settings_(std::move(settings)) {}

  Objective objective(const TrainingSetup& setup) const override {
    const FlowRunSpec& spec = setup.spec;
    LoadedModel teacher = load_model_from_checkpoint(settings_.teacher);
    if (!setup.quiet) fmt::print("drawing {} pairs from the teacher {}\n", settings_.pairs, settings_.teacher);
    auto pairs = std::make_shared<const ReflowPairs>(teacher_pairs(teacher, spec, setup.options));
    if (settings_.init_from_teacher && !setup.resume) {
      try {
        setup.model.module->load_state_dict(teacher.model.module->state_dict());
      } catch (const std::exception& e) {
        fail(
            "reflow.init_from_teacher: the teacher's network does not fit this run's model settings ({}); give "
            "the same model.* keys or set reflow.init_from_teacher = false",
            e.what());
      }
    }
    const std::shared_ptr<AffinePath> path = spec.path.affine_path();
    const VelocityNet net = setup.model.network;
    const int64_t batch = spec.train.batch;
    const double t_max = spec.path.t_max;
    const TensorOptions opts = setup.options;
    const BatchShard shard = setup.shard;
    return [=](Generator& gen, int64_t) {
      Tensor rows = shard.rows(randint(0, pairs->x0.size(0), {batch}, gen, TensorOptions(DType::i64, opts.device)));
      Tensor x0 = index_select(pairs->x0, 0, rows), x1 = index_select(pairs->x1, 0, rows);
      Tensor t = shard.rows(rand({batch}, gen, opts) * t_max);
      return StepOutcome{cfm_loss(net, *path, x0, x1, t), {{"x0", x0}, {"x1", x1}, {"t", t}}, {}};
    };
  }

 private:
  // The teacher's pairs (drawn again, identically, when a run resumes), after checking that the
  // teacher fits this run.
  ReflowPairs teacher_pairs(const LoadedModel& teacher, const FlowRunSpec& spec, TensorOptions opts) const {
    const std::string& path = settings_.teacher;
    DF_CHECK(teacher.spec.data.name == spec.data.name,
             "reflow.teacher '{}' was trained on data.name = \"{}\", this run names \"{}\"", path,
             teacher.spec.data.name, spec.data.name);
    DF_CHECK(std::abs(teacher.model.source_std - 1.0) < 1e-3,
             "reflow.teacher '{}' starts from N(0, {:.3g}^2 I); reflow trains CondOT paths from N(0, I) noise, so "
             "the teacher must use a path with a unit-variance source (not ve)",
             path, teacher.model.source_std);
    Generator pair_gen(spec.run.seed + 0x5DEECE66Dull);
    return draw_reflow_pairs(teacher.model.net, settings_.pairs, teacher.model.sample_shape, settings_.ode, pair_gen,
                             opts, 4096, 1.0, teacher.model.t_end);
  }

  ReflowSettings settings_;
};

}  // namespace

MethodEntry reflow_method_entry() {
  MethodEntry e;
  e.name = "reflow";
  e.description = "reflow of a trained flow";
  e.add_keys = [](ConfigSchema& s) {
    s.add_string("reflow.teacher", "", "checkpoint of the trained flow whose ODE pairs are learned (method reflow)");
    s.add_int("reflow.pairs", 20000, "number of (noise, sample) pairs drawn from the teacher").at_least(1);
    s.add_string("reflow.solver", "rk4", "solver that draws the teacher's pairs").one_of(ode_method_names());
    s.add_int("reflow.steps", 25, "steps of a fixed-step reflow.solver").at_least(1);
    s.add_bool("reflow.init_from_teacher", true, "start from the teacher's weights (as rectified flow does)");
  };
  e.configure = [](const RunConfig& c, const FlowRunSpec& spec) {
    DF_CHECK(spec.path.coupling == "independent",
             "method.coupling = \"{}\": method \"reflow\" trains on the teacher's own (noise, sample) pairs; set "
             "method.coupling = \"independent\"",
             spec.path.coupling);
    ReflowSettings r;
    r.teacher = c.get_string("reflow.teacher");
    DF_CHECK(!r.teacher.empty(), "method.name = \"reflow\" needs reflow.teacher = the checkpoint of a trained flow");
    DF_CHECK(
        spec.path.scheduler == "condot",
        "method.path = \"{}\": reflow trains straight (CondOT) paths between its pairs; set method.path = \"condot\"",
        spec.path.scheduler);
    r.pairs = c.get_int("reflow.pairs");
    r.ode = ode_options_with(spec.sample.ode, c.get_string("reflow.solver"), c.get_int("reflow.steps"), 0, 0);
    r.init_from_teacher = c.get_bool("reflow.init_from_teacher");
    return std::make_shared<const ReflowMethod>(std::move(r));
  };
  return e;
}

}  // namespace dualflow
