// Tiny networks for the tests: a U-Net and a DiT on 8x8x1 images with 3 classes and the h input,
// small enough for finite differences in f64, and perturb_parameters, which moves every weight
// off its initial value (adaLN-Zero layers and zero-initialised outputs start at zero, which
// would make most derivatives vanish and the checks vacuous).
#pragma once
#include "models/models.h"

namespace dualflow::testing {

inline UNetConfig tiny_unet_config() {
  UNetConfig c;
  c.in_channels = 1;
  c.image_size = 8;
  c.base_channels = 4;
  c.channel_mult = {1, 2};
  c.num_res_blocks = 1;
  c.attention_resolutions = {4};
  c.attention_heads = 2;
  c.norm_groups = 2;
  c.num_classes = 3;
  c.use_h = true;
  return c;
}

inline DiTConfig tiny_dit_config() {
  DiTConfig c;
  c.input_size = 8;
  c.in_channels = 1;
  c.patch_size = 4;
  c.hidden_size = 16;
  c.depth = 2;
  c.num_heads = 2;
  c.num_classes = 3;
  c.use_h = true;
  c.frequency_dim = 16;
  return c;
}

inline void perturb_parameters(Module& m, double scale, Generator& gen) {
  NoGradGuard ng;
  for (const auto& [n, p] : m.named_parameters()) copy_(p, p + normal(p.shape(), 0.0, scale, gen, p.options()));
}

}  // namespace dualflow::testing
