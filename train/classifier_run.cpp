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

#include "kernels/cpu/parallel.h"
#include "train/checkpoint.h"
#include "train/gradient_step.h"
#include "train/json_text.h"
#include "train/metrics_log.h"
#include "train/optim.h"

namespace dualflow {

namespace {

constexpr const char* kClassifierKind = "image_classifier";

Device run_device(const RunConfig& c) {
  Device d = Device::parse(c.get_string("run.device"));
  backend_for(d);  // a clear error when the device does not exist
  return d;
}

Device device_of(const Module& m) {
  const std::vector<Tensor> ps = m.parameters();
  return ps.empty() ? Device::cpu() : ps.front().device();
}

std::unique_ptr<Optimizer> classifier_optimizer(const RunConfig& c, const NamedTensors& params) {
  OptimizerOptions oo;
  oo.name = c.get_string("optim.name");
  oo.lr = c.get_float("optim.lr");
  oo.weight_decay = c.get_float("optim.weight_decay");
  if (oo.name == "sgd") {
    oo.momentum = c.get_float("optim.beta1");
  } else {
    oo.beta1 = c.get_float("optim.beta1");
    oo.beta2 = c.get_float("optim.beta2");
  }
  return make_optimizer(params, oo);
}

}  // namespace

ConfigSchema classifier_schema() {
  ConfigSchema s;
  s.add_int("run.seed", 0, "seed of the initialisation and of the batch order").at_least(0);
  s.add_string("run.device", "cpu", "where to run: cpu, cuda or cuda:N");
  s.add_int("run.threads", 0, "CPU worker threads; 0 uses all cores").at_least(0);

  s.add_string("data.name", "fashion_mnist", "the image set the classifier is for").one_of({"fashion_mnist", "mnist"});
  s.add_string("data.path", "/usr/share/datasets/fashion-mnist", "folder of the image set's IDX files");
  s.add_bool("data.hflip", false, "mirror each training image left-right with probability 1/2");
  s.add_int("data.limit", 0, "train on the first N images only; 0 uses the whole training split").at_least(0);

  s.add_int_list("model.widths", {32, 64}, "channels of each stage; each halves the size (model.downsample)").at_least(1);
  s.add_int("model.convs_per_stage", 2, "3x3 convolutions per stage").at_least(1);
  s.add_int("model.features", 128, "width of the penultimate layer, the features of the Fréchet distance").at_least(1);
  s.add_string("model.downsample", "stride",
               "how each stage halves the size: 2x2 average pooling after it, or stride 2 in its last conv")
      .one_of({"avgpool", "stride"});
  s.add_int("model.norm_groups", 8, "GroupNorm after each convolution with this many groups; 0 for none").at_least(0);
  s.add_string("model.activation", "relu", "activation after every convolution and the feature layer")
      .one_of({"relu", "silu", "gelu"});

  s.add_string("optim.name", "adamw", "optimizer").one_of({"sgd", "adam", "adamw"});
  s.add_float("optim.lr", 2e-3, "peak learning rate (reached after warmup)").greater_than(0);
  s.add_float("optim.weight_decay", 1e-4, "L2 (sgd, adam) or decoupled (adamw) weight decay").at_least(0);
  s.add_float("optim.beta1", 0.9, "Adam first-moment decay; SGD momentum").at_least(0).less_than(1);
  s.add_float("optim.beta2", 0.999, "Adam second-moment decay").at_least(0).less_than(1);
  s.add_int("optim.warmup_steps", 50, "linear learning-rate warmup steps").at_least(0);
  s.add_string("optim.schedule", "cosine", "learning rate after warmup: constant, or cosine decay to 0 at train.steps")
      .one_of({"constant", "cosine"});
  s.add_float("optim.grad_clip", 0.0, "clip the global gradient norm to this; 0 turns clipping off").at_least(0);

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
  namespace fs = std::filesystem;
  using clock = std::chrono::steady_clock;
  DF_CHECK(!o.out_dir.empty(), "train-classifier: an output directory is required (--out DIR)");
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  DF_CHECK(!ec && fs::is_directory(o.out_dir), "train-classifier: cannot create the output directory '{}': {}",
           o.out_dir, ec ? ec.message() : "not a directory");
  const std::string ckpt = (fs::path(o.out_dir) / "checkpoint.safetensors").string();
  const std::string metrics_path = (fs::path(o.out_dir) / "metrics.jsonl").string();
  if (c.get_int("run.threads") > 0) cpu::set_num_threads(int(c.get_int("run.threads")));

  const Device dev = run_device(c);
  const uint64_t seed = uint64_t(c.get_int("run.seed"));
  const std::string data_dir = c.get_string("data.path");
  const ImageDataset train_set = load_image_dataset(data_dir, ImageSplit::Train, c.get_int("data.limit"));
  const ImageDataset test_set = load_image_dataset(data_dir, ImageSplit::Test, c.get_int("eval.test_limit"));

  Generator init(seed);
  ImageClassifier model(classifier_model_config(c), init);
  DF_CHECK(train_set.images.size(2) == 28 && train_set.images.size(3) == 28 && train_set.images.size(1) == 1,
           "train-classifier: {} holds images {} per item; the classifier takes 1x28x28", train_set.source,
           train_set.images.shape().str());
  model.to(dev);
  model.train();
  const NamedTensors params = model.named_parameters();
  std::unique_ptr<Optimizer> opt = classifier_optimizer(c, params);
  LrSchedule schedule;
  schedule.base_lr = c.get_float("optim.lr");
  schedule.warmup_steps = c.get_int("optim.warmup_steps");
  schedule.kind = LrSchedule::parse_kind(c.get_string("optim.schedule"));
  schedule.total_steps = c.get_int("train.steps");
  schedule.validate();
  const ImageBatcher batcher(train_set, c.get_int("train.batch"), seed, c.get_bool("data.hflip"));
  const TensorOptions f32(DType::f32, dev);

  MetricsLog metrics(metrics_path, /*resume_step=*/-1, "train-classifier");
  const int64_t total = c.get_int("train.steps"), log_every = c.get_int("train.log_every");
  const int64_t batch = c.get_int("train.batch");
  const double clip = c.get_float("optim.grad_clip");
  if (!o.quiet)
    fmt::print("training {} ({} parameters) on {} train images of {}, {} steps of {}\n", model.describe(),
               model.num_parameters(), train_set.size(), c.get_string("data.name"), total, batch);
  std::fflush(stdout);

  ClassifierRunResult result;
  const auto started = clock::now();
  auto window_start = started;
  double window_loss = 0, window_accuracy = 0;
  int64_t window_steps = 0;
  for (int64_t step = 0; step < total;) {
    opt->set_lr(schedule.lr_at(step));
    ImageBatch b = batcher.batch_at(step, f32);
    Tensor logits = model.logits(b.images);
    Tensor loss = cross_entropy(logits, b.labels);
    const GradientStep g = compute_gradients(loss, *opt, params, clip);
    const double loss_value = g.loss, grad_norm = g.grad_norm;
    if (!g.finite()) {
      metrics.write(g.non_finite_record(step + 1) + "}");
      fail("train-classifier: step {}: the {} is {}; training stopped (lower optim.lr or set optim.grad_clip)",
           step + 1, g.bad_quantity(), g.bad_value());
    }
    opt->step();
    ++step;
    window_loss += loss_value;
    window_accuracy += accuracy(logits, b.labels);
    ++window_steps;
    if (step % log_every == 0 || step == total) {
      const auto now = clock::now();
      const double secs = std::chrono::duration<double>(now - window_start).count();
      const double its = secs > 0 ? double(window_steps) / secs : 0;
      const double mean_loss = window_loss / double(window_steps), mean_acc = window_accuracy / double(window_steps);
      metrics.write(fmt::format(
          R"({{"step":{},"epoch":{:.4f},"loss":{},"train_accuracy":{:.5f},"lr":{},"grad_norm":{},"it_per_s":{:.3f}}})",
          step, double(step * batch) / double(train_set.size()), json_number(mean_loss), mean_acc,
          json_number(opt->lr()), json_number(grad_norm), its));
      result.last_loss = mean_loss;
      if (!o.quiet) {
        const double eta = its > 0 ? double(total - step) / its : 0;
        std::string line = fmt::format("step {}/{}  loss {:.4f}  acc {:.3f}  {:.1f} it/s  ETA {:.0f} s", step, total,
                                       mean_loss, mean_acc, its, eta);
        if (o.progress_line) fmt::print("\r{:<78}", line);
        else fmt::print("{}\n", line);
        std::fflush(stdout);
      }
      window_start = now;
      window_loss = window_accuracy = 0;
      window_steps = 0;
    }
    result.steps_done = step;
  }
  result.train_seconds = std::chrono::duration<double>(clock::now() - started).count();
  if (!o.quiet && o.progress_line) fmt::print("\n");

  const ClassifierTest test = test_classifier(model, test_set, c.get_int("eval.batch"));
  result.test_accuracy = test.accuracy;
  result.test_loss = test.loss;
  result.test_images = test.images;
  metrics.write(fmt::format(
      R"({{"step":{},"event":"test","test_accuracy":{:.5f},"test_loss":{},"test_images":{},"train_seconds":{:.2f}}})",
      result.steps_done, test.accuracy, json_number(test.loss), test.images, result.train_seconds));

  CheckpointInfo info;
  info.step = result.steps_done;
  info.config = c.to_toml();
  info.metadata = {{"kind", kClassifierKind},
                   {"test_accuracy", fmt::format("{:.5f}", test.accuracy)},
                   {"test_images", std::to_string(test.images)}};
  save_checkpoint(ckpt, CheckpointParts{&model, nullptr, nullptr, {}}, info);
  result.checkpoint = ckpt;
  if (!o.quiet)
    fmt::print("trained {} steps in {:.1f} s; test accuracy {:.2f}% on {} images (loss {:.4f}); checkpoint {}\n",
               result.steps_done, result.train_seconds, 100 * test.accuracy, test.images, test.loss, ckpt);
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
                      info.step, info.metadata};
  Generator init(0);
  lc.model = std::make_shared<ImageClassifier>(classifier_model_config(lc.config), init);
  lc.model->load_state_dict(weights);
  lc.model->eval();
  lc.model->to(run_device(lc.config));
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
