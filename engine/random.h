// Random tensors from a counter-based Philox generator: a generator is (seed, offset); each
// draw reads blocks [offset, offset + used) and advances offset, so CPU and CUDA produce the
// same numbers for the same seed, and saving (seed, offset) saves the stream exactly.
#pragma once
#include <cstdint>

#include "engine/tensor.h"

namespace dualflow {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void manual_seed(uint64_t seed) {
    seed_ = seed;
    offset_ = 0;
  }
  struct State {
    uint64_t seed = 0, offset = 0;
  };
  State state() const { return {seed_, offset_}; }
  void set_state(const State& s) {
    seed_ = s.seed;
    offset_ = s.offset;
  }
  // Reserves `blocks` Philox blocks; returns the first.
  uint64_t advance(uint64_t blocks) {
    uint64_t o = offset_;
    offset_ += blocks;
    return o;
  }

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

// The calling thread's default generator (seeded with 0 until manual_seed is called).
Generator& default_generator();
void manual_seed(uint64_t seed);

Tensor rand(const Shape& shape, Generator& gen, TensorOptions opts = {});   // U[0, 1)
Tensor randn(const Shape& shape, Generator& gen, TensorOptions opts = {});  // N(0, 1)
Tensor randint(int64_t low, int64_t high, const Shape& shape, Generator& gen, TensorOptions opts = DType::i64);
Tensor bernoulli(const Shape& shape, double p, Generator& gen, TensorOptions opts = {});
Tensor uniform(const Shape& shape, double low, double high, Generator& gen, TensorOptions opts = {});
Tensor normal(const Shape& shape, double mean, double std, Generator& gen, TensorOptions opts = {});

// Elements [first, first + numel(shape)) of the draw that normal(..., gen, opts) of any larger
// shape would make from the generator's present state, laid out in `shape`; the generator does
// not move. Element i of a draw depends only on the seed, the offset and i, so a window costs
// its own size: a piece of a huge draw without the rest (streamed sampling).
Tensor normal_window(const Shape& shape, double mean, double std, const Generator& gen, int64_t first,
                     TensorOptions opts = {});

inline Tensor rand(const Shape& s, TensorOptions o = {}) { return rand(s, default_generator(), o); }
inline Tensor randn(const Shape& s, TensorOptions o = {}) { return randn(s, default_generator(), o); }
inline Tensor randint(int64_t lo, int64_t hi, const Shape& s, TensorOptions o = DType::i64) {
  return randint(lo, hi, s, default_generator(), o);
}

}  // namespace dualflow
