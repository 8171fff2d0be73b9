// model.kind = "unet": the image U-Net, with model.unet_channels, unet_mult, unet_blocks and
// unet_attention.
#include "models/unet.h"
#include "train/networks/network_registry.h"

namespace dualflow {

NetworkEntry unet_network_entry() {
  NetworkEntry e;
  e.kind = "unet";
  e.description = "a U-Net, for images";
  e.data_kind = DataKind::Images;
  e.add_keys = [](ConfigSchema& s) {
    s.add_int("model.unet_channels", 32, "U-Net base channel count").at_least(1);
    s.add_int_list("model.unet_mult", {1, 2, 2}, "U-Net channel multiplier per resolution level").at_least(1);
    s.add_int("model.unet_blocks", 2, "U-Net residual blocks per level").at_least(1);
    s.add_int_list("model.unet_attention", {7}, "U-Net resolutions (pixels per side) that get self-attention")
        .at_least(1);
  };
  e.parse = [](const RunConfig& c, const NetworkContext& context) -> NetworkBuilder {
    UNetConfig u;
    u.in_channels = context.data.sample_shape[0];
    u.image_size = context.data.sample_shape[1];
    u.base_channels = c.get_int("model.unet_channels");
    u.channel_mult = c.get_int_list("model.unet_mult");
    u.num_res_blocks = c.get_int("model.unet_blocks");
    u.attention_resolutions = c.get_int_list("model.unet_attention");
    u.num_classes = context.classes;
    u.use_h = context.takes_interval;
    u.conditions = context.conditions;
    u.out_channels = u.in_channels * context.heads;
    u.time_scale = context.time_scale;
    return [u](Generator& init) { return std::make_shared<UNet>(u, init); };
  };
  return e;
}

}  // namespace dualflow
