// Embeddings: lookup tables (Embedding, LabelEmbedding with a null class for classifier-free
// guidance, drop_labels), fixed feature maps of scalars (SinusoidalEmbedding,
// FourierFeatures) and DiT's TimestepEmbedder (sinusoidal -> Linear -> SiLU -> Linear).
#pragma once
#include "models/linear.h"
#include "models/module.h"

namespace dualflow {

// A table [num_embeddings, dim] initialised N(0, 1) like torch.nn.Embedding.
class Embedding : public UnaryModule {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, Generator& gen);
  std::string describe() const override;
  // indices (i64, any shape) -> [*indices.shape, dim]
  Tensor forward(const Tensor& indices) override;
  int64_t num_embeddings() const { return num_; }
  int64_t dim() const { return dim_; }
  Tensor weight;

 private:
  int64_t num_, dim_;
};

// Class labels 0..num_classes-1 plus a learned null class at index num_classes, which stands
// for "no label" (the unconditional branch of classifier-free guidance). Parameter name
// "embedding_table.weight" as in DiT's LabelEmbedder.
class LabelEmbedding : public UnaryModule {
 public:
  LabelEmbedding(int64_t num_classes, int64_t dim, Generator& gen);
  std::string describe() const override;
  // labels (i64, any shape, values in [0, num_classes]) -> [*labels.shape, dim]
  Tensor forward(const Tensor& labels) override;
  int64_t num_classes() const { return num_classes_; }
  int64_t null_class() const { return num_classes_; }
  int64_t dim() const { return dim_; }
  // Each label replaced by the null class with probability p (labels are not modified).
  Tensor drop_labels(const Tensor& labels, double p, Generator& gen) const;
  // Labels all equal to the null class, shaped and placed like `like`.
  Tensor null_labels(const Tensor& like) const;
  std::shared_ptr<Embedding> embedding_table;

 private:
  int64_t num_classes_, dim_;
};

// Replaces each label by `null_index` with probability p, drawing from `gen`.
Tensor drop_labels(const Tensor& labels, double p, int64_t null_index, Generator& gen);

struct SinusoidalOptions {
  int64_t dim = 64;           // even; half sines, half cosines
  double scale = 1000.0;      // a = scale * s * freqs (flow times in [0, 1] -> [0, 1000])
  double max_period = 10000;  // freqs_i = exp(-ln(max_period) * i / (dim/2)), i = 0..dim/2-1
  bool cos_first = false;     // [cos(a), sin(a)] as in DiT's code instead of [sin(a), cos(a)]
};

// emb(s) = [sin(a), cos(a)] with a = scale * s * freqs: the embedding of docs/BENCHMARKS.md with
// the defaults. No parameters; differentiable in s (MeanFlow differentiates through t).
class SinusoidalEmbedding : public UnaryModule {
 public:
  explicit SinusoidalEmbedding(SinusoidalOptions opts = {});
  std::string describe() const override;
  // s [N] or [N, 1] -> [N, dim]
  Tensor forward(const Tensor& s) override;
  const SinusoidalOptions& options() const { return opts_; }

 private:
  SinusoidalOptions opts_;
  mutable Tensor freqs_;  // scale * freqs in the last input's dtype and device
};

// DiT's timestep embedder: sinusoidal features -> Linear(freq_dim, hidden) -> SiLU ->
// Linear(hidden, hidden); parameters "mlp.0.*" and "mlp.2.*" as in DiT.
class TimestepEmbedder : public UnaryModule {
 public:
  TimestepEmbedder(int64_t hidden, Generator& gen, SinusoidalOptions frequencies = {256, 1000.0, 10000, false});
  std::string describe() const override;
  // t [N] or [N, 1] -> [N, hidden]
  Tensor forward(const Tensor& t) override;
  int64_t hidden() const { return hidden_; }
  std::shared_ptr<Sequential> mlp;
  std::shared_ptr<Linear> linear1, linear2;  // mlp[0] and mlp[2]

 private:
  int64_t hidden_;
  SinusoidalEmbedding sinusoidal_;
};

// Random Fourier features [sin(2 pi x B), cos(2 pi x B)] with a fixed Gaussian matrix
// B [in, num_features] ~ N(0, sigma^2), kept as buffer "B" (saved, not trained).
class FourierFeatures : public UnaryModule {
 public:
  FourierFeatures(int64_t in_features, int64_t num_features, double sigma, Generator& gen);
  std::string describe() const override;
  // x [..., in] -> [..., 2 * num_features]
  Tensor forward(const Tensor& x) override;
  Tensor B;

 private:
  int64_t in_, num_;
  double sigma_;
};

// The conditioning vector a network's blocks read: t_embedder(t), plus h_embedder(h) when the
// network has one (MeanFlow's h = t - r), plus y_embedder(labels) when it has classes (the null
// class where labels are undefined). A network with K further scalar conditions (iMF's guidance
// scale and interval; `condition_embedders`, one each) takes h as [n, 1 + K], the interval in
// column 0, and adds condition_embedders[k](h[:, 1 + k]). Checks that t and h are [n] or [n, 1]
// (h [n, 1 + K] with conditions) and that h and labels are given only to networks built for
// them; `who` names the network in errors.
Tensor conditioning_embedding(const ModuleName& who, int64_t n, const Tensor& t, const Tensor& h, const Tensor& labels,
                              TimestepEmbedder& t_embedder, TimestepEmbedder* h_embedder, LabelEmbedding* y_embedder,
                              const std::vector<TimestepEmbedder*>& condition_embedders = {});

// Checks that h is [n] or [n, 1] (no further conditions) or [n, 1 + conditions] and returns its
// columns as [n] tensors: the interval first, then the conditions. `who` names the network.
std::vector<Tensor> interval_and_conditions(const ModuleName& who, int64_t n, const Tensor& h, int64_t conditions);

}  // namespace dualflow
