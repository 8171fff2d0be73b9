// Distances between two sample sets, for judging generated samples against data:
// the energy distance and the sliced 2-Wasserstein distance. Both treat dim 0 as the sample
// index and flatten the rest, and compute in f64 whatever the inputs' dtype.
#pragma once
#include <string>

#include "engine/random.h"
#include "engine/tensor.h"

namespace dualflow {

// Squared energy distance, the V-statistic (Székely & Rizzo):
//   D^2 = 2 mean_ij |a_i − b_j| − mean_ij |a_i − a_j| − mean_ij |b_i − b_j|.
// Zero only for identical empirical distributions; for two independent draws of n points from
// one distribution its expectation is about (E|X − X'|) (1/n_a + 1/n_b), the floor a model's
// samples are compared against. O(n^2) memory.
double energy_distance(const Tensor& a, const Tensor& b);

// Sliced 2-Wasserstein distance: sqrt of the mean over `projections` random unit directions of
// the squared W2 distance between the projected sets (sorted and matched; the sets must have
// equal sizes). Directions come from `gen`.
double sliced_wasserstein2(const Tensor& a, const Tensor& b, int64_t projections, Generator& gen);

// How far 2-D samples are from a named data set of data2d.h, beside the floor that sampling noise
// alone gives: the energy distance of the first (up to) max_points samples to as many fresh data
// points, and of two independent data draws of that size, each a mean over `draws` draws (one
// draw's floor varies by a factor of 3 or more). ratio = model / floor: about 1 for samples as
// good as the data's own.
struct DistanceToData {
  double model = 0, floor = 0, ratio = 0;
  int64_t points = 0, draws = 0;
};
DistanceToData distance_to_data(const std::string& data, const Tensor& samples, uint64_t seed, int64_t draws = 6,
                                int64_t max_points = 4000);

}  // namespace dualflow
