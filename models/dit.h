// DiT: the Diffusion Transformer with adaLN-Zero conditioning (Peebles & Xie 2023), with an
// optional second timestep embedder for MeanFlow's h = t - r. Parameter names follow the
// reference implementation ("x_embedder.proj.weight", "blocks.3.adaLN_modulation.1.weight",
// "final_layer.linear.weight", "pos_embed"), so its checkpoints map 1:1 onto this model.
#pragma once
#include <string>

#include "models/attention.h"
#include "models/embeddings.h"
#include "models/norms.h"
#include "models/velocity_network.h"

namespace dualflow {

struct DiTConfig {
  int64_t input_size = 32;  // square images input_size x input_size
  int64_t in_channels = 4;
  int64_t out_channels = 0;  // 0: same as in_channels (2 * in_channels is DiT's learn_sigma)
  int64_t patch_size = 2;
  int64_t hidden_size = 1152;
  int64_t depth = 28;
  int64_t num_heads = 16;
  double mlp_ratio = 4.0;
  int64_t num_classes = 1000;   // 0: unconditional, no y_embedder
  bool use_h = false;           // MeanFlow: an h_embedder for h = t - r, summed into the condition
  // Further scalar conditions after the interval (use_h; iMF's guidance scale and interval): h is
  // then [N, 1 + conditions], each column with its own embedder summed into the condition.
  int64_t conditions = 0;
  int64_t frequency_dim = 256;  // sinusoidal dims feeding each timestep embedder
  double time_scale = 1000.0;   // t in [0, 1] -> a = 1000 t freqs (the reference's integer steps: 1)

  // Architecture presets "S/2", "B/4", "L/8", "XL/2" (also spelled "DiT-XL/2"): hidden size,
  // depth, heads and patch set on top of `base`. Refuses unknown names.
  static DiTConfig preset(const std::string& name, DiTConfig base);
  static DiTConfig preset(const std::string& name);
  int64_t output_channels() const { return out_channels > 0 ? out_channels : in_channels; }
  int64_t grid_size() const { return input_size / patch_size; }
  int64_t num_tokens() const { return grid_size() * grid_size(); }
  int64_t mlp_hidden() const { return int64_t(double(hidden_size) * mlp_ratio); }
  // Refuses inconsistent settings (image size not divisible by the patch, heads, ...).
  void validate() const;
};

// Trainable parameters of a DiT with this config, from the config alone (no allocation).
int64_t dit_parameter_count(const DiTConfig& config);
// Elements of the fixed positional embedding (a buffer here; the reference counts it as a
// frozen parameter, so its published totals are dit_parameter_count + this).
int64_t dit_pos_embed_size(const DiTConfig& config);
// The 2-D sin-cos positional embedding [grid * grid, dim] of the reference (MAE's): for the
// token at (row i, column j) the first half embeds j, the second i, each [sin, cos] over
// frequencies 10000^(-k / (dim/4)). dim must be a multiple of 4.
Tensor sincos_pos_embed_2d(int64_t dim, int64_t grid_size);

// A conv with kernel = stride = patch as a reshape and one matmul: [N, C, H, W] ->
// [N, (H/p)(W/p), hidden], tokens in row-major patch order. weight [hidden, C, p, p].
class PatchProjection : public UnaryModule {
 public:
  PatchProjection(int64_t in_channels, int64_t hidden, int64_t patch, Generator& gen);
  std::string describe() const override;
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;

 private:
  int64_t in_, hidden_, patch_;
};

class PatchEmbed : public UnaryModule {
 public:
  PatchEmbed(int64_t input_size, int64_t in_channels, int64_t hidden, int64_t patch, Generator& gen);
  std::string describe() const override;
  // x [N, C, input_size, input_size] -> [N, tokens, hidden]
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<PatchProjection> proj;

 private:
  int64_t input_size_, in_, patch_;
};

// fc1 -> GELU (tanh approximation) -> fc2.
class TransformerMlp : public UnaryModule {
 public:
  TransformerMlp(int64_t dim, int64_t hidden, Generator& gen);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Linear> fc1, fc2;
};

// x + gate * attn(modulate(norm1(x))), then the same with the MLP; shift, scale and gate of
// both come from adaLN_modulation(c) = Linear(SiLU(c)) [N, 6 * hidden].
class DiTBlock : public Module {
 public:
  DiTBlock(int64_t hidden, int64_t heads, int64_t mlp_hidden, Generator& gen);
  // x [N, L, hidden], c [N, hidden]
  Tensor forward(const Tensor& x, const Tensor& c);
  std::shared_ptr<LayerNorm> norm1, norm2;
  std::shared_ptr<MultiheadSelfAttention> attn;
  std::shared_ptr<TransformerMlp> mlp;
  std::shared_ptr<Sequential> adaLN_modulation;  // [SiLU, Linear(hidden, 6 hidden)]
  std::shared_ptr<Linear> modulation;            // adaLN_modulation[1]
};

class DiTFinalLayer : public Module {
 public:
  DiTFinalLayer(int64_t hidden, int64_t patch, int64_t out_channels, Generator& gen);
  // x [N, L, hidden], c [N, hidden] -> [N, L, patch * patch * out_channels]
  Tensor forward(const Tensor& x, const Tensor& c);
  std::shared_ptr<LayerNorm> norm_final;
  std::shared_ptr<Linear> linear;
  std::shared_ptr<Sequential> adaLN_modulation;  // [SiLU, Linear(hidden, 2 hidden)]
  std::shared_ptr<Linear> modulation;            // adaLN_modulation[1]
};

class DiT : public VelocityNetwork {
 public:
  // Builds and initialises like the reference: xavier-uniform Linear weights with zero bias,
  // the patch projection xavier-uniform on its flattened [hidden, C p p] weight, label table
  // N(0, 0.02), timestep-MLP weights N(0, 0.02), every adaLN modulation and the final Linear zero.
  DiT(const DiTConfig& config, Generator& gen);
  std::string describe() const override;
  // x [N, C, S, S], t [N] (or [N, 1]); h [N] only with use_h; labels i64 [N] only with classes
  // (values in [0, num_classes], num_classes being the null class; undefined: all null).
  // -> [N, out_channels, S, S]
  Tensor forward(const Tensor& x, const Tensor& t, const Tensor& h = Tensor(),
                 const Tensor& labels = Tensor()) override;
  const DiTConfig& config() const { return config_; }
  // Re-runs the reference initialisation (the constructor calls it).
  void initialize_weights(Generator& gen);

  std::shared_ptr<PatchEmbed> x_embedder;
  std::shared_ptr<TimestepEmbedder> t_embedder;
  std::shared_ptr<TimestepEmbedder> h_embedder;  // null unless use_h
  std::vector<std::shared_ptr<TimestepEmbedder>> condition_embedders;  // "condition_embedder_k", one per condition
  std::shared_ptr<LabelEmbedding> y_embedder;    // null unless num_classes > 0
  Tensor pos_embed;                              // buffer [1, tokens, hidden]
  std::shared_ptr<ModuleList<DiTBlock>> blocks;
  std::shared_ptr<DiTFinalLayer> final_layer;

 private:
  // [N, tokens, p * p * C_out] -> [N, C_out, S, S]
  Tensor unpatchify(const Tensor& x) const;
  DiTConfig config_;
};

}  // namespace dualflow
