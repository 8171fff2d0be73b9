// The gradient half of a training step (see gradient_step.h).
#include "train/gradient_step.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "train/json_text.h"

namespace dualflow {

bool GradientStep::finite() const { return std::isfinite(loss) && std::isfinite(grad_norm); }

const char* GradientStep::bad_quantity() const { return std::isfinite(loss) ? "gradient norm" : "loss"; }

double GradientStep::bad_value() const { return std::isfinite(loss) ? grad_norm : loss; }

std::string GradientStep::non_finite_record(int64_t step) const {
  return fmt::format(R"({{"step":{},"event":"non_finite","loss":{},"grad_norm":{})", step, json_number(loss),
                     json_number(grad_norm));
}

GradientStep compute_gradients(const Tensor& loss, Optimizer& opt, const NamedTensors& params, double clip,
                               const GradientCombiner& combine) {
  GradientStep g;
  g.loss = loss.to(DType::f64).item();
  g.grad_norm = std::numeric_limits<double>::quiet_NaN();
  opt.zero_grad();
  if (std::isfinite(g.loss)) loss.backward();
  if (combine) combine(g.loss);
  if (std::isfinite(g.loss))
    g.grad_norm = clip_grad_norm(params, clip > 0 ? clip : std::numeric_limits<double>::infinity());
  return g;
}

}  // namespace dualflow
