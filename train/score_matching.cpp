// Denoising score matching and the probability-flow velocity (see score_matching.h).
#include "train/score_matching.h"

namespace dualflow {

Tensor denoising_score_matching_loss(const VelocityNet& epsilon_net, const AffinePath& path, const Tensor& x0,
                                     const Tensor& x1, const Tensor& t, const Tensor& labels) {
  PathSample s = path.sample(x0, x1, t);
  Tensor eps = epsilon_net(s.x_t, t, Tensor(), labels);
  DF_CHECK(eps.shape() == x0.shape(), "denoising_score_matching_loss: the network returned {} for noise of shape {}",
           eps.shape().str(), x0.shape().str());
  return mean(square(eps - stop_gradient(x0)));
}

VelocityNet probability_flow_velocity(const VelocityNet& epsilon_net, std::shared_ptr<const AffinePath> path) {
  DF_CHECK(epsilon_net && path, "probability_flow_velocity: needs a network and a path");
  return [epsilon_net, path](const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& labels) {
    return path->epsilon_to_velocity(epsilon_net(x, t, h, labels), x, t);
  };
}

}  // namespace dualflow
