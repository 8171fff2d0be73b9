// The evaluation classifier's training run and its use (`dualflow train-classifier` and
// `dualflow eval-classifier`; `dualflow eval` builds on the same functions): the config schema,
// the training loop (AdamW on cross-entropy over epoch-shuffled image batches, metrics.jsonl,
// an atomic checkpoint with the config in its metadata, the test accuracy at the end), loading
// a trained classifier, its features and logits in no-grad batches, and the Fréchet distance
// floor of a data set (test split against a train subset of the same size).
#pragma once
#include <map>
#include <memory>
#include <string>

#include "models/classifier.h"
#include "train/config.h"
#include "train/frechet.h"
#include "train/image_data.h"

namespace dualflow {

// run (seed, threads, device), data (name, path, hflip, limit), model (widths, convs_per_stage,
// features, norm_groups, activation), optim (name, lr, weight_decay, betas, warmup, schedule,
// grad_clip), train (steps, batch, log_every), eval (batch, test_limit). The defaults are the
// settings of configs/fmnist_classifier.toml (91.6% test accuracy on Fashion-MNIST).
ConfigSchema classifier_schema();

// The network a classifier config describes (28x28x1 images, 10 classes).
ImageClassifierConfig classifier_model_config(const RunConfig& config);

struct ClassifierRunOptions {
  std::string out_dir;         // receives checkpoint.safetensors and metrics.jsonl
  bool progress_line = false;  // one updating line (a terminal) instead of plain log lines
  bool quiet = false;          // no console output (tests)
};

struct ClassifierRunResult {
  int64_t steps_done = 0;
  double last_loss = 0;      // the mean training loss of the last logging window
  double test_accuracy = 0;  // on the test split (its first eval.test_limit images when set)
  double test_loss = 0;
  int64_t test_images = 0;
  double train_seconds = 0;  // the training loop alone, without loading data and the test pass
  std::string checkpoint;
};

// Trains as configured, evaluates on the test split, writes the checkpoint (metadata:
// user.kind = "image_classifier", user.test_accuracy) and the metrics (one line per
// train.log_every steps, then {"event":"test",...}). Throws on a non-finite loss, naming the step.
ClassifierRunResult train_classifier(const RunConfig& config, const ClassifierRunOptions& options);

// A trained classifier in eval mode on its run's device, with its run config.
struct LoadedClassifier {
  RunConfig config;
  std::shared_ptr<ImageClassifier> model;
  int64_t step = 0;
  std::map<std::string, std::string> metadata;  // the checkpoint's user.* entries
  std::string data_name, data_path;             // the image set it classifies (data.name, data.path)
};
// Refuses a file that is not an image-classifier checkpoint (a flow model's, say), naming it.
LoadedClassifier load_classifier(const std::string& path);

// Features [N, feature_dim] and logits [N, classes] of images [N, C, H, W] (any device and
// floating dtype), computed under NoGradGuard in batches of `batch` on the classifier's device;
// both come back f32 on the CPU.
ClassifierOutput classifier_outputs(ImageClassifier& classifier, const Tensor& images, int64_t batch = 500);

// The Gaussian statistics of the classifier's features of `images` (what FD compares).
GaussianStats classifier_feature_stats(ImageClassifier& classifier, const Tensor& images, int64_t batch = 500);

struct ClassifierTest {
  double accuracy = 0;
  double loss = 0;  // mean cross-entropy
  int64_t images = 0;
};
ClassifierTest test_classifier(ImageClassifier& classifier, const ImageDataset& data, int64_t batch = 500);

// Accuracy and FD floor of a classifier on its data set.
struct ClassifierEvaluation {
  ClassifierTest test;
  GaussianStats test_stats;  // features of the test split: the reference of FD evaluations
  double fd_floor = 0;       // FD(test split, a random train subset of the same size)
  int64_t floor_images = 0;  // the size of both sets of the floor
  std::string data_dir;
};
// `data_dir` empty: the classifier's own data.path. `limit` > 0 uses the first `limit` test
// images (and as many train images); the train subset is drawn with `seed`.
ClassifierEvaluation evaluate_classifier(const LoadedClassifier& classifier, const std::string& data_dir = "",
                                         uint64_t seed = 0, int64_t batch = 500, int64_t limit = 0);

}  // namespace dualflow
