// DiT: presets and parameter count, patch embedding, blocks with adaLN-Zero, final layer,
// unpatchify and the reference initialisation.
#include "models/dit.h"

#include <algorithm>
#include <cmath>

#include "models/activation.h"
#include "models/init.h"

namespace dualflow {

// ---- config ----

DiTConfig DiTConfig::preset(const std::string& name, DiTConfig base) {
  std::string s = name.rfind("DiT-", 0) == 0 ? name.substr(4) : name;
  auto slash = s.find('/');
  std::string size = s.substr(0, slash);
  std::string patch = slash == std::string::npos ? "" : s.substr(slash + 1);
  struct Arch {
    const char* name;
    int64_t hidden, depth, heads;
  };
  static const Arch archs[] = {{"S", 384, 12, 6}, {"B", 768, 12, 12}, {"L", 1024, 24, 16}, {"XL", 1152, 28, 16}};
  const Arch* arch = nullptr;
  for (const Arch& a : archs)
    if (size == a.name) arch = &a;
  DF_CHECK(arch && (patch == "2" || patch == "4" || patch == "8"),
           "DiTConfig::preset: unknown preset '{}', expected S|B|L|XL / 2|4|8 such as 'S/2' or 'DiT-XL/2'", name);
  base.hidden_size = arch->hidden;
  base.depth = arch->depth;
  base.num_heads = arch->heads;
  base.patch_size = std::stoll(patch);
  return base;
}

DiTConfig DiTConfig::preset(const std::string& name) { return preset(name, DiTConfig{}); }

void DiTConfig::validate() const {
  DF_CHECK(input_size > 0 && patch_size > 0 && input_size % patch_size == 0,
           "DiT: image size {} is not divisible by the patch size {}", input_size, patch_size);
  DF_CHECK(in_channels > 0 && out_channels >= 0, "DiT: channels must be positive, got in={} out={}", in_channels,
           out_channels);
  DF_CHECK(hidden_size > 0 && hidden_size % 4 == 0,
           "DiT: hidden size must be a positive multiple of 4 (2-D sin-cos positions), got {}", hidden_size);
  DF_CHECK(num_heads > 0 && hidden_size % num_heads == 0, "DiT: hidden size {} is not divisible by {} heads",
           hidden_size, num_heads);
  DF_CHECK(depth > 0 && mlp_hidden() > 0, "DiT: depth and mlp width must be positive, got depth={} mlp={}", depth,
           mlp_hidden());
  DF_CHECK(num_classes >= 0, "DiT: num_classes must be >= 0, got {}", num_classes);
  DF_CHECK(conditions >= 0 && (conditions == 0 || use_h),
           "DiT: further conditions ({}) come after the interval h and need use_h", conditions);
  DF_CHECK(frequency_dim > 0 && frequency_dim % 2 == 0, "DiT: frequency_dim must be positive and even, got {}",
           frequency_dim);
}

int64_t dit_parameter_count(const DiTConfig& c) {
  c.validate();
  const int64_t h = c.hidden_size, p = c.patch_size, m = c.mlp_hidden();
  auto linear = [](int64_t in, int64_t out) { return in * out + out; };
  int64_t n = c.in_channels * p * p * h + h;  // x_embedder
  const int64_t timestep = linear(c.frequency_dim, h) + linear(h, h);
  n += timestep * (c.use_h ? 2 + c.conditions : 1);     // t (and h, and the conditions') embedders
  if (c.num_classes > 0) n += (c.num_classes + 1) * h;  // y_embedder with null class
  n += c.depth * (linear(h, 3 * h) + linear(h, h) + linear(h, m) + linear(m, h) + linear(h, 6 * h));  // blocks
  n += linear(h, 2 * h) + linear(h, p * p * c.output_channels());                                     // final layer
  return n;
}

int64_t dit_pos_embed_size(const DiTConfig& c) { return c.num_tokens() * c.hidden_size; }

Tensor sincos_pos_embed_2d(int64_t dim, int64_t grid_size) {
  DF_CHECK(dim > 0 && dim % 4 == 0, "sincos_pos_embed_2d: dim must be a positive multiple of 4, got {}", dim);
  const int64_t quarter = dim / 4, tokens = grid_size * grid_size;
  std::vector<double> emb(size_t(tokens * dim));
  for (int64_t i = 0; i < grid_size; ++i)
    for (int64_t j = 0; j < grid_size; ++j) {
      double* row = emb.data() + (i * grid_size + j) * dim;
      // First half: the column index j; second half: the row index i (the reference's order).
      const double pos[2] = {double(j), double(i)};
      for (int half = 0; half < 2; ++half)
        for (int64_t k = 0; k < quarter; ++k) {
          double omega = 1.0 / std::pow(10000.0, double(k) / double(quarter));
          row[half * 2 * quarter + k] = std::sin(pos[half] * omega);
          row[half * 2 * quarter + quarter + k] = std::cos(pos[half] * omega);
        }
    }
  return from_vector(emb, Shape{tokens, dim});
}

// ---- patch embedding ----

PatchProjection::PatchProjection(int64_t in_channels, int64_t hidden, int64_t patch, Generator& gen)
    : UnaryModule("PatchProjection"), in_(in_channels), hidden_(hidden), patch_(patch) {
  // PyTorch's Conv2d default; the DiT constructor re-initialises it.
  const int64_t fan_in = in_channels * patch * patch;
  weight = register_parameter("weight", zeros(Shape{hidden, in_channels, patch, patch}));
  bias = register_parameter("bias", zeros(Shape{hidden}));
  init::fan_in_uniform_(weight, fan_in, gen);
  init::fan_in_uniform_(bias, fan_in, gen);
}

std::string PatchProjection::describe() const {
  return fmt::format("PatchProjection(in={}, hidden={}, patch={})", in_, hidden_, patch_);
}

Tensor PatchProjection::forward(const Tensor& x) {
  DF_CHECK(x.defined() && x.dim() == 4 && x.shape()[1] == in_, "{}: expected an input [N, {}, H, W], got {}",
           describe(), in_, x.defined() ? x.shape().str() : "undefined");
  const int64_t n = x.shape()[0], p = patch_, gh = x.shape()[2] / p, gw = x.shape()[3] / p;
  DF_CHECK(x.shape()[2] % p == 0 && x.shape()[3] % p == 0, "{}: image size {}x{} is not divisible by the patch size {}",
           describe(), x.shape()[2], x.shape()[3], p);
  // [N, C, gh, p, gw, p] -> [N, gh, gw, C, p, p]: each patch flattened in the weight's (C, p, p) order.
  Tensor patches =
      x.reshape(Shape{n, in_, gh, p, gw, p}).permute({0, 2, 4, 1, 3, 5}).reshape(Shape{n, gh * gw, in_ * p * p});
  return matmul(patches, weight.reshape(Shape{hidden_, in_ * p * p}).t()) + bias;
}

PatchEmbed::PatchEmbed(int64_t input_size, int64_t in_channels, int64_t hidden, int64_t patch, Generator& gen)
    : UnaryModule("PatchEmbed"), input_size_(input_size), in_(in_channels), patch_(patch) {
  DF_CHECK(patch > 0 && input_size % patch == 0, "PatchEmbed: image size {} is not divisible by the patch size {}",
           input_size, patch);
  proj = register_module("proj", std::make_shared<PatchProjection>(in_channels, hidden, patch, gen));
}

std::string PatchEmbed::describe() const {
  return fmt::format("PatchEmbed(image={}x{}x{}, patch={})", in_, input_size_, input_size_, patch_);
}

Tensor PatchEmbed::forward(const Tensor& x) {
  DF_CHECK(x.defined() && x.dim() == 4, "{}: expected an input [N, {}, {}, {}], got {}", describe(), in_, input_size_,
           input_size_, x.defined() ? x.shape().str() : "undefined");
  DF_CHECK(x.shape()[1] == in_, "{}: input channels expected {}, got {} (input shape {})", describe(), in_,
           x.shape()[1], x.shape().str());
  DF_CHECK(x.shape()[2] == input_size_ && x.shape()[3] == input_size_,
           "{}: image size expected {}x{}, got {}x{} (the positional embedding is fixed to the configured size)",
           describe(), input_size_, input_size_, x.shape()[2], x.shape()[3]);
  return proj->forward(x);
}

// ---- blocks ----

TransformerMlp::TransformerMlp(int64_t dim, int64_t hidden, Generator& gen) : UnaryModule("TransformerMlp") {
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden, gen));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim, gen));
}

Tensor TransformerMlp::forward(const Tensor& x) { return fc2->forward(fc1->forward_activated(x, UnaryOp::GeluTanh)); }

DiTBlock::DiTBlock(int64_t hidden, int64_t heads, int64_t mlp_hidden, Generator& gen) : Module("DiTBlock") {
  norm1 = register_module("norm1", std::make_shared<LayerNorm>(hidden, 1e-6, false));
  attn = register_module("attn", std::make_shared<MultiheadSelfAttention>(hidden, heads, gen));
  norm2 = register_module("norm2", std::make_shared<LayerNorm>(hidden, 1e-6, false));
  mlp = register_module("mlp", std::make_shared<TransformerMlp>(hidden, mlp_hidden, gen));
  adaLN_modulation = register_module("adaLN_modulation", std::make_shared<Sequential>());
  adaLN_modulation->push_back(std::make_shared<Activation>(ActivationKind::SiLU));
  modulation = adaLN_modulation->push_back(std::make_shared<Linear>(hidden, 6 * hidden, gen));
}

Tensor DiTBlock::forward(const Tensor& x, const Tensor& c) {
  std::vector<Tensor> m = chunk(adaLN_modulation->forward(c), 6, 1);
  // m = shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
  // Gated residuals, x + gate * branch, each in one pass.
  Tensor y = addcmul(x, m[2].unsqueeze(1), attn->forward(norm1->forward_modulated(x, m[0], m[1])));
  return addcmul(y, m[5].unsqueeze(1), mlp->forward(norm2->forward_modulated(y, m[3], m[4])));
}

DiTFinalLayer::DiTFinalLayer(int64_t hidden, int64_t patch, int64_t out_channels, Generator& gen)
    : Module("DiTFinalLayer") {
  norm_final = register_module("norm_final", std::make_shared<LayerNorm>(hidden, 1e-6, false));
  linear = register_module("linear", std::make_shared<Linear>(hidden, patch * patch * out_channels, gen));
  adaLN_modulation = register_module("adaLN_modulation", std::make_shared<Sequential>());
  adaLN_modulation->push_back(std::make_shared<Activation>(ActivationKind::SiLU));
  modulation = adaLN_modulation->push_back(std::make_shared<Linear>(hidden, 2 * hidden, gen));
}

Tensor DiTFinalLayer::forward(const Tensor& x, const Tensor& c) {
  std::vector<Tensor> m = chunk(adaLN_modulation->forward(c), 2, 1);  // shift, scale
  return linear->forward(norm_final->forward_modulated(x, m[0], m[1]));
}

// ---- DiT ----

DiT::DiT(const DiTConfig& config, Generator& gen) : VelocityNetwork("DiT"), config_(config) {
  config.validate();
  const int64_t hidden = config.hidden_size;
  const SinusoidalOptions freqs{config.frequency_dim, config.time_scale, 10000, /*cos_first=*/true};
  x_embedder = register_module("x_embedder", std::make_shared<PatchEmbed>(config.input_size, config.in_channels, hidden,
                                                                          config.patch_size, gen));
  t_embedder = register_module("t_embedder", std::make_shared<TimestepEmbedder>(hidden, gen, freqs));
  if (config.use_h) h_embedder = register_module("h_embedder", std::make_shared<TimestepEmbedder>(hidden, gen, freqs));
  for (int64_t k = 0; k < config.conditions; ++k)
    condition_embedders.push_back(register_module(fmt::format("condition_embedder_{}", k),
                                                  std::make_shared<TimestepEmbedder>(hidden, gen, freqs)));
  if (config.num_classes > 0)
    y_embedder = register_module("y_embedder", std::make_shared<LabelEmbedding>(config.num_classes, hidden, gen));
  pos_embed = register_buffer("pos_embed", sincos_pos_embed_2d(hidden, config.grid_size()).unsqueeze(0));
  blocks = register_module("blocks", std::make_shared<ModuleList<DiTBlock>>());
  for (int64_t i = 0; i < config.depth; ++i)
    blocks->push_back(std::make_shared<DiTBlock>(hidden, config.num_heads, config.mlp_hidden(), gen));
  final_layer = register_module(
      "final_layer", std::make_shared<DiTFinalLayer>(hidden, config.patch_size, config.output_channels(), gen));
  initialize_weights(gen);
}

std::string DiT::describe() const {
  const DiTConfig& c = config_;
  return fmt::format("DiT(image={}x{}x{}, patch={}, hidden={}, depth={}, heads={}{}{})", c.in_channels, c.input_size,
                     c.input_size, c.patch_size, c.hidden_size, c.depth, c.num_heads,
                     c.num_classes ? fmt::format(", classes={}", c.num_classes) : "",
                     c.use_h ? (c.conditions ? fmt::format(", h+{} conditions", c.conditions) : ", h") : "");
}

void DiT::initialize_weights(Generator& gen) {
  // adaLN-Zero: every block starts as the identity and the output as zero. Those layers skip
  // the xavier draw that the reference makes before zeroing them.
  std::vector<const Linear*> zero_init{final_layer->modulation.get(), final_layer->linear.get()};
  for (const auto& block : *blocks) zero_init.push_back(block->modulation.get());
  for (const Linear* lin : zero_init) {
    init::zeros_(lin->weight);
    init::zeros_(lin->bias);
  }
  for (const auto& [name, m] : named_modules())
    if (const auto* lin = dynamic_cast<const Linear*>(m)) {
      if (std::find(zero_init.begin(), zero_init.end(), lin) != zero_init.end()) continue;
      init::xavier_uniform_(lin->weight, gen);
      if (lin->bias.defined()) init::zeros_(lin->bias);
    }
  {
    NoGradGuard ng;
    copy_(pos_embed, sincos_pos_embed_2d(config_.hidden_size, config_.grid_size()).unsqueeze(0));
  }
  // The patch projection like a Linear on its flattened [hidden, C p p] weight.
  const Tensor w = x_embedder->proj->weight.detach();
  init::xavier_uniform_(w.reshape(Shape{w.shape()[0], -1}), gen);
  init::zeros_(x_embedder->proj->bias);
  if (y_embedder) init::normal_(y_embedder->embedding_table->weight, 0.0, 0.02, gen);
  std::vector<std::shared_ptr<TimestepEmbedder>> embedders{t_embedder, h_embedder};
  embedders.insert(embedders.end(), condition_embedders.begin(), condition_embedders.end());
  for (const auto& te : embedders)
    if (te) {
      init::normal_(te->linear1->weight, 0.0, 0.02, gen);
      init::normal_(te->linear2->weight, 0.0, 0.02, gen);
    }
}

Tensor DiT::unpatchify(const Tensor& x) const {
  const int64_t n = x.shape()[0], g = config_.grid_size(), p = config_.patch_size, c = config_.output_channels();
  // [N, g, g, p, p, C] -> [N, C, g, p, g, p]
  return x.reshape(Shape{n, g, g, p, p, c}).permute({0, 5, 1, 3, 2, 4}).reshape(Shape{n, c, g * p, g * p});
}

Tensor DiT::forward(const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& labels) {
  DF_CHECK(x.defined() && x.dim() == 4, "{}: expected an image batch [N, {}, {}, {}], got {}", describe(),
           config_.in_channels, config_.input_size, config_.input_size, x.defined() ? x.shape().str() : "undefined");
  const int64_t n = x.shape()[0];
  DF_CHECK(x.shape()[1] == config_.in_channels, "{}: input channels expected {}, got {} (input shape {})", describe(),
           config_.in_channels, x.shape()[1], x.shape().str());
  DF_CHECK(x.shape()[2] == config_.input_size && x.shape()[3] == config_.input_size,
           "{}: image size expected {}x{}, got {}x{}", describe(), config_.input_size, config_.input_size, x.shape()[2],
           x.shape()[3]);
  std::vector<TimestepEmbedder*> conditions;
  for (const auto& e : condition_embedders) conditions.push_back(e.get());
  Tensor c =
      conditioning_embedding(*this, n, t, h, labels, *t_embedder, h_embedder.get(), y_embedder.get(), conditions);
  Tensor tokens = x_embedder->forward(x) + pos_embed;
  for (const auto& block : *blocks) tokens = block->forward(tokens, c);
  return unpatchify(final_layer->forward(tokens, c));
}

}  // namespace dualflow
