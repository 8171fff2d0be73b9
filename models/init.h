// In-place initialisers for parameters (the torch.nn.init family), drawing from a Generator so
// a model is reproducible from its seed. They run under NoGradGuard and keep dtype and device.
#pragma once
#include "engine/dualflow.h"

namespace dualflow::init {

void uniform_(const Tensor& p, double low, double high, Generator& gen);
void normal_(const Tensor& p, double mean, double std, Generator& gen);
void constant_(const Tensor& p, double value);
inline void zeros_(const Tensor& p) { constant_(p, 0.0); }
inline void ones_(const Tensor& p) { constant_(p, 1.0); }

// PyTorch's fans: dim 1 (times the receptive field) is fan_in, dim 0 fan_out.
struct Fans {
  int64_t in, out;
};
Fans fans(const Tensor& p);
// U(-a, a) with a = sqrt(6 / (fan_in + fan_out)).
void xavier_uniform_(const Tensor& p, Generator& gen);
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Linear and Conv2d (kaiming_uniform
// with a = sqrt(5) for the weight, and the same bound for the bias).
void fan_in_uniform_(const Tensor& p, int64_t fan_in, Generator& gen);

}  // namespace dualflow::init
