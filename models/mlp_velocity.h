// MLPVelocity: the toy2d velocity network of docs/BENCHMARKS.md. The input features are
// [z (d), emb(t) (64), emb(h) (64)] with h = t - r (MeanFlow's interval) and emb the
// sinusoidal embedding; then Linear 130x256, SiLU, 3 x (Linear 256x256, SiLU), Linear 256xd.
// Further scalar conditions (iMF's guidance scale and interval) add 64 features each; a second
// head (iMF's instantaneous velocity) is out_dim = 2d: the output Linear's further rows.
//
// Class conditioning (num_classes > 0): a LabelEmbedding of width equal to the input features
// (with a learned null class for classifier-free guidance) is added to the feature vector
// before the first Linear, so a class shifts the first layer's pre-activations (a learned
// per-class bias, the cheapest conditioning an MLP has). Without labels the null class is used.
#pragma once
#include <string>

#include "models/embeddings.h"
#include "models/mlp.h"
#include "models/velocity_network.h"

namespace dualflow {

struct MLPVelocityConfig {
  int64_t data_dim = 2;
  int64_t width = 256;
  int64_t depth = 4;           // hidden layers (Linear + activation) before the output Linear
  int64_t embedding_dim = 64;  // sinusoidal dims of each time input
  double time_scale = 1000.0;  // a = time_scale * t * freqs
  bool use_h = true;           // embed h = t - r (MeanFlow); false: input [z, emb(t)] (flow matching)
  int64_t conditions = 0;      // further scalar conditions after h (iMF): h is [N, 1 + conditions], each embedded
  int64_t out_dim = 0;         // outputs; 0: data_dim (2 * data_dim for a second head)
  int64_t num_classes = 0;     // > 0: class-conditional through a LabelEmbedding
  std::string activation = "silu";
};

class MLPVelocity : public VelocityNetwork {
 public:
  MLPVelocity(const MLPVelocityConfig& config, Generator& gen);
  std::string describe() const override;
  // z [N, d], t [N] (or [N, 1]), h [N] (or [N, 1]; [N, 1 + conditions] with conditions; must be
  // undefined when use_h is off), labels i64 [N] (optional; only with num_classes > 0) ->
  // velocity [N, out_dim].
  Tensor forward(const Tensor& z, const Tensor& t, const Tensor& h = Tensor(),
                 const Tensor& labels = Tensor()) override;
  const MLPVelocityConfig& config() const { return config_; }
  int64_t input_features() const;

  std::shared_ptr<MLP> net;                         // "net.0", "net.2", ... like nn.Sequential
  std::shared_ptr<LabelEmbedding> label_embedding;  // null unless num_classes > 0

 private:
  MLPVelocityConfig config_;
  SinusoidalEmbedding time_embedding_;
};

}  // namespace dualflow
