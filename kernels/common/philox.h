// Counter-based Philox4x32-10 random numbers, written once for host and device so that a seed
// gives the same numbers on CPU and CUDA. Element i of a random op draws from the 128-bit block
// (counter = offset + i / lanes, key = seed); a generator advances `offset` by the blocks used.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common/hd.h"

namespace dualflow::philox {

using std::cos;
using std::fma;
using std::log;
using std::sin;
using std::sqrt;

struct Block {
  uint32_t v[4];
};

DF_HD inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = uint64_t(a) * uint64_t(b);
  *hi = uint32_t(p >> 32);
  return uint32_t(p);
}

// Philox4x32 with 10 rounds (Salmon et al. 2011); counter is (lo, hi, 0, 0).
DF_HD inline Block block(uint64_t seed, uint64_t counter) {
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(0xD2511F53u, c0, &hi0);
    uint32_t lo1 = mulhilo(0xCD9E8D57u, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Block{{c0, c1, c2, c3}};
}

// Uniform in [0, 1) from 24 / 53 random bits.
DF_HD inline float u01_f32(uint32_t x) { return float(x >> 8) * (1.0f / 16777216.0f); }
DF_HD inline double u01_f64(uint32_t lo, uint32_t hi) {
  uint64_t bits = (uint64_t(hi) << 21) ^ uint64_t(lo >> 11);  // 53 bits
  return double(bits & ((uint64_t(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Distribution kinds shared by both backends.
enum class Dist : uint8_t { Uniform, Normal, RandInt, Bernoulli };

// How many elements one Philox block yields for a dist/precision pair.
DF_HD inline int lanes(Dist d, bool f64) {
  if (d == Dist::RandInt) return 4;
  if (d == Dist::Bernoulli) return 4;
  return f64 ? 2 : 4;
}

// Lane `lane` of block `blk` as element of a draw, computed in double (the final scale and
// shift an explicit fused multiply-add, so that no compiler's contraction choice, which can
// differ between two inlined copies of one formula, changes a bit); `a`, `b` are (low, high)
// for Uniform/RandInt, (mean, std) for Normal, (p, unused) for Bernoulli. Normals come in
// Box-Muller pairs: `pair_mate`, when given, receives the pair's other member (the lane after
// `lane`), so a fill that walks whole blocks pays one logarithm per pair, not per element.
DF_HD inline double sample_lane(Dist d, bool f64, const Block& blk, int lane, double a, double b,
                                double* pair_mate = nullptr) {
  if (d == Dist::RandInt) {
    uint64_t range = uint64_t(b - a);
    uint64_t r = (uint64_t(blk.v[lane]) * range) >> 32;
    return a + double(r);
  }
  if (d == Dist::Bernoulli) return u01_f32(blk.v[lane]) < a ? 1.0 : 0.0;
  if (d == Dist::Uniform) {
    double u = f64 ? u01_f64(blk.v[2 * lane], blk.v[2 * lane + 1]) : double(u01_f32(blk.v[lane]));
    return fma(b - a, u, a);
  }
  // Normal by Box-Muller over pairs of lanes.
  double u1, u2;
  int pair_first;
  if (f64) {
    u1 = u01_f64(blk.v[0], blk.v[1]);
    u2 = u01_f64(blk.v[2], blk.v[3]);
    pair_first = lane == 0;
  } else {
    int p = lane / 2;
    u1 = double(u01_f32(blk.v[2 * p]));
    u2 = double(u01_f32(blk.v[2 * p + 1]));
    pair_first = (lane % 2) == 0;
  }
  double radius = sqrt(-2.0 * log(1.0 - u1));  // 1 - u1 in (0, 1]: never log(0)
  double angle = 6.283185307179586 * u2;
  if (pair_mate) *pair_mate = fma(b, radius * sin(angle), a);
  double n = pair_first ? radius * cos(angle) : radius * sin(angle);
  return fma(b, n, a);
}

// Element i of a draw: lane i % lanes of block offset + i / lanes.
DF_HD inline double sample(Dist d, bool f64, uint64_t seed, uint64_t offset, uint64_t i, double a, double b) {
  int L = lanes(d, f64);
  return sample_lane(d, f64, block(seed, offset + i / uint64_t(L)), int(i % uint64_t(L)), a, b);
}

}  // namespace dualflow::philox
