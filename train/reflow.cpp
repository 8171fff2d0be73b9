// Reflow pairs and the straightness of a flow (see reflow.h).
#include "train/reflow.h"

namespace dualflow {

ReflowPairs draw_reflow_pairs(const VelocityNet& teacher, int64_t n, const Shape& sample_shape,
                              const OdeOptions& options, Generator& gen, TensorOptions opts, int64_t chunk,
                              double source_std, double t_end) {
  DF_CHECK(n >= 1, "draw_reflow_pairs: n must be >= 1, given {}", n);
  DF_CHECK(chunk >= 1, "draw_reflow_pairs: chunk must be >= 1, given {}", chunk);
  DF_CHECK(source_std > 0, "draw_reflow_pairs: source_std must be > 0, given {}", source_std);
  std::vector<int64_t> dims = {n};
  for (int64_t d : sample_shape) dims.push_back(d);
  Tensor x0 = mul(randn(Shape(dims), gen, opts), source_std);
  std::vector<Tensor> ends;
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t count = std::min(chunk, n - start);
    ends.push_back(sample_flow(teacher, x0.narrow(0, start, count), options, {}, t_end).x);
  }
  return {x0, ends.size() == 1 ? ends[0] : cat(ends, 0)};
}

Tensor flow_straightness(const VelocityNet& net, const Tensor& x0, int64_t steps) {
  DF_CHECK(steps >= 1, "flow_straightness: steps must be >= 1, given {}", steps);
  NoGradGuard ng;
  const int64_t n = x0.size(0);
  const VelocityField field = velocity_field(net);
  // Velocities along the Euler trajectory; the endpoint is known only at the end, so keep them.
  std::vector<Tensor> velocities;
  Tensor x = x0;
  const double dt = 1.0 / double(steps);
  for (int64_t k = 0; k < steps; ++k) {
    Tensor v = field(x, double(k) * dt);
    velocities.push_back(v);
    x = x + v * dt;
  }
  // With Euler steps x_1 − x_0 is the mean of the velocities used.
  Tensor displacement = x - x0;
  Tensor total = zeros({n}, x0.options());
  std::vector<int64_t> sample_dims;
  for (int64_t d = 1; d < x0.dim(); ++d) sample_dims.push_back(d);
  for (const Tensor& v : velocities) total = total + sum(square(displacement - v), sample_dims);
  return total * dt;
}

}  // namespace dualflow
