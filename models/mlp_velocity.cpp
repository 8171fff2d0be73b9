// MLPVelocity: feature assembly, checks and the MLP.
#include "models/mlp_velocity.h"

namespace dualflow {

MLPVelocity::MLPVelocity(const MLPVelocityConfig& config, Generator& gen)
    : VelocityNetwork("MLPVelocity"),
      config_(config),
      time_embedding_(SinusoidalOptions{config.embedding_dim, config.time_scale}) {
  DF_CHECK(config.data_dim > 0 && config.width > 0 && config.depth > 0,
           "MLPVelocity: data_dim, width and depth must be positive, got {}, {}, {}", config.data_dim, config.width,
           config.depth);
  DF_CHECK(config.num_classes >= 0, "MLPVelocity: num_classes must be >= 0, got {}", config.num_classes);
  std::vector<int64_t> widths{input_features()};
  for (int64_t i = 0; i < config.depth; ++i) widths.push_back(config.width);
  DF_CHECK(config.conditions >= 0 && (config.conditions == 0 || config.use_h) && config.out_dim >= 0,
           "MLPVelocity: conditions ({}) need use_h and out_dim ({}) must be >= 0", config.conditions, config.out_dim);
  widths.push_back(config.out_dim > 0 ? config.out_dim : config.data_dim);
  net = register_module("net", std::make_shared<MLP>(widths, config.activation, gen));
  if (config.num_classes > 0)
    label_embedding =
        register_module("label_embedding", std::make_shared<LabelEmbedding>(config.num_classes, input_features(), gen));
}

int64_t MLPVelocity::input_features() const {
  return config_.data_dim + config_.embedding_dim * (config_.use_h ? 2 + config_.conditions : 1);
}

std::string MLPVelocity::describe() const {
  return fmt::format(
      "MLPVelocity(d={}, width={}, depth={}, emb={}{}{}{})", config_.data_dim, config_.width, config_.depth,
      config_.embedding_dim,
      config_.use_h ? (config_.conditions ? fmt::format(", h+{} conditions", config_.conditions) : ", h") : "",
      config_.num_classes ? fmt::format(", classes={}", config_.num_classes) : "",
      config_.out_dim > 0 && config_.out_dim != config_.data_dim ? fmt::format(", out={}", config_.out_dim) : "");
}

Tensor MLPVelocity::forward(const Tensor& z, const Tensor& t, const Tensor& h, const Tensor& labels) {
  DF_CHECK(z.defined() && z.dim() == 2 && z.shape()[1] == config_.data_dim, "{}: z expected [N, {}], got {}",
           describe(), config_.data_dim, z.defined() ? z.shape().str() : "undefined");
  const int64_t n = z.shape()[0];
  auto check_time = [&](const char* what, const Tensor& s) {
    DF_CHECK(s.defined() && s.shape()[0] == n && (s.dim() == 1 || (s.dim() == 2 && s.shape()[1] == 1)),
             "{}: {} expected [{}] or [{}, 1], got {}", describe(), what, n, n,
             s.defined() ? s.shape().str() : "undefined");
  };
  check_time("t", t);
  std::vector<Tensor> features{z, time_embedding_.forward(t)};
  if (config_.use_h) {
    for (const Tensor& column : interval_and_conditions(*this, n, h, config_.conditions))
      features.push_back(time_embedding_.forward(column));
  } else {
    DF_CHECK(!h.defined(), "{}: was built without the h input (use_h = false) but was given h {}", describe(),
             h.shape().str());
  }
  if (!label_embedding) {
    DF_CHECK(!labels.defined(), "{}: was built without classes (num_classes = 0) but was given labels {}", describe(),
             labels.shape().str());
    // The first layer over the parts: a tangent in z alone (the likelihood's divergence)
    // multiplies z's columns of its weight, not the zeros of the embeddings' tangents.
    return net->forward_parts(features);
  }
  Tensor y = labels.defined()
                 ? labels
                 : full(Shape{n}, double(label_embedding->null_class()), TensorOptions(DType::i64, z.device()));
  DF_CHECK(y.dim() == 1 && y.shape()[0] == n, "{}: labels expected [{}], got {}", describe(), n, y.shape().str());
  return net->forward(cat(features, 1) + label_embedding->forward(y));
}

}  // namespace dualflow
