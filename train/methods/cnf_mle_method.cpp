// method.name = "cnf_mle": a continuous normalizing flow trained by maximum likelihood. The
// loss is -log p(x) by the change of variables along the ODE (exact or Hutchinson divergence),
// back-propagated through a fixed-step solver whose interior times may be jittered each step.
#include "train/likelihood.h"
#include "train/methods/method.h"

namespace dualflow {

namespace {

class CnfMleMethod final : public Method {
 public:
  CnfMleMethod(LikelihoodOptions likelihood, double jitter) : likelihood_(likelihood), jitter_(jitter) {}

  Objective objective(const TrainingSetup& setup) const override {
    LikelihoodOptions lo = likelihood_;
    lo.t_data = setup.model.t_end;
    lo.prior_std = setup.model.source_std;
    const VelocityField field = velocity_field(setup.model.net);
    const DataSource data = setup.data();
    const double jitter = jitter_;
    const BatchShard shard = setup.shard;
    return [=](Generator& gen, int64_t step) {
      Tensor x1 = data(gen, step).x;
      LikelihoodOptions step_options = lo;
      if (jitter > 0) step_options.ode.time_grid = jittered_time_grid(lo.t_data, 0.0, lo.ode.steps, jitter, gen);
      Tensor probe;
      if (lo.divergence == DivergenceMethod::Hutchinson)
        probe = sample_probe(probe_shape(x1.shape(), lo.probes), lo.probe, gen, x1.options());
      x1 = shard.rows(x1);
      return StepOutcome{cnf_nll_loss(field, x1, step_options, shard.rows(probe)), {{"x1", x1}}, {}};
    };
  }

 private:
  LikelihoodOptions likelihood_;
  double jitter_;
};

}  // namespace

MethodEntry cnf_mle_method_entry() {
  MethodEntry e;
  e.name = "cnf_mle";
  e.description = "maximum-likelihood CNF";
  e.add_keys = [](ConfigSchema& s) {
    s.add_string("cnf.solver", "rk4", "fixed-step solver the likelihood is back-propagated through (method cnf_mle)")
        .one_of(ode_method_names(/*fixed_step_only=*/true));
    s.add_int("cnf.steps", 10, "solver steps of the training likelihood (method cnf_mle)").at_least(1);
    s.add_string("cnf.divergence", "exact", "divergence of the training likelihood: exact or a Hutchinson estimate")
        .one_of({"exact", "hutchinson"});
    s.add_string("cnf.probe", "rademacher", "Hutchinson probe distribution").one_of({"rademacher", "gaussian"});
    s.add_int("cnf.probes", 1,
              "Hutchinson probes per sample, averaged: the estimate's variance falls as 1/probes, and all probes share "
              "one primal pass of the network")
        .at_least(1);
    s.add_float("cnf.grid_jitter", 0.5,
                "move the solver's interior time points by up to +-jitter/2 of a step, drawn afresh each step, so the "
                "network cannot fit one fixed discretisation instead of the ODE; 0 keeps the uniform grid")
        .at_least(0)
        .less_than(1);
  };
  e.configure = [](const RunConfig& c, const FlowRunSpec&) {
    LikelihoodOptions o;
    o.ode.method = parse_ode_method(c.get_string("cnf.solver"));
    o.ode.steps = c.get_int("cnf.steps");
    o.divergence = parse_divergence_method(c.get_string("cnf.divergence"));
    o.probe = parse_probe_distribution(c.get_string("cnf.probe"));
    o.probes = c.get_int("cnf.probes");
    return std::make_shared<const CnfMleMethod>(o, c.get_float("cnf.grid_jitter"));
  };
  return e;
}

}  // namespace dualflow
