// The evaluation classifier: config schema, training run, loading and batched use (see
// classifier_run.h).
#include "train/classifier_run.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "engine/threads.h"
#include "train/checkpoint.h"
#include "train/gradient_step.h"
#include "train/json_text.h"
#include "train/metrics_log.h"
#include "train/optim.h"
#include "train/run_spec.h"
#include "train/training_loop.h"

namespace dualflow {

namespace {

constexpr const char* kClassifierKind = "image_classifier";

Device device_of(const Module& m) {
  const std::vector<Tensor> ps = m.parameters();
  return ps.empty() ? Device::cpu() : ps.front().device();
}

}  // namespace

ConfigSchema classifier_schema() {
  ConfigSchema s;
  add_run_keys(s, "seed of the initialisation and of the batch order");

  s.add_string("data.name", "fashion_mnist", "the image set the classifier is for").one_of({"fashion_mnist", "mnist"});
  s.add_string("data.path", "/usr/share/datasets/fashion-mnist", "folder of the image set's IDX files");
  s.add_bool("data.hflip", false, "mirror each training image left-right with probability 1/2");
  s.add_int("data.limit", 0, "train on the first N images only; 0 uses the whole training split").at_least(0);

  s.add_int_list("model.widths", {32, 64}, "channels of each stage; each halves the size (model.downsample)")
      .at_least(1);
  s.add_int("model.convs_per_stage", 2, "3x3 convolutions per stage").at_least(1);
  s.add_int("model.features", 128, "width of the penultimate layer, the features of the Fréchet distance").at_least(1);
  s.add_string("model.downsample", "stride",
               "how each stage halves the size: 2x2 average pooling after it, or stride 2 in its last conv")
      .one_of({"avgpool", "stride"});
  s.add_int("model.norm_groups", 8, "GroupNorm after each convolution with this many groups; 0 for none").at_least(0);
  s.add_string("model.activation", "relu", "activation after every convolution and the feature layer")
      .one_of({"relu", "silu", "gelu"});

  add_optimizer_keys(s, {"adamw", 2e-3, 1e-4, 50, "cosine"});

  s.add_int("train.steps", 1000, "optimizer steps").at_least(1);
  s.add_int("train.batch", 128, "images per step").at_least(1);
  s.add_int("train.log_every", 50, "steps between metrics lines").at_least(1);

  s.add_int("eval.batch", 500, "images per batch when evaluating (no gradients)").at_least(1);
  s.add_int("eval.test_limit", 0, "evaluate on the first N test images only; 0 uses the whole test split").at_least(0);
  return s;
}

ImageClassifierConfig classifier_model_config(const RunConfig& c) {
  ImageClassifierConfig m;
  m.in_channels = 1;
  m.image_size = 28;
  m.num_classes = 10;
  m.widths = c.get_int_list("model.widths");
  m.convs_per_stage = c.get_int("model.convs_per_stage");
  m.feature_dim = c.get_int("model.features");
  m.norm_groups = c.get_int("model.norm_groups");
  m.downsample = c.get_string("model.downsample");
  m.activation = c.get_string("model.activation");
  return m;
}

ClassifierOutput classifier_outputs(ImageClassifier& classifier, const Tensor& images, int64_t batch) {
  DF_CHECK(batch >= 1, "classifier_outputs: batch must be >= 1, got {}", batch);
  DF_CHECK(images.defined() && images.dim() == 4 && images.size(0) >= 1,
           "classifier_outputs: expected images [N, C, H, W] with N >= 1, got {}",
           images.defined() ? images.shape().str() : std::string("undefined"));
  NoGradGuard no_grad;
  const bool was_training = classifier.is_training();
  classifier.eval();
  const Device dev = device_of(classifier);
  const int64_t n = images.size(0);
  std::vector<Tensor> features, logits;
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t len = std::min(batch, n - start);
    Tensor x = images.narrow(0, start, len).to(dev).to(DType::f32);
    ClassifierOutput o = classifier.forward(x);
    features.push_back(o.features.to(Device::cpu()));
    logits.push_back(o.logits.to(Device::cpu()));
  }
  classifier.train(was_training);
  return {features.size() == 1 ? features[0] : cat(features, 0), logits.size() == 1 ? logits[0] : cat(logits, 0)};
}

GaussianStats classifier_feature_stats(ImageClassifier& classifier, const Tensor& images, int64_t batch) {
  return gaussian_stats(classifier_outputs(classifier, images, batch).features);
}

ClassifierTest test_classifier(ImageClassifier& classifier, const ImageDataset& data, int64_t batch) {
  ClassifierOutput o = classifier_outputs(classifier, data.images, batch);
  ClassifierTest t;
  t.images = data.size();
  t.accuracy = accuracy(o.logits, data.labels);
  NoGradGuard no_grad;
  t.loss = cross_entropy(o.logits, data.labels).to(DType::f64).item();
  return t;
}

ClassifierRunResult train_classifier(const RunConfig& c, const ClassifierRunOptions& o) {
  DF_CHECK(!o.out_dir.empty(), "train-classifier: an output directory is required (--out DIR)");
  const RunSettings run = parse_run_keys(c);
  if (run.threads > 0) set_cpu_threads(run.threads);
  const std::string data_dir = c.get_string("data.path");
  const ImageDataset train_set = load_image_dataset(data_dir, ImageSplit::Train, c.get_int("data.limit"));
  const ImageDataset test_set = load_image_dataset(data_dir, ImageSplit::Test, c.get_int("eval.test_limit"));

  Generator init(run.seed);
  ImageClassifier model(classifier_model_config(c), init);
  DF_CHECK(train_set.images.size(2) == 28 && train_set.images.size(3) == 28 && train_set.images.size(1) == 1,
           "train-classifier: {} holds images {} per item; the classifier takes 1x28x28", train_set.source,
           train_set.images.shape().str());
  model.to(run.device);
  model.train();
  const NamedTensors params = model.named_parameters();
  const int64_t total = c.get_int("train.steps"), batch = c.get_int("train.batch");
  const OptimSpec optim = parse_optimizer_keys(c, total);
  std::unique_ptr<Optimizer> opt = make_optimizer(params, optim.optimizer);
  const ImageBatcher batcher(train_set, batch, run.seed, c.get_bool("data.hflip"));
  const TensorOptions f32(DType::f32, run.device);

  LoopSettings ls;
  ls.command = "train-classifier";
  ls.out_dir = o.out_dir;
  ls.progress_line = o.progress_line;
  ls.quiet = o.quiet;
  ls.total_steps = total;
  ls.log_every = c.get_int("train.log_every");
  ls.save_at_end = false;  // saved below, with the test accuracy in its metadata
  ls.grad_clip = optim.grad_clip;
  ls.schedule = optim.schedule;
  ls.window_means = true;
  const double train_images = double(train_set.size());
  ls.extra_fields = [batch, train_images](int64_t step) {
    return fmt::format(R"(,"epoch":{:.4f})", double(step * batch) / train_images);
  };
  TrainingLoop loop(ls, LoopState{&model, opt.get(), nullptr, {}, params, c.to_toml()});
  if (!o.quiet)
    fmt::print("training {} ({} parameters) on {} train images of {}, {} steps of {}\n", model.describe(),
               model.num_parameters(), train_set.size(), c.get_string("data.name"), total, batch);
  std::fflush(stdout);

  const LoopResult r = loop.run([&](int64_t step) {
    ImageBatch b = batcher.batch_at(step, f32);
    Tensor logits = model.logits(b.images);
    const double train_accuracy = accuracy(logits, b.labels);
    return StepOutcome{cross_entropy(logits, b.labels),
                       {},
                       {{"train_accuracy", full({1}, train_accuracy, TensorOptions(DType::f64))}}};
  });
  ClassifierRunResult result;
  result.steps_done = r.steps_done;
  result.last_loss = r.last_loss;
  result.train_seconds = r.train_seconds;

  const ClassifierTest test = test_classifier(model, test_set, c.get_int("eval.batch"));
  result.test_accuracy = test.accuracy;
  result.test_loss = test.loss;
  result.test_images = test.images;
  loop.log(fmt::format(
      R"({{"step":{},"event":"test","test_accuracy":{:.5f},"test_loss":{},"test_images":{},"train_seconds":{:.2f}}})",
      result.steps_done, test.accuracy, json_number(test.loss), test.images, result.train_seconds));
  loop.save({{"kind", kClassifierKind},
             {"test_accuracy", fmt::format("{:.5f}", test.accuracy)},
             {"test_images", std::to_string(test.images)}});
  result.checkpoint = loop.checkpoint_path();
  if (!o.quiet)
    fmt::print("trained {} steps in {:.1f} s; test accuracy {:.2f}% on {} images (loss {:.4f}); checkpoint {}\n",
               result.steps_done, result.train_seconds, 100 * test.accuracy, test.images, test.loss, result.checkpoint);
  return result;
}

LoadedClassifier load_classifier(const std::string& path) {
  CheckpointInfo info;
  NamedTensors weights = checkpoint_weights(path, false, &info);
  auto kind = info.metadata.find("kind");
  DF_CHECK(kind != info.metadata.end() && kind->second == kClassifierKind,
           "checkpoint {}: not an image-classifier checkpoint (metadata user.kind is '{}', expected '{}'); train one "
           "with `dualflow train-classifier`",
           path, kind == info.metadata.end() ? std::string() : kind->second, kClassifierKind);
  DF_CHECK(!info.config.empty(), "checkpoint {}: holds no run config (metadata 'dualflow.config' is empty)", path);
  LoadedClassifier lc{parse_config_text(info.config, path + " (stored config)", {}, classifier_schema()), nullptr,
                      info.step, info.metadata, {}, {}};
  Generator init(0);
  lc.model = std::make_shared<ImageClassifier>(classifier_model_config(lc.config), init);
  lc.model->load_state_dict(weights);
  lc.model->eval();
  lc.model->to(parse_run_keys(lc.config).device);
  lc.data_name = lc.config.get_string("data.name");
  lc.data_path = lc.config.get_string("data.path");
  return lc;
}

ClassifierEvaluation evaluate_classifier(const LoadedClassifier& classifier, const std::string& data_dir, uint64_t seed,
                                         int64_t batch, int64_t limit) {
  DF_CHECK(limit >= 0, "evaluate_classifier: limit must be >= 0 (0 uses the whole test split), got {}", limit);
  ClassifierEvaluation e;
  e.data_dir = data_dir.empty() ? classifier.config.get_string("data.path") : data_dir;
  const ImageDataset test_set = load_image_dataset(e.data_dir, ImageSplit::Test, limit);
  const ImageDataset train_set = load_image_dataset(e.data_dir, ImageSplit::Train);
  ImageClassifier& model = *classifier.model;
  const ClassifierOutput test_out = classifier_outputs(model, test_set.images, batch);
  e.test.images = test_set.size();
  e.test.accuracy = accuracy(test_out.logits, test_set.labels);
  {
    NoGradGuard no_grad;
    e.test.loss = cross_entropy(test_out.logits, test_set.labels).to(DType::f64).item();
  }
  e.test_stats = gaussian_stats(test_out.features);
  // A random train subset of the test split's size (without replacement: one epoch's shuffle).
  e.floor_images = std::min(test_set.size(), train_set.size());
  const ImageBatch subset = ImageBatcher(train_set, e.floor_images, seed).batch_at(0, TensorOptions(DType::f32));
  e.fd_floor = frechet_distance(e.test_stats, classifier_feature_stats(model, subset.images, batch));
  return e;
}

}  // namespace dualflow
