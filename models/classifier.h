// ImageClassifier: the small CNN whose penultimate features define the Fréchet distance of
// `dualflow eval` on Fashion-MNIST (an FID with a classifier trained by this engine instead of
// Inception) and whose predictions score the classes of class-conditional samples.
//
// Per stage s (widths[s] channels): convs_per_stage x (conv 3x3, padding 1 -> [GroupNorm] ->
// activation), halving the size at the stage's end, either by 2x2 average pooling after it
// ("avgpool") or by giving its last conv stride 2 ("stride", a quarter of that conv's work and
// no pooling pass: over 2x faster to train on the CPU); then flatten -> Linear -> activation
// (the features) -> Linear to the class logits. With the defaults on 28x28x1: conv 32, conv 32,
// pool -> conv 64, conv 64, pool -> Linear 64*7*7 -> 128 -> Linear 128 -> 10.
// Parameter names: "convs.<i>.weight" (i counts convs over all stages), "norms.<i>.weight"
// (with norm_groups > 0), "fc.weight" (the feature layer), "head.weight".
#pragma once
#include <string>
#include <vector>

#include "models/activation.h"
#include "models/conv.h"
#include "models/group_norm.h"
#include "models/linear.h"

namespace dualflow {

struct ImageClassifierConfig {
  int64_t in_channels = 1;
  int64_t image_size = 28;  // square inputs; divisible by 2^widths.size()
  int64_t num_classes = 10;
  std::vector<int64_t> widths = {32, 64};  // channels of each stage; each stage halves the size
  int64_t convs_per_stage = 2;
  int64_t feature_dim = 128;           // width of the penultimate (feature) layer
  int64_t norm_groups = 0;             // GroupNorm after each conv with this many groups; 0: none
  std::string downsample = "avgpool";  // "avgpool" or "stride" (see above); same parameters either way
  std::string activation = "relu";
};

struct ClassifierOutput {
  Tensor features;  // [N, feature_dim], after the activation
  Tensor logits;    // [N, num_classes]
};

class ImageClassifier : public Module {
 public:
  ImageClassifier(const ImageClassifierConfig& config, Generator& gen);
  std::string describe() const override;
  // x [N, in_channels, image_size, image_size] -> features and logits in one pass.
  ClassifierOutput forward(const Tensor& x);
  Tensor features(const Tensor& x) { return forward(x).features; }
  Tensor logits(const Tensor& x) { return forward(x).logits; }
  const ImageClassifierConfig& config() const { return config_; }

  std::shared_ptr<ModuleList<Conv2d>> convs;
  std::shared_ptr<ModuleList<GroupNorm>> norms;  // null without norm_groups
  std::shared_ptr<Linear> fc, head;

 private:
  ImageClassifierConfig config_;
  ActivationKind activation_;
  bool strided_ = false;
};

// Mean cross-entropy of logits [N, C] against class labels i64 [N] in [0, C):
// -mean_i log_softmax(logits)_i[label_i], as torch.nn.functional.cross_entropy. Differentiable
// in both modes (log_softmax and gather).
Tensor cross_entropy(const Tensor& logits, const Tensor& labels);

// The fraction of rows whose arg-max logit is the label.
double accuracy(const Tensor& logits, const Tensor& labels);

}  // namespace dualflow
