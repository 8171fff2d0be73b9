// GroupNorm over the channels of [N, C, *] inputs (module over the engine's group_norm).
#pragma once
#include "models/module.h"

namespace dualflow {

class GroupNorm : public UnaryModule {
 public:
  // affine: per-channel weight (init 1) and bias (init 0).
  GroupNorm(int64_t groups, int64_t channels, double eps = 1e-5, bool affine = true);
  std::string describe() const override;
  Tensor forward(const Tensor& x) override;
  // silu(forward(x)) as one op (one pass each way on the CPU).
  Tensor forward_silu(const Tensor& x);
  int64_t groups() const { return groups_; }
  int64_t channels() const { return channels_; }
  Tensor weight, bias;  // undefined without affine

 private:
  void check_input(const Tensor& x) const;
  int64_t groups_, channels_;
  double eps_;
};

}  // namespace dualflow
