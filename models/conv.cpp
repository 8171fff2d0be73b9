// Conv2d module.
#include "models/conv.h"

#include "models/init.h"

namespace dualflow {

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, Generator& gen, Conv2dOptions opts)
    : UnaryModule("Conv2d"), in_(in_channels), out_(out_channels), kernel_(kernel_size), opts_(opts) {
  DF_CHECK(in_channels > 0 && out_channels > 0 && kernel_size > 0,
           "Conv2d: sizes must be positive, got in={} out={} kernel={}", in_channels, out_channels, kernel_size);
  DF_CHECK(opts.groups > 0 && in_channels % opts.groups == 0 && out_channels % opts.groups == 0,
           "Conv2d: in ({}) and out ({}) channels must be multiples of groups ({})", in_channels, out_channels,
           opts.groups);
  DF_CHECK(opts.stride > 0 && opts.dilation > 0 && opts.padding >= 0,
           "Conv2d: stride and dilation must be positive and padding >= 0, got stride={} dilation={} padding={}",
           opts.stride, opts.dilation, opts.padding);
  const int64_t fan_in = in_channels / opts.groups * kernel_size * kernel_size;
  weight =
      register_parameter("weight", zeros(Shape{out_channels, in_channels / opts.groups, kernel_size, kernel_size}));
  init::fan_in_uniform_(weight, fan_in, gen);
  if (opts.bias) {
    bias = register_parameter("bias", zeros(Shape{out_channels}));
    init::fan_in_uniform_(bias, fan_in, gen);
  }
}

std::string Conv2d::describe() const {
  std::string s = fmt::format("Conv2d(in={}, out={}, kernel={}", in_, out_, kernel_);
  if (opts_.stride != 1) s += fmt::format(", stride={}", opts_.stride);
  if (opts_.padding != 0) s += fmt::format(", padding={}", opts_.padding);
  if (opts_.dilation != 1) s += fmt::format(", dilation={}", opts_.dilation);
  if (opts_.groups != 1) s += fmt::format(", groups={}", opts_.groups);
  if (!opts_.bias) s += ", bias=false";
  return s + ")";
}

Tensor Conv2d::forward(const Tensor& x) {
  DF_CHECK(x.defined() && x.dim() == 4, "{}: expected an input [N, {}, H, W], got {}", describe(), in_,
           x.defined() ? x.shape().str() : "undefined");
  DF_CHECK(x.shape()[1] == in_, "{}: input channels expected {}, got {} (input shape {})", describe(), in_,
           x.shape()[1], x.shape().str());
  return conv2d(x, weight, bias, {opts_.stride, opts_.stride}, {opts_.padding, opts_.padding},
                {opts_.dilation, opts_.dilation}, opts_.groups);
}

}  // namespace dualflow
