// Dropout with inverted scaling.
#include "models/dropout.h"

namespace dualflow {

Dropout::Dropout(double p, uint64_t seed) : UnaryModule("Dropout"), p_(p), gen_(seed) {
  DF_CHECK(p >= 0.0 && p <= 1.0, "Dropout: p must be in [0, 1], got {}", p);
}

std::string Dropout::describe() const { return fmt::format("Dropout(p={})", p_); }

Tensor Dropout::forward(const Tensor& x) { return forward(x, gen_); }

Tensor Dropout::forward(const Tensor& x, Generator& gen) {
  DF_CHECK(x.defined() && is_floating(x.dtype()), "{}: expected a floating input, got {}", describe(),
           x.defined() ? dtype_name(x.dtype()) : "undefined");
  if (!is_training() || p_ == 0.0) return x;
  if (p_ == 1.0) return x * zeros(Shape{}, x.options());
  // keep ~ Bernoulli(1 - p), scaled so that E[y] = x.
  Tensor keep = bernoulli(x.shape(), 1.0 - p_, gen, x.options());
  return x * (keep * (1.0 / (1.0 - p_)));
}

}  // namespace dualflow
