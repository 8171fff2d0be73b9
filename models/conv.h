// Conv2d over NCHW inputs (module over the engine's conv2d), weight [out, in/groups, k, k].
#pragma once
#include "models/module.h"

namespace dualflow {

struct Conv2dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

class Conv2d : public UnaryModule {
 public:
  // PyTorch's default initialisation (kaiming_uniform with a = sqrt(5)): weight and bias
  // ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups * k * k.
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Generator& gen, Conv2dOptions opts = {});
  std::string describe() const override;
  // x [N, in, H, W] -> [N, out, H', W']
  Tensor forward(const Tensor& x) override;
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  Tensor weight;
  Tensor bias;  // undefined without bias

 private:
  int64_t in_, out_, kernel_;
  Conv2dOptions opts_;
};

}  // namespace dualflow
