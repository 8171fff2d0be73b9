// UNet: the DDPM/ADM-style image network. Levels of residual blocks whose channel count is
// base * mult[level], attention at chosen resolutions, a middle block (res, attention, res),
// and a mirrored up path that concatenates the skips. Every block reads one conditioning
// vector: emb(t) (+ emb(h = t - r) for MeanFlow) (+ the class embedding, with a null class for
// classifier-free guidance), as in MeanFlow's networks.
#pragma once
#include <string>
#include <vector>

#include "models/attention.h"
#include "models/conv.h"
#include "models/dropout.h"
#include "models/embeddings.h"
#include "models/group_norm.h"
#include "models/velocity_network.h"

namespace dualflow {

struct UNetConfig {
  int64_t in_channels = 1;
  int64_t out_channels = 0;  // 0: same as in_channels
  int64_t image_size = 28;   // square images; each level halves it
  int64_t base_channels = 32;
  std::vector<int64_t> channel_mult = {1, 2, 2};
  int64_t num_res_blocks = 2;                        // per level on the way down (one more on the way up)
  std::vector<int64_t> attention_resolutions = {7};  // feature-map sizes that get self-attention
  int64_t attention_heads = 4;
  int64_t norm_groups = 8;
  double dropout = 0.0;
  int64_t num_classes = 0;     // > 0: class-conditional with a learned null class
  bool use_h = false;          // MeanFlow: a second time input h = t - r with its own embedder
  int64_t conditions = 0;      // further scalar conditions after h (iMF): h is [N, 1 + conditions]
  bool conv_resample = true;   // strided conv down / conv after nearest upsample; else pool / plain
  int64_t embedding_dim = 0;   // conditioning width; 0: 4 * base_channels
  double time_scale = 1000.0;  // t in [0, 1] -> a = time_scale * t * freqs in the sinusoidal embedding
  uint64_t dropout_seed = 0;
};

// GroupNorm -> SiLU -> conv3x3, plus the conditioning projected to a per-channel bias, then
// GroupNorm -> SiLU -> dropout -> conv3x3 (zero-initialised, so a new block is the identity),
// added to the input (through a 1x1 conv when the channel count changes).
class ResBlock : public Module {
 public:
  ResBlock(int64_t in_channels, int64_t out_channels, int64_t embedding_dim, int64_t norm_groups, double dropout,
           uint64_t dropout_seed, Generator& gen);
  std::string describe() const override;
  // x [N, in, H, W], emb [N, embedding_dim] -> [N, out, H, W]
  Tensor forward(const Tensor& x, const Tensor& emb);

  std::shared_ptr<GroupNorm> norm1, norm2;
  std::shared_ptr<Conv2d> conv1, conv2, skip;  // skip is null when in == out
  std::shared_ptr<Linear> emb_proj;
  std::shared_ptr<Dropout> dropout;

 private:
  int64_t in_, out_;
};

// GroupNorm, multi-head self-attention over the H*W positions, zero-initialised output
// projection, residual.
class AttentionBlock : public UnaryModule {
 public:
  AttentionBlock(int64_t channels, int64_t heads, int64_t norm_groups, Generator& gen);
  std::string describe() const override;
  Tensor forward(const Tensor& x) override;

  std::shared_ptr<GroupNorm> norm;
  std::shared_ptr<MultiheadSelfAttention> attn;

 private:
  int64_t channels_, heads_;
};

// One stage of the U-Net: a ResBlock with optional attention after it.
class UNetStage : public Module {
 public:
  UNetStage(std::shared_ptr<ResBlock> res, std::shared_ptr<AttentionBlock> attn);
  Tensor forward(const Tensor& x, const Tensor& emb);
  std::shared_ptr<ResBlock> res;
  std::shared_ptr<AttentionBlock> attn;  // null without attention
};

// Halves (strided 3x3 conv or 2x2 average pool) or doubles (nearest, then an optional 3x3 conv)
// the spatial size.
class Resample : public UnaryModule {
 public:
  Resample(int64_t channels, bool up, bool with_conv, Generator& gen);
  std::string describe() const override;
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv;  // null without conv

 private:
  bool up_;
};

class UNet : public VelocityNetwork {
 public:
  UNet(const UNetConfig& config, Generator& gen);
  std::string describe() const override;
  // x [N, C, S, S], t [N] (or [N, 1]); h [N] only with use_h; labels i64 [N] only with classes
  // (values in [0, num_classes], num_classes being the null class; undefined: all null).
  Tensor forward(const Tensor& x, const Tensor& t, const Tensor& h = Tensor(),
                 const Tensor& labels = Tensor()) override;
  const UNetConfig& config() const { return config_; }

  std::shared_ptr<TimestepEmbedder> t_embedder, h_embedder;  // h_embedder null without use_h
  std::vector<std::shared_ptr<TimestepEmbedder>> condition_embedders;  // "condition_embedder_k", one per condition
  std::shared_ptr<LabelEmbedding> y_embedder;                // null without classes
  std::shared_ptr<Conv2d> input_conv, output_conv;
  std::shared_ptr<ModuleList<UNetStage>> down_stages, up_stages;
  std::shared_ptr<ModuleList<Resample>> downsamples, upsamples;
  std::shared_ptr<UNetStage> middle_in;
  std::shared_ptr<ResBlock> middle_out;
  std::shared_ptr<GroupNorm> output_norm;

 private:
  UNetConfig config_;
  std::vector<int64_t> up_stage_level_;  // level of each up stage, to place the upsamples
};

}  // namespace dualflow
