// `dualflow train-classifier` and `dualflow eval-classifier`: the command-line faces of the
// evaluation classifier in train/classifier_run.h (option parsing and printing only).
#include <fmt/format.h>
#include <unistd.h>

#include "engine/atomic_file.h"
#include "train/classifier_run.h"
#include "train/cli/commands.h"
#include "train/json_text.h"

namespace dualflow::cli {
namespace {

struct TrainClassifierArgs {
  std::string config, out;
  std::vector<std::string> overrides;
  bool help_config = false;
};

void run_train_classifier(const TrainClassifierArgs& a) {
  if (a.help_config) {
    fmt::print("{}", classifier_schema().help());
    return;
  }
  DF_CHECK(!a.config.empty(), "train-classifier: give a CONFIG.toml (e.g. configs/fmnist_classifier.toml)");
  DF_CHECK(!a.out.empty(), "train-classifier: --out DIR is required");
  RunConfig config = load_config(a.config, a.overrides, classifier_schema());
  ClassifierRunOptions o;
  o.out_dir = a.out;
  o.progress_line = isatty(STDOUT_FILENO) != 0;
  train_classifier(config, o);
}

struct EvalClassifierArgs {
  std::string classifier, data, out;
  int64_t batch = 500, limit = 0;
  uint64_t seed = 0;
};

void run_eval_classifier(const EvalClassifierArgs& a) {
  if (!a.out.empty()) check_output_file(a.out, "eval-classifier --out");
  LoadedClassifier lc = load_classifier(a.classifier);
  ClassifierEvaluation e = evaluate_classifier(lc, a.data, a.seed, a.batch, a.limit);
  fmt::print("classifier {} (step {}, {})\n", a.classifier, lc.step, lc.model->describe());
  fmt::print("test accuracy {:.2f}% on {} images of {} (cross-entropy {:.4f})\n", 100 * e.test.accuracy, e.test.images,
             e.data_dir, e.test.loss);
  fmt::print("FD floor (test split vs a random train subset, {} images each, {}-d features): {:.4f}\n", e.floor_images,
             e.test_stats.dim(), e.fd_floor);
  if (!a.out.empty()) {
    write_file_atomically(
        a.out,
        fmt::format(
            R"({{"classifier":{},"step":{},"data":{},"test_accuracy":{:.6f},"test_loss":{},"test_images":{},"fd_floor":{:.6f},"floor_images":{},"feature_dim":{},"seed":{}}})",
            json_string(a.classifier), lc.step, json_string(e.data_dir), e.test.accuracy, json_number(e.test.loss),
            e.test.images, e.fd_floor, e.floor_images, e.test_stats.dim(), a.seed) +
            "\n",
        "eval-classifier");
  }
}

}  // namespace

void add_classifier_commands(CLI::App& app) {
  auto ta = std::make_shared<TrainClassifierArgs>();
  auto* train = app.add_subcommand(
      "train-classifier", "Train the image classifier whose features and predictions evaluate generated images");
  train->add_option("config", ta->config, "run configuration (TOML); see --help-config")->check(CLI::ExistingFile);
  train->add_option("--set", ta->overrides, "override a config key: --set train.steps=3000 (repeatable)");
  train->add_option("--out", ta->out, "output directory (checkpoint.safetensors, metrics.jsonl)");
  train->add_flag("--help-config", ta->help_config, "list every config key with its type, default and meaning");
  train->callback([ta] { run_train_classifier(*ta); });

  auto ea = std::make_shared<EvalClassifierArgs>();
  auto* eval = app.add_subcommand(
      "eval-classifier", "Test accuracy of a trained classifier and the Fréchet-distance floor of its features");
  eval->add_option("--classifier", ea->classifier, "checkpoint.safetensors of a train-classifier run")
      ->required()
      ->check(CLI::ExistingFile);
  eval->add_option("--data", ea->data, "folder of the IDX files (default: the classifier's data.path)");
  eval->add_option("--batch", ea->batch, "images per no-grad batch")->capture_default_str()->check(positive_integer());
  eval->add_option("--limit", ea->limit, "use the first N test images (and N train images for the floor); 0: all")
      ->capture_default_str()
      ->check(non_negative_integer());
  eval->add_option("--seed", ea->seed, "seed of the random train subset of the floor")
      ->capture_default_str()
      ->check(non_negative_integer());
  eval->add_option("--out", ea->out, "also write the figures to this JSON file");
  eval->callback([ea] { run_eval_classifier(*ea); });
}

}  // namespace dualflow::cli
