// Random factories over the backends' Philox kernels.
#include "engine/random.h"

#include "engine/ops/op_support.h"

namespace dualflow {

Generator& default_generator() {
  thread_local Generator g(0);
  return g;
}
void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace {
Tensor draw(const char* name, philox::Dist dist, const Shape& shape, double a, double b, Generator& gen,
            TensorOptions opts) {
  Tensor out = Tensor::empty(shape, opts);
  int64_t n = out.numel();
  if (n == 0) return out;
  const int lanes = philox::lanes(dist, opts.dtype == DType::f64);
  uint64_t offset = gen.advance(uint64_t((n + lanes - 1) / lanes));
  backend_for(opts.device).random(opts.device.index, dist, opts.dtype, out.raw_data(), n, gen.seed(), offset, a, b);
  (void)name;
  return out;
}
}  // namespace

Tensor normal_window(const Shape& shape, double mean, double std, const Generator& gen, int64_t first,
                     TensorOptions opts) {
  DF_CHECK(is_floating(opts.dtype), "normal_window: expected a floating dtype, got {}", dtype_name(opts.dtype));
  DF_CHECK(std >= 0, "normal_window: std must be >= 0, got {}", std);
  DF_CHECK(first >= 0, "normal_window: first must be >= 0, got {}", first);
  const int64_t n = shape.numel();
  if (n == 0) return Tensor::empty(shape, opts);
  // The window starts inside a block: draw from that block's first element, then drop the lead.
  const int lanes = philox::lanes(philox::Dist::Normal, opts.dtype == DType::f64);
  const int64_t lead = first % lanes;
  Tensor out = Tensor::empty(Shape{n + lead}, opts);
  backend_for(opts.device)
      .random(opts.device.index, philox::Dist::Normal, opts.dtype, out.raw_data(), n + lead, gen.seed(),
              gen.offset() + uint64_t(first / lanes), mean, std);
  return (lead == 0 ? out : out.narrow(0, lead, n).contiguous()).reshape(shape);
}

Tensor uniform(const Shape& shape, double low, double high, Generator& gen, TensorOptions opts) {
  DF_CHECK(is_floating(opts.dtype), "uniform: expected a floating dtype, got {}", dtype_name(opts.dtype));
  DF_CHECK(low <= high, "uniform: low {} is above high {}", low, high);
  return draw("uniform", philox::Dist::Uniform, shape, low, high, gen, opts);
}
Tensor rand(const Shape& shape, Generator& gen, TensorOptions opts) { return uniform(shape, 0.0, 1.0, gen, opts); }
Tensor normal(const Shape& shape, double mean, double std, Generator& gen, TensorOptions opts) {
  DF_CHECK(is_floating(opts.dtype), "normal: expected a floating dtype, got {}", dtype_name(opts.dtype));
  DF_CHECK(std >= 0, "normal: std must be >= 0, got {}", std);
  return draw("normal", philox::Dist::Normal, shape, mean, std, gen, opts);
}
Tensor randn(const Shape& shape, Generator& gen, TensorOptions opts) { return normal(shape, 0.0, 1.0, gen, opts); }
Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator& gen, TensorOptions opts) {
  DF_CHECK(high > low, "randint: high {} must be above low {}", high, low);
  DF_CHECK(high - low <= (int64_t(1) << 32), "randint: range {} exceeds 2^32", high - low);
  return draw("randint", philox::Dist::RandInt, shape, double(low), double(high), gen, opts);
}
Tensor bernoulli(const Shape& shape, double p, Generator& gen, TensorOptions opts) {
  DF_CHECK(p >= 0 && p <= 1, "bernoulli: p must be in [0, 1], got {}", p);
  return draw("bernoulli", philox::Dist::Bernoulli, shape, p, 0.0, gen, opts);
}

}  // namespace dualflow
