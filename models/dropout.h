// Dropout: zeroes each element with probability p and scales the rest by 1/(1-p) in training
// mode (so eval needs no rescaling); the identity in eval mode. The mask comes from the
// module's own Generator, so a run is reproducible and its state can be checkpointed.
#pragma once
#include "models/module.h"

namespace dualflow {

class Dropout : public UnaryModule {
 public:
  explicit Dropout(double p, uint64_t seed = 0);
  std::string describe() const override;
  Tensor forward(const Tensor& x) override;
  // The same, drawing the mask from `gen` instead of the module's generator.
  Tensor forward(const Tensor& x, Generator& gen);
  double p() const { return p_; }
  Generator& generator() { return gen_; }

 private:
  double p_;
  Generator gen_;
};

}  // namespace dualflow
