// model.kind = "dit": the Diffusion Transformer (adaLN-Zero), a size/patch preset with
// optional overrides of its width, depth and heads.
#include "models/dit.h"
#include "train/networks/network_registry.h"

namespace dualflow {

NetworkEntry dit_network_entry() {
  NetworkEntry e;
  e.kind = "dit";
  e.description = "a DiT, for images";
  e.data_kind = DataKind::Images;
  e.add_keys = [](ConfigSchema& s) {
    s.add_string("model.dit_preset", "S/4", "DiT size/patch preset: S|B|L|XL / 2|4|8, such as S/4 or B/2");
    s.add_int("model.dit_hidden", 0, "DiT hidden size; 0 keeps the preset's").at_least(0);
    s.add_int("model.dit_depth", 0, "DiT blocks; 0 keeps the preset's").at_least(0);
    s.add_int("model.dit_heads", 0, "DiT attention heads; 0 keeps the preset's").at_least(0);
  };
  e.parse = [](const RunConfig& c, const NetworkContext& context) -> NetworkBuilder {
    DiTConfig d;
    d.input_size = context.data.sample_shape[1];
    d.in_channels = context.data.sample_shape[0];
    d.num_classes = context.classes;
    d.use_h = context.takes_interval;
    d.conditions = context.conditions;
    d.out_channels = d.in_channels * context.heads;
    d.time_scale = context.time_scale;
    const std::string preset = c.get_string("model.dit_preset");
    d = DiTConfig::preset(preset, d);
    if (c.get_int("model.dit_hidden") > 0) d.hidden_size = c.get_int("model.dit_hidden");
    if (c.get_int("model.dit_depth") > 0) d.depth = c.get_int("model.dit_depth");
    if (c.get_int("model.dit_heads") > 0) d.num_heads = c.get_int("model.dit_heads");
    DF_CHECK(d.input_size % d.patch_size == 0,
             "model.dit_preset = \"{}\": patch size {} does not divide the {}x{} images of {}; use patch 2 or 4",
             preset, d.patch_size, d.input_size, d.input_size, context.data.name);
    return [d](Generator& init) { return std::make_shared<DiT>(d, init); };
  };
  return e;
}

}  // namespace dualflow
