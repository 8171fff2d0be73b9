// Parameter initialisers: draw in the parameter's dtype and device, then copy in place.
#include "models/init.h"

#include <cmath>

namespace dualflow::init {

void uniform_(const Tensor& p, double low, double high, Generator& gen) {
  NoGradGuard ng;
  copy_(p, uniform(p.shape(), low, high, gen, p.options()));
}

void normal_(const Tensor& p, double mean, double std, Generator& gen) {
  NoGradGuard ng;
  copy_(p, normal(p.shape(), mean, std, gen, p.options()));
}

void constant_(const Tensor& p, double value) {
  NoGradGuard ng;
  fill_(p, value);
}

Fans fans(const Tensor& p) {
  DF_CHECK(p.dim() >= 2, "init: fan_in/fan_out need a tensor of at least 2 dims, got shape {}", p.shape().str());
  int64_t receptive = 1;
  for (int i = 2; i < p.dim(); ++i) receptive *= p.shape()[i];
  return {p.shape()[1] * receptive, p.shape()[0] * receptive};
}

void xavier_uniform_(const Tensor& p, Generator& gen) {
  Fans f = fans(p);
  double a = std::sqrt(6.0 / double(f.in + f.out));
  uniform_(p, -a, a, gen);
}

void fan_in_uniform_(const Tensor& p, int64_t fan_in, Generator& gen) {
  double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
  uniform_(p, -bound, bound, gen);
}

}  // namespace dualflow::init
