// VelocityNetwork: the one interface of every network a flow is trained with. It maps a batch
// of states x, times t, optional intervals h (MeanFlow's t - r) and optional class labels to a
// tensor shaped like x: a velocity, a predicted noise or an average velocity, as the training
// method reads it. MLPVelocity, UNet and DiT implement it; train/networks/ registers them by
// model.kind.
#pragma once
#include <string>

#include "models/module.h"

namespace dualflow {

class VelocityNetwork : public Module {
 public:
  // x [N, ...], t [N], h [N] (undefined unless the network was built to take it), labels i64 [N]
  // (undefined for unconditional networks; the null class selects the unconditional branch).
  virtual Tensor forward(const Tensor& x, const Tensor& t, const Tensor& h = Tensor(),
                         const Tensor& labels = Tensor()) = 0;

 protected:
  explicit VelocityNetwork(std::string type_name) : Module(std::move(type_name)) {}
};

}  // namespace dualflow
