// Energy distance and sliced Wasserstein distance between sample sets (see sample_distance.h).
#include "train/sample_distance.h"

#include "train/data2d.h"

#include <algorithm>
#include <cmath>

#include "engine/dualflow.h"
#include "train/couplings.h"

namespace dualflow {
namespace {

Tensor as_rows(const Tensor& x, const char* who) {
  DF_CHECK(x.defined() && x.dim() >= 2 && x.size(0) >= 1, "{}: expected samples [N, ...] with N >= 1, given {}", who,
           x.defined() ? x.shape().str() : std::string("undefined"));
  return x.detach().to(Device::cpu()).to(DType::f64).contiguous().reshape({x.size(0), x.numel() / x.size(0)});
}

double mean_distance(const Tensor& a, const Tensor& b) { return mean(sqrt(pairwise_sq_distances(a, b))).item(); }

}  // namespace

double energy_distance(const Tensor& a, const Tensor& b) {
  Tensor ra = as_rows(a, "energy_distance"), rb = as_rows(b, "energy_distance");
  DF_CHECK(ra.size(1) == rb.size(1), "energy_distance: the sets have {} and {} dims per sample", ra.size(1),
           rb.size(1));
  return 2 * mean_distance(ra, rb) - mean_distance(ra, ra) - mean_distance(rb, rb);
}

double sliced_wasserstein2(const Tensor& a, const Tensor& b, int64_t projections, Generator& gen) {
  Tensor ra = as_rows(a, "sliced_wasserstein2"), rb = as_rows(b, "sliced_wasserstein2");
  DF_CHECK(ra.size(1) == rb.size(1), "sliced_wasserstein2: the sets have {} and {} dims per sample", ra.size(1),
           rb.size(1));
  DF_CHECK(ra.size(0) == rb.size(0), "sliced_wasserstein2: the sets must have equal sizes, given {} and {}", ra.size(0),
           rb.size(0));
  DF_CHECK(projections >= 1, "sliced_wasserstein2: projections must be >= 1, given {}", projections);
  const int64_t d = ra.size(1), n = ra.size(0);
  Tensor dirs = randn({d, projections}, gen, TensorOptions(DType::f64));
  dirs = dirs / sqrt(sum(square(dirs), {0}, true));
  std::vector<double> pa = matmul(ra, dirs).to_vector<double>(), pb = matmul(rb, dirs).to_vector<double>();
  double total = 0;
  std::vector<double> ca(n), cb(n);
  for (int64_t p = 0; p < projections; ++p) {
    for (int64_t i = 0; i < n; ++i) {
      ca[i] = pa[i * projections + p];
      cb[i] = pb[i * projections + p];
    }
    std::sort(ca.begin(), ca.end());
    std::sort(cb.begin(), cb.end());
    double w2 = 0;
    for (int64_t i = 0; i < n; ++i) w2 += (ca[i] - cb[i]) * (ca[i] - cb[i]);
    total += w2 / double(n);
  }
  return std::sqrt(total / double(projections));
}

DistanceToData distance_to_data(const std::string& data, const Tensor& samples, uint64_t seed, int64_t draws,
                                int64_t max_points) {
  DistanceToData d;
  d.points = std::min<int64_t>(samples.size(0), max_points);
  d.draws = draws;
  Generator gen(seed + 0x51ED);
  const TensorOptions f32(DType::f32);
  const Tensor first = samples.narrow(0, 0, d.points).to(Device::cpu());
  for (int64_t k = 0; k < draws; ++k) {
    Tensor a = sample_2d(data, d.points, gen, f32), b = sample_2d(data, d.points, gen, f32);
    d.model += energy_distance(first, a) / double(draws);
    d.floor += energy_distance(b, a) / double(draws);
  }
  d.ratio = d.model / d.floor;
  return d;
}

}  // namespace dualflow
