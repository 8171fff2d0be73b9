// The U-Net's blocks and the network (see unet.h for the structure).
#include "models/unet.h"

#include <algorithm>

#include "models/init.h"

namespace dualflow {

// ---- ResBlock ----

ResBlock::ResBlock(int64_t in_channels, int64_t out_channels, int64_t embedding_dim, int64_t norm_groups, double p,
                   uint64_t dropout_seed, Generator& gen)
    : Module("ResBlock"), in_(in_channels), out_(out_channels) {
  norm1 = register_module("norm1", std::make_shared<GroupNorm>(std::min(norm_groups, in_channels), in_channels));
  conv1 = register_module("conv1",
                          std::make_shared<Conv2d>(in_channels, out_channels, 3, gen, Conv2dOptions{.padding = 1}));
  emb_proj = register_module("emb_proj", std::make_shared<Linear>(embedding_dim, out_channels, gen));
  norm2 = register_module("norm2", std::make_shared<GroupNorm>(std::min(norm_groups, out_channels), out_channels));
  dropout = register_module("dropout", std::make_shared<Dropout>(p, dropout_seed));
  conv2 = register_module("conv2",
                          std::make_shared<Conv2d>(out_channels, out_channels, 3, gen, Conv2dOptions{.padding = 1}));
  // A fresh block starts as the identity on its residual path (ADM's zero_module).
  init::zeros_(conv2->weight);
  init::zeros_(conv2->bias);
  if (in_channels != out_channels)
    skip = register_module("skip", std::make_shared<Conv2d>(in_channels, out_channels, 1, gen));
}

std::string ResBlock::describe() const { return fmt::format("ResBlock(in={}, out={})", in_, out_); }

Tensor ResBlock::forward(const Tensor& x, const Tensor& emb) {
  DF_CHECK(x.defined() && x.dim() == 4 && x.shape()[1] == in_, "{}: input expected [N, {}, H, W], got {}", describe(),
           in_, x.defined() ? x.shape().str() : "undefined");
  Tensor h = conv1->forward(norm1->forward_silu(x));
  Tensor e = emb_proj->forward(silu(emb));  // [N, out]
  h = h + e.reshape({e.shape()[0], out_, 1, 1});
  h = conv2->forward(dropout->forward(norm2->forward_silu(h)));
  return (skip ? skip->forward(x) : x) + h;
}

// ---- AttentionBlock ----

AttentionBlock::AttentionBlock(int64_t channels, int64_t heads, int64_t norm_groups, Generator& gen)
    : UnaryModule("AttentionBlock"), channels_(channels), heads_(heads) {
  DF_CHECK(heads >= 1 && channels % heads == 0, "AttentionBlock: heads ({}) must divide the channels ({})", heads,
           channels);
  norm = register_module("norm", std::make_shared<GroupNorm>(std::min(norm_groups, channels), channels));
  attn = register_module("attn", std::make_shared<MultiheadSelfAttention>(channels, heads, gen));
  init::zeros_(attn->proj->weight);
  init::zeros_(attn->proj->bias);
}

std::string AttentionBlock::describe() const {
  return fmt::format("AttentionBlock(channels={}, heads={})", channels_, heads_);
}

Tensor AttentionBlock::forward(const Tensor& x) {
  DF_CHECK(x.defined() && x.dim() == 4 && x.shape()[1] == channels_, "{}: input expected [N, {}, H, W], got {}",
           describe(), channels_, x.defined() ? x.shape().str() : "undefined");
  const int64_t n = x.shape()[0], hw = x.shape()[2] * x.shape()[3];
  Tensor tokens = norm->forward(x).reshape({n, channels_, hw}).transpose(1, 2);  // [N, HW, C]
  Tensor out = attn->forward(tokens).transpose(1, 2).reshape(x.shape());
  return x + out;
}

// ---- UNetStage / Resample ----

UNetStage::UNetStage(std::shared_ptr<ResBlock> r, std::shared_ptr<AttentionBlock> a) : Module("UNetStage") {
  res = register_module("res", std::move(r));
  if (a) attn = register_module("attn", std::move(a));
}

Tensor UNetStage::forward(const Tensor& x, const Tensor& emb) {
  Tensor h = res->forward(x, emb);
  return attn ? attn->forward(h) : h;
}

Resample::Resample(int64_t channels, bool up, bool with_conv, Generator& gen) : UnaryModule("Resample"), up_(up) {
  if (with_conv)
    conv = register_module("conv", std::make_shared<Conv2d>(channels, channels, 3, gen,
                                                            Conv2dOptions{.stride = up ? 1 : 2, .padding = 1}));
}

std::string Resample::describe() const {
  return fmt::format("Resample({}, conv={})", up_ ? "up" : "down", conv != nullptr);
}

Tensor Resample::forward(const Tensor& x) {
  if (up_) {
    Tensor y = upsample2d(x, 2, UpsampleMode::Nearest);
    return conv ? conv->forward(y) : y;
  }
  return conv ? conv->forward(x) : avg_pool2d(x, 2);
}

// ---- UNet ----

UNet::UNet(const UNetConfig& config, Generator& gen) : VelocityNetwork("UNet"), config_(config) {
  UNetConfig& c = config_;
  if (c.out_channels == 0) c.out_channels = c.in_channels;
  if (c.embedding_dim == 0) c.embedding_dim = 4 * c.base_channels;
  DF_CHECK(c.in_channels >= 1 && c.base_channels >= 1 && c.num_res_blocks >= 1 && !c.channel_mult.empty(),
           "UNet: in_channels, base_channels, num_res_blocks and channel_mult must be positive/non-empty");
  DF_CHECK(c.dropout >= 0 && c.dropout < 1, "UNet: dropout must be in [0, 1), got {}", c.dropout);
  // Each level but the last halves the size; a downsample must see an even size so that the
  // up path (which doubles) comes back to the input size.
  int64_t size = c.image_size;
  for (size_t level = 0; level + 1 < c.channel_mult.size(); ++level) {
    DF_CHECK(size % 2 == 0, "UNet: image size {} cannot be halved {} times evenly (size {} at level {} is odd)",
             c.image_size, c.channel_mult.size() - 1, size, level);
    size /= 2;
  }
  const int64_t emb = c.embedding_dim;
  SinusoidalOptions freqs{c.base_channels + c.base_channels % 2, c.time_scale, 10000, false};
  t_embedder = register_module("t_embedder", std::make_shared<TimestepEmbedder>(emb, gen, freqs));
  if (c.use_h) h_embedder = register_module("h_embedder", std::make_shared<TimestepEmbedder>(emb, gen, freqs));
  DF_CHECK(c.conditions >= 0 && (c.conditions == 0 || c.use_h),
           "UNet: further conditions ({}) come after the interval h and need use_h", c.conditions);
  for (int64_t k = 0; k < c.conditions; ++k)
    condition_embedders.push_back(register_module(fmt::format("condition_embedder_{}", k),
                                                  std::make_shared<TimestepEmbedder>(emb, gen, freqs)));
  if (c.num_classes > 0)
    y_embedder = register_module("y_embedder", std::make_shared<LabelEmbedding>(c.num_classes, emb, gen));

  input_conv = register_module(
      "input_conv", std::make_shared<Conv2d>(c.in_channels, c.base_channels, 3, gen, Conv2dOptions{.padding = 1}));
  down_stages = register_module("down", std::make_shared<ModuleList<UNetStage>>());
  downsamples = register_module("downsample", std::make_shared<ModuleList<Resample>>());
  uint64_t seed = c.dropout_seed;
  auto wants_attention = [&](int64_t res) {
    return std::find(c.attention_resolutions.begin(), c.attention_resolutions.end(), res) !=
           c.attention_resolutions.end();
  };
  auto stage = [&](int64_t in, int64_t out, int64_t res) {
    auto rb = std::make_shared<ResBlock>(in, out, emb, c.norm_groups, c.dropout, seed++, gen);
    auto ab =
        wants_attention(res) ? std::make_shared<AttentionBlock>(out, c.attention_heads, c.norm_groups, gen) : nullptr;
    return std::make_shared<UNetStage>(rb, ab);
  };

  std::vector<int64_t> skip_channels = {c.base_channels};
  int64_t ch = c.base_channels, res = c.image_size;
  for (size_t level = 0; level < c.channel_mult.size(); ++level) {
    const int64_t out = c.base_channels * c.channel_mult[level];
    for (int64_t b = 0; b < c.num_res_blocks; ++b) {
      down_stages->push_back(stage(ch, out, res));
      ch = out;
      skip_channels.push_back(ch);
    }
    if (level + 1 < c.channel_mult.size()) {
      downsamples->push_back(std::make_shared<Resample>(ch, false, c.conv_resample, gen));
      skip_channels.push_back(ch);
      res /= 2;
    }
  }
  middle_in = register_module(
      "middle_in",
      std::make_shared<UNetStage>(std::make_shared<ResBlock>(ch, ch, emb, c.norm_groups, c.dropout, seed++, gen),
                                  std::make_shared<AttentionBlock>(ch, c.attention_heads, c.norm_groups, gen)));
  middle_out =
      register_module("middle_out", std::make_shared<ResBlock>(ch, ch, emb, c.norm_groups, c.dropout, seed++, gen));

  up_stages = register_module("up", std::make_shared<ModuleList<UNetStage>>());
  upsamples = register_module("upsample", std::make_shared<ModuleList<Resample>>());
  for (size_t level = c.channel_mult.size(); level-- > 0;) {
    const int64_t out = c.base_channels * c.channel_mult[level];
    for (int64_t b = 0; b <= c.num_res_blocks; ++b) {
      const int64_t skip = skip_channels.back();
      skip_channels.pop_back();
      up_stages->push_back(stage(ch + skip, out, res));
      up_stage_level_.push_back(int64_t(level));
      ch = out;
    }
    if (level > 0) {
      upsamples->push_back(std::make_shared<Resample>(ch, true, c.conv_resample, gen));
      res *= 2;
    }
  }
  output_norm = register_module("output_norm", std::make_shared<GroupNorm>(std::min(c.norm_groups, ch), ch));
  output_conv =
      register_module("output_conv", std::make_shared<Conv2d>(ch, c.out_channels, 3, gen, Conv2dOptions{.padding = 1}));
  // The network starts by predicting zero (ADM's zero-initialised output layer).
  init::zeros_(output_conv->weight);
  init::zeros_(output_conv->bias);
}

std::string UNet::describe() const {
  return fmt::format("UNet(in={}, base={}, levels={}, image={})", config_.in_channels, config_.base_channels,
                     config_.channel_mult.size(), config_.image_size);
}

Tensor UNet::forward(const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& labels) {
  const UNetConfig& c = config_;
  DF_CHECK(x.defined() && x.dim() == 4, "{}: expected an image batch [N, {}, {}, {}], got {}", describe(),
           c.in_channels, c.image_size, c.image_size, x.defined() ? x.shape().str() : "undefined");
  const int64_t n = x.shape()[0];
  DF_CHECK(x.shape()[1] == c.in_channels, "{}: input channels expected {}, got {} (input shape {})", describe(),
           c.in_channels, x.shape()[1], x.shape().str());
  DF_CHECK(x.shape()[2] == c.image_size && x.shape()[3] == c.image_size, "{}: image size expected {}x{}, got {}x{}",
           describe(), c.image_size, c.image_size, x.shape()[2], x.shape()[3]);
  std::vector<TimestepEmbedder*> conditions;
  for (const auto& e : condition_embedders) conditions.push_back(e.get());
  Tensor emb =
      conditioning_embedding(*this, n, t, h, labels, *t_embedder, h_embedder.get(), y_embedder.get(), conditions);

  std::vector<Tensor> skips;
  Tensor hcur = input_conv->forward(x);
  skips.push_back(hcur);
  size_t stage_index = 0;
  for (size_t level = 0; level < c.channel_mult.size(); ++level) {
    for (int64_t b = 0; b < c.num_res_blocks; ++b) {
      hcur = (*down_stages)[stage_index++]->forward(hcur, emb);
      skips.push_back(hcur);
    }
    if (level + 1 < c.channel_mult.size()) {
      hcur = (*downsamples)[level]->forward(hcur);
      skips.push_back(hcur);
    }
  }
  hcur = middle_out->forward(middle_in->forward(hcur, emb), emb);
  size_t upsample_index = 0;
  for (size_t i = 0; i < up_stages->size(); ++i) {
    hcur = (*up_stages)[i]->forward(cat({hcur, skips.back()}, 1), emb);
    skips.pop_back();
    const bool level_ends = i + 1 == up_stages->size() || up_stage_level_[i + 1] != up_stage_level_[i];
    if (level_ends && up_stage_level_[i] > 0) hcur = (*upsamples)[upsample_index++]->forward(hcur);
  }
  return output_conv->forward(output_norm->forward_silu(hcur));
}

}  // namespace dualflow
