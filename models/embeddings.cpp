// Embedding tables, label dropping, sinusoidal and Fourier features, TimestepEmbedder.
#include "models/embeddings.h"

#include <cmath>
#include <numbers>

#include "models/activation.h"
#include "models/init.h"

namespace dualflow {

namespace {

// A time-like input [N] or [N, 1] as [N, 1].
Tensor as_column(const ModuleName& who, const Tensor& s) {
  DF_CHECK(s.defined() && (s.dim() == 1 || (s.dim() == 2 && s.shape()[1] == 1)),
           "{}: expected an input [N] or [N, 1], got {}", who, s.defined() ? s.shape().str() : "undefined");
  DF_CHECK(is_floating(s.dtype()), "{}: expected a floating input, got {}", who, dtype_name(s.dtype()));
  return s.dim() == 1 ? s.unsqueeze(1) : s;
}

// Runs a lookup, re-throwing engine errors (bad dtype, index out of range) under the module's name.
Tensor lookup(const ModuleName& who, const Tensor& table, const Tensor& indices) {
  DF_CHECK(indices.defined(), "{}: indices are undefined", who);
  DF_CHECK(indices.dtype() == DType::i64, "{}: indices must be i64, got {}", who, dtype_name(indices.dtype()));
  Shape out_shape = indices.shape();
  out_shape.push_back(table.shape()[1]);
  try {
    return index_select(table, 0, indices.reshape(Shape{-1})).reshape(out_shape);
  } catch (const Error& e) { fail("{}: {}", who, e.what()); }
}

}  // namespace

// ---- Embedding ----

Embedding::Embedding(int64_t num_embeddings, int64_t dim, Generator& gen)
    : UnaryModule("Embedding"), num_(num_embeddings), dim_(dim) {
  DF_CHECK(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got num={} dim={}", num_embeddings, dim);
  weight = register_parameter("weight", zeros(Shape{num_, dim_}));
  init::normal_(weight, 0.0, 1.0, gen);
}

std::string Embedding::describe() const { return fmt::format("Embedding(num={}, dim={})", num_, dim_); }

Tensor Embedding::forward(const Tensor& indices) { return lookup(*this, weight, indices); }

// ---- LabelEmbedding ----

LabelEmbedding::LabelEmbedding(int64_t num_classes, int64_t dim, Generator& gen)
    : UnaryModule("LabelEmbedding"), num_classes_(num_classes), dim_(dim) {
  DF_CHECK(num_classes > 0, "LabelEmbedding: num_classes must be positive, got {}", num_classes);
  embedding_table = register_module("embedding_table", std::make_shared<Embedding>(num_classes + 1, dim, gen));
}

std::string LabelEmbedding::describe() const {
  return fmt::format("LabelEmbedding(classes={} + null, dim={})", num_classes_, dim_);
}

Tensor LabelEmbedding::forward(const Tensor& labels) { return lookup(*this, embedding_table->weight, labels); }

Tensor LabelEmbedding::drop_labels(const Tensor& labels, double p, Generator& gen) const {
  return dualflow::drop_labels(labels, p, null_class(), gen);
}

Tensor LabelEmbedding::null_labels(const Tensor& like) const {
  return full(like.shape(), double(null_class()), TensorOptions(DType::i64, like.device()));
}

Tensor drop_labels(const Tensor& labels, double p, int64_t null_index, Generator& gen) {
  DF_CHECK(labels.defined() && labels.dtype() == DType::i64, "drop_labels: labels must be i64, got {}",
           labels.defined() ? dtype_name(labels.dtype()) : "undefined");
  DF_CHECK(p >= 0.0 && p <= 1.0, "drop_labels: p must be in [0, 1], got {}", p);
  Tensor dropped = bernoulli(labels.shape(), p, gen, TensorOptions(DType::f32, labels.device()));
  Tensor is_dropped = gt(dropped, full(Shape{}, 0.5, TensorOptions(DType::f32, labels.device())));
  return where(is_dropped, full(Shape{}, double(null_index), TensorOptions(DType::i64, labels.device())), labels);
}

// ---- SinusoidalEmbedding ----

SinusoidalEmbedding::SinusoidalEmbedding(SinusoidalOptions opts) : UnaryModule("SinusoidalEmbedding"), opts_(opts) {
  DF_CHECK(opts.dim > 0 && opts.dim % 2 == 0, "SinusoidalEmbedding: dim must be positive and even, got {}", opts.dim);
  DF_CHECK(opts.max_period > 1.0, "SinusoidalEmbedding: max_period must be above 1, got {}", opts.max_period);
}

std::string SinusoidalEmbedding::describe() const {
  return fmt::format("SinusoidalEmbedding(dim={}, scale={})", opts_.dim, opts_.scale);
}

Tensor SinusoidalEmbedding::forward(const Tensor& s) {
  Tensor col = as_column(*this, s);
  if (!freqs_.defined() || freqs_.dtype() != s.dtype() || freqs_.device() != s.device()) {
    const int64_t half = opts_.dim / 2;
    std::vector<double> f(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i)
      f[size_t(i)] = opts_.scale * std::exp(-std::log(opts_.max_period) * double(i) / double(half));
    freqs_ = from_vector(f, Shape{1, half}, TensorOptions(s.dtype())).to(s.device());
  }
  Tensor a = col * freqs_;  // [N, half]
  return opts_.cos_first ? cat({cos(a), sin(a)}, 1) : cat({sin(a), cos(a)}, 1);
}

// ---- TimestepEmbedder ----

TimestepEmbedder::TimestepEmbedder(int64_t hidden, Generator& gen, SinusoidalOptions frequencies)
    : UnaryModule("TimestepEmbedder"), hidden_(hidden), sinusoidal_(frequencies) {
  mlp = register_module("mlp", std::make_shared<Sequential>());
  linear1 = mlp->push_back(std::make_shared<Linear>(frequencies.dim, hidden, gen));
  mlp->push_back(std::make_shared<Activation>(ActivationKind::SiLU));
  linear2 = mlp->push_back(std::make_shared<Linear>(hidden, hidden, gen));
}

std::string TimestepEmbedder::describe() const {
  return fmt::format("TimestepEmbedder(hidden={}, frequency_dim={})", hidden_, sinusoidal_.options().dim);
}

Tensor TimestepEmbedder::forward(const Tensor& t) {
  as_column(*this, t);
  return mlp->forward(sinusoidal_.forward(t));
}

// ---- FourierFeatures ----

FourierFeatures::FourierFeatures(int64_t in_features, int64_t num_features, double sigma, Generator& gen)
    : UnaryModule("FourierFeatures"), in_(in_features), num_(num_features), sigma_(sigma) {
  DF_CHECK(in_features > 0 && num_features > 0 && sigma > 0,
           "FourierFeatures: sizes and sigma must be positive, got in={} features={} sigma={}", in_features,
           num_features, sigma);
  B = register_buffer("B", normal(Shape{in_, num_}, 0.0, sigma, gen));
}

std::string FourierFeatures::describe() const {
  return fmt::format("FourierFeatures(in={}, features={}, sigma={})", in_, num_, sigma_);
}

Tensor FourierFeatures::forward(const Tensor& x) {
  DF_CHECK(x.defined() && x.dim() >= 1 && x.shape()[x.dim() - 1] == in_, "{}: input last dim expected {}, got shape {}",
           describe(), in_, x.defined() ? x.shape().str() : "undefined");
  Tensor a = matmul(x, B) * (2.0 * std::numbers::pi);
  return cat({sin(a), cos(a)}, -1);
}

std::vector<Tensor> interval_and_conditions(const ModuleName& who, int64_t n, const Tensor& h, int64_t conditions) {
  DF_CHECK(h.defined() && h.shape()[0] == n &&
               ((conditions == 0 && h.dim() == 1) || (h.dim() == 2 && h.shape()[1] == 1 + conditions)),
           "{}: h expected {}, got {}", who,
           conditions == 0 ? fmt::format("[{}] or [{}, 1]", n, n)
                           : fmt::format("[{}, {}] (the interval, then {} conditions)", n, 1 + conditions, conditions),
           h.defined() ? h.shape().str() : "undefined");
  if (h.dim() == 1) return {h};
  std::vector<Tensor> columns;
  for (int64_t k = 0; k <= conditions; ++k) columns.push_back(h.select(1, k));
  return columns;
}

Tensor conditioning_embedding(const ModuleName& who, int64_t n, const Tensor& t, const Tensor& h, const Tensor& labels,
                              TimestepEmbedder& t_embedder, TimestepEmbedder* h_embedder, LabelEmbedding* y_embedder,
                              const std::vector<TimestepEmbedder*>& condition_embedders) {
  auto check_time = [&](const char* what, const Tensor& s) {
    DF_CHECK(s.defined() && s.dim() >= 1 && s.shape()[0] == n && (s.dim() == 1 || (s.dim() == 2 && s.shape()[1] == 1)),
             "{}: {} expected [{}] or [{}, 1], got {}", who, what, n, n, s.defined() ? s.shape().str() : "undefined");
  };
  check_time("t", t);
  Tensor c = t_embedder.forward(t);
  if (h_embedder) {
    const std::vector<Tensor> columns =
        interval_and_conditions(who, n, h, int64_t(condition_embedders.size()));
    c = c + h_embedder->forward(columns[0]);
    for (size_t k = 0; k < condition_embedders.size(); ++k) c = c + condition_embedders[k]->forward(columns[k + 1]);
  } else {
    DF_CHECK(!h.defined(), "{}: was built without the h input (use_h = false) but was given h {}", who,
             h.shape().str());
  }
  if (y_embedder) {
    Tensor y = labels.defined()
                   ? labels
                   : full(Shape{n}, double(y_embedder->null_class()), TensorOptions(DType::i64, t.device()));
    DF_CHECK(y.dim() == 1 && y.shape()[0] == n, "{}: labels expected [{}], got {}", who, n, y.shape().str());
    c = c + y_embedder->forward(y);
  } else {
    DF_CHECK(!labels.defined(), "{}: was built without classes (num_classes = 0) but was given labels {}", who,
             labels.shape().str());
  }
  return c;
}

}  // namespace dualflow
