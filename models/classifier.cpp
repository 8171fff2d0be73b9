// ImageClassifier, its cross-entropy loss and accuracy (see classifier.h).
#include "models/classifier.h"

namespace dualflow {

ImageClassifier::ImageClassifier(const ImageClassifierConfig& config, Generator& gen)
    : Module("ImageClassifier"), config_(config), activation_(parse_activation(config.activation)) {
  const auto& c = config;
  DF_CHECK(c.downsample == "avgpool" || c.downsample == "stride",
           "ImageClassifier: downsample expects avgpool or stride, got '{}'", c.downsample);
  strided_ = c.downsample == "stride";
  DF_CHECK(c.in_channels > 0 && c.num_classes > 1 && c.feature_dim > 0 && c.convs_per_stage > 0 && !c.widths.empty(),
           "ImageClassifier: expected in_channels > 0, num_classes > 1, feature_dim > 0, convs_per_stage > 0 and at "
           "least one stage width, got {}, {}, {}, {} and widths [{}]",
           c.in_channels, c.num_classes, c.feature_dim, c.convs_per_stage, fmt::join(c.widths, ", "));
  const int64_t shrink = int64_t(1) << c.widths.size();
  DF_CHECK(c.image_size > 0 && c.image_size % shrink == 0,
           "ImageClassifier: image_size {} must be a positive multiple of {} ({} stages, each pooling by 2)",
           c.image_size, shrink, c.widths.size());
  convs = register_module("convs", std::make_shared<ModuleList<Conv2d>>());
  if (c.norm_groups > 0) norms = register_module("norms", std::make_shared<ModuleList<GroupNorm>>());
  int64_t channels = c.in_channels;
  for (int64_t width : c.widths) {
    DF_CHECK(width > 0, "ImageClassifier: stage widths must be positive, got [{}]", fmt::join(c.widths, ", "));
    DF_CHECK(c.norm_groups <= 0 || width % c.norm_groups == 0,
             "ImageClassifier: norm_groups {} must divide every stage width, got [{}]", c.norm_groups,
             fmt::join(c.widths, ", "));
    for (int64_t k = 0; k < c.convs_per_stage; ++k) {
      const int64_t stride = strided_ && k + 1 == c.convs_per_stage ? 2 : 1;
      convs->push_back(
          std::make_shared<Conv2d>(channels, width, 3, gen, Conv2dOptions{.stride = stride, .padding = 1}));
      if (norms) norms->push_back(std::make_shared<GroupNorm>(c.norm_groups, width));
      channels = width;
    }
  }
  const int64_t side = c.image_size / shrink;
  fc = register_module("fc", std::make_shared<Linear>(channels * side * side, c.feature_dim, gen));
  head = register_module("head", std::make_shared<Linear>(c.feature_dim, c.num_classes, gen));
}

std::string ImageClassifier::describe() const {
  return fmt::format("ImageClassifier(in={}, size={}, widths=[{}], convs/stage={}, {}, features={}, classes={}{}, {})",
                     config_.in_channels, config_.image_size, fmt::join(config_.widths, ", "), config_.convs_per_stage,
                     config_.downsample, config_.feature_dim, config_.num_classes,
                     config_.norm_groups > 0 ? fmt::format(", groupnorm {}", config_.norm_groups) : "",
                     activation_name(activation_));
}

ClassifierOutput ImageClassifier::forward(const Tensor& x) {
  const int64_t size = config_.image_size;
  DF_CHECK(x.defined() && x.dim() == 4 && x.shape()[1] == config_.in_channels && x.shape()[2] == size &&
               x.shape()[3] == size,
           "{}: expected images [N, {}, {}, {}], got {}", describe(), config_.in_channels, size, size,
           x.defined() ? x.shape().str() : "undefined");
  Tensor h = x;
  size_t i = 0;
  for (size_t stage = 0; stage < config_.widths.size(); ++stage) {
    for (int64_t k = 0; k < config_.convs_per_stage; ++k, ++i) {
      h = (*convs)[i]->forward(h);
      if (norms) h = (*norms)[i]->forward(h);
      h = activate(activation_, h);
    }
    if (!strided_) h = avg_pool2d(h, 2);
  }
  ClassifierOutput out;
  out.features = fc->forward_activated(h.flatten(1), activation_op(activation_));
  out.logits = head->forward(out.features);
  return out;
}

Tensor cross_entropy(const Tensor& logits, const Tensor& labels) {
  DF_CHECK(logits.defined() && logits.dim() == 2 && logits.size(0) >= 1,
           "cross_entropy: expected logits [N, C] with N >= 1, got {}",
           logits.defined() ? logits.shape().str() : "undefined");
  DF_CHECK(labels.defined() && labels.dim() == 1 && labels.size(0) == logits.size(0) && labels.dtype() == DType::i64,
           "cross_entropy: expected labels i64 [{}] for logits {}, got {} {}", logits.size(0), logits.shape().str(),
           labels.defined() ? std::string(dtype_name(labels.dtype())) : std::string("undefined"),
           labels.defined() ? labels.shape().str() : std::string());
  Tensor picked = gather(log_softmax(logits, 1), 1, labels.unsqueeze(1));
  return -mean(picked);
}

double accuracy(const Tensor& logits, const Tensor& labels) {
  DF_CHECK(logits.defined() && logits.dim() == 2 && labels.defined() && labels.dim() == 1 &&
               labels.size(0) == logits.size(0) && logits.size(0) >= 1,
           "accuracy: expected logits [N, C] and labels [N] with N >= 1, got {} and {}",
           logits.defined() ? logits.shape().str() : "undefined",
           labels.defined() ? labels.shape().str() : "undefined");
  const std::vector<int64_t> predicted = argmax(logits.detach(), 1).to(DType::i64).to_vector<int64_t>();
  const std::vector<int64_t> truth = labels.to(DType::i64).to_vector<int64_t>();
  int64_t right = 0;
  for (size_t i = 0; i < truth.size(); ++i) right += predicted[i] == truth[i];
  return double(right) / double(truth.size());
}

}  // namespace dualflow
