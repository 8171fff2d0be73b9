// Counting the GEMMs that engine ops issue, by shape, and re-running one shape alone: what the
// roofline column of `dualflow bench` is computed from (a step's GEMM work, timed GEMM by GEMM
// without the rest of the step around it).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "engine/tensor.h"

namespace dualflow {

// One GEMM as the backend receives it: C[b] (+)= op(A[b]) op(B[b]) for b < batch, row-major.
struct GemmShape {
  DType dtype = DType::f32;
  Device device;
  bool trans_a = false, trans_b = false;
  bool shared_a = false, shared_b = false;  // one operand matrix for every batch entry (batch stride 0)
  bool accumulate = false;                  // beta = 1: C holds a partial sum
  bool bias = false;                        // a row added to each row of C as it is stored
  int64_t batch = 1, m = 0, n = 0, k = 0;

  double flops() const { return 2.0 * double(batch) * double(m) * double(n) * double(k); }
  std::string str() const;  // "64x[49x64]@[64x49]^T f32"-style, for tables
  auto key() const {
    return std::tuple(int(dtype), int(device.kind), device.index, trans_a, trans_b, shared_a, shared_b, accumulate,
                      bias, batch, m, n, k);
  }
  bool operator<(const GemmShape& o) const { return key() < o.key(); }
  bool operator==(const GemmShape& o) const { return key() == o.key(); }
};

// While a GemmRecorder is alive, every GEMM that matmul, linear and the ops built on them run is
// counted by shape (from any thread). One recorder at a time.
class GemmRecorder {
 public:
  GemmRecorder();
  ~GemmRecorder();
  GemmRecorder(const GemmRecorder&) = delete;
  GemmRecorder& operator=(const GemmRecorder&) = delete;

  std::map<GemmShape, int64_t> counts() const;  // shape -> number of calls
  int64_t calls() const;
  double flops() const;

  // Called by the GEMM dispatch; a no-op costing one atomic load when no recorder is alive.
  static void note(const GemmShape& shape);

 private:
  mutable std::mutex mutex_;
  std::map<GemmShape, int64_t> counts_;
};

// A callable that runs one GEMM of `shape` on operands made once (random values, the same
// layout, transposes and batch sharing as recorded), for timing that shape alone.
std::function<void()> gemm_runner(const GemmShape& shape);

}  // namespace dualflow
