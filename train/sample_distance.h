// Distances between two sample sets, for judging generated samples against data:
// the energy distance and the sliced 2-Wasserstein distance. Both treat dim 0 as the sample
// index and flatten the rest, and compute in f64 whatever the inputs' dtype.
#pragma once
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

}  // namespace dualflow
