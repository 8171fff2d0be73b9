// Conditional flow matching loss, guided velocity fields and sampling (see cfm.h).
#include "train/cfm.h"

namespace dualflow {

Tensor cfm_loss(const VelocityNet& net, const ProbabilityPath& path, const Tensor& x0, const Tensor& x1,
                const Tensor& t, const Tensor& labels) {
  PathSample s = path.sample(x0, x1, t);
  Tensor v = net(s.x_t, t, Tensor(), labels);
  DF_CHECK(v.shape() == s.u_t.shape(), "cfm_loss: the network returned {} for a target of shape {}", v.shape().str(),
           s.u_t.shape().str());
  return mean(square(v - stop_gradient(s.u_t)));
}

VelocityField velocity_field(const VelocityNet& net, const GuidanceOptions& g) {
  const bool guided = g.scale != 1.0;
  if (guided) {
    DF_CHECK(g.labels.defined() && g.null_label >= 0,
             "classifier-free guidance (scale {}) needs class labels and the null class index", g.scale);
  }
  return [net, g, guided](const Tensor& x, double t) -> Tensor {
    const int64_t n = x.shape()[0];
    if (!guided) return net(x, full({n}, t, x.options()), Tensor(), g.labels);
    // One batched call evaluates the conditional and the unconditional branch.
    Tensor null_labels = full({n}, double(g.null_label), TensorOptions(DType::i64, x.device()));
    Tensor both = net(cat({x, x}, 0), full({2 * n}, t, x.options()), Tensor(), cat({g.labels, null_labels}, 0));
    Tensor cond = both.narrow(0, 0, n), uncond = both.narrow(0, n, n);
    return cond * g.scale + uncond * (1.0 - g.scale);
  };
}

OdeResult sample_flow(const VelocityNet& net, const Tensor& x0, const OdeOptions& options,
                      const GuidanceOptions& guidance, double t_end) {
  DF_CHECK(t_end > 0 && t_end <= 1, "sample_flow: t_end must lie in (0, 1], given {}", t_end);
  NoGradGuard ng;
  return odeint(velocity_field(net, guidance), x0, 0.0, t_end, options);
}

}  // namespace dualflow
