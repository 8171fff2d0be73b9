// Built-in 2-D toy datasets for Flow Matching experiments, drawn from a Generator into [N, 2]
// tensors: checkerboard (exactly as docs/BENCHMARKS.md), two moons, 8 gaussians, circles, spirals
// and pinwheel, with the scales and noise levels of the common FFJORD / torchcfm toy sets.
// The random numbers come from the engine's Philox streams and the arithmetic is done once in
// f64 on the CPU, so a seed gives the same points whichever device receives them.
#pragma once
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace dualflow {

// x1 ~ U[-2, 2); x2 ~ U[0, 1) - 2 Bernoulli(0.5) + (floor(x1) mod 2); point = 2 (x1, x2).
// Points fill the squares of an 8 x 8 board on [-4, 4)^2 whose cell indices sum to an even number.
Tensor checkerboard(int64_t n, Generator& gen, TensorOptions opts = {});
// Two interleaved half circles (outer: (cos a, sin a); inner: (1 - cos a, 1/2 - sin a),
// a ~ U[0, pi]), each point on either with probability 1/2, Gaussian noise 0.1, then
// scaled by 2 and shifted by (-1, -0.2).
Tensor two_moons(int64_t n, Generator& gen, TensorOptions opts = {});
// Equal mixture of N(c_k, 0.5^2 I) for the 8 unit directions c_k scaled by 4, all divided by
// 1.414 (centres at radius about 2.83).
Tensor eight_gaussians(int64_t n, Generator& gen, TensorOptions opts = {});
// Two concentric circles (radius 1 and 0.5, uniform angles, either with probability 1/2) with
// Gaussian noise 0.08, scaled by 3.
Tensor circles(int64_t n, Generator& gen, TensorOptions opts = {});
// Two interleaved spirals: r = sqrt(U) * 3 pi, arm (-cos r r, sin r r) + U[0, 0.5)^2, half the
// points reflected through the origin, all divided by 3, plus Gaussian noise 0.1.
Tensor spirals(int64_t n, Generator& gen, TensorOptions opts = {});
// Five curved arms: (1 + 0.3 z1, 0.1 z2) rotated by 2 pi k / 5 + 0.25 exp(1 + 0.3 z1) for a
// uniformly drawn arm k, scaled by 2.
Tensor pinwheel(int64_t n, Generator& gen, TensorOptions opts = {});

// By name: "checkerboard", "moons", "8gaussians", "circles", "spirals", "pinwheel"; unknown
// names are refused with the list.
Tensor sample_2d(const std::string& name, int64_t n, Generator& gen, TensorOptions opts = {});
std::vector<std::string> dataset_2d_names();

}  // namespace dualflow
