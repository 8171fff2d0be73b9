// Normalisations over the last dim: LayerNorm (optional affine) and RMSNorm.
// GroupNorm over channels lives in models/group_norm.h.
#pragma once
#include "models/module.h"

namespace dualflow {

class LayerNorm : public UnaryModule {
 public:
  // affine: learned weight (init 1) and bias (init 0), as torch's elementwise_affine.
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool affine = true);
  std::string describe() const override;
  // x [..., dim] -> same shape
  Tensor forward(const Tensor& x) override;
  // adaLN modulation in the same pass: forward(x) * (1 + scale) + shift, with shift and scale
  // [N, dim] per sample against x [N, ..., dim].
  Tensor forward_modulated(const Tensor& x, const Tensor& shift, const Tensor& scale);
  int64_t dim() const { return dim_; }
  Tensor weight, bias;  // undefined without affine

 private:
  int64_t dim_;
  double eps_;
};

class RMSNorm : public UnaryModule {
 public:
  // affine: learned weight (init 1).
  explicit RMSNorm(int64_t dim, double eps = 1e-6, bool affine = true);
  std::string describe() const override;
  Tensor forward(const Tensor& x) override;
  int64_t dim() const { return dim_; }
  Tensor weight;  // undefined without affine

 private:
  int64_t dim_;
  double eps_;
};

}  // namespace dualflow
