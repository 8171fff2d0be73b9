// The evaluation classifier's run on a small synthetic IDX data set (each class a bright square
// at its own place): the loss falls and the test accuracy is far above chance, the output files,
// loading the checkpoint back (and refusing other checkpoints), batch-size independent outputs,
// and the evaluation with its Fréchet-distance floor.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <utility>

#include "models/linear.h"
#include "tests/engine/test_util.h"
#include "train/checkpoint.h"
#include "train/classifier_run.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / fmt::format("dualflow-classifier-{}-{}", name, ::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write_idx(const fs::path& path, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::ofstream f(path, std::ios::binary);
  const uint8_t magic[4] = {0, 0, 0x08, uint8_t(dims.size())};
  f.write(reinterpret_cast<const char*>(magic), 4);
  for (uint32_t d : dims) {
    const uint8_t be[4] = {uint8_t(d >> 24), uint8_t(d >> 16), uint8_t(d >> 8), uint8_t(d)};
    f.write(reinterpret_cast<const char*>(be), 4);
  }
  f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
  REQUIRE(f.good());
}

// n images of 28x28: faint noise with a bright 5x5 square whose place encodes the label.
void write_split(const fs::path& dir, const std::string& prefix, uint32_t n, uint64_t seed) {
  Generator gen(seed);
  std::vector<float> noise = rand({int64_t(n) * 784}, gen).to_vector<float>();
  std::vector<uint8_t> images(size_t(n) * 784), labels(n);
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t k = (i * 7 + uint32_t(seed)) % 10;
    labels[i] = uint8_t(k);
    uint8_t* img = images.data() + size_t(i) * 784;
    for (int p = 0; p < 784; ++p) img[p] = uint8_t(noise[size_t(i) * 784 + size_t(p)] * 80);
    const int top = 2 + int(k / 4) * 9, left = 2 + int(k % 4) * 6;
    for (int y = top; y < top + 5; ++y)
      for (int x = left; x < left + 5; ++x) img[y * 28 + x] = 255;
  }
  write_idx(dir / (prefix + "-images-idx3-ubyte"), {n, 28, 28}, images);
  write_idx(dir / (prefix + "-labels-idx1-ubyte"), {n}, labels);
}

// A folder removed at exit, for the data and the run that several cases share.
struct TempDir {
  fs::path path;
  TempDir() = default;
  explicit TempDir(fs::path p) : path(std::move(p)) {}
  TempDir(TempDir&& other) noexcept : path(std::exchange(other.path, {})) {}
  TempDir& operator=(TempDir&& other) noexcept {
    std::swap(path, other.path);
    return *this;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

const fs::path& synthetic_data() {
  static const TempDir dir = [] {
    fs::path d = fresh_dir("data");
    write_split(d, "train", 600, 1);
    write_split(d, "t10k", 200, 2);
    return TempDir{d};
  }();
  return dir.path;
}

RunConfig small_run(const std::vector<std::string>& extra = {}) {
  std::vector<std::string> sets = {fmt::format("data.path=\"{}\"", synthetic_data().string()),
                                   "model.widths=[8, 16]",
                                   "model.features=32",
                                   "model.downsample=\"stride\"",
                                   "train.steps=40",
                                   "train.batch=32",
                                   "train.log_every=10",
                                   "optim.warmup_steps=5",
                                   "optim.lr=3e-3",
                                   "eval.batch=64"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  return parse_config_text("", "<test>", sets, classifier_schema());
}

std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream f(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(f, l);) out.push_back(l);
  return out;
}

double json_field(const std::string& line, const std::string& key) {
  const std::string tag = "\"" + key + "\":";
  const size_t at = line.find(tag);
  REQUIRE(at != std::string::npos);
  return std::stod(line.substr(at + tag.size()));
}

// One trained run shared by the cases below (training is the slow part).
struct TrainedRun {
  TempDir temp;
  fs::path dir;
  ClassifierRunResult result;
};
const TrainedRun& trained_run() {
  static const TrainedRun run = [] {
    TrainedRun r;
    r.dir = r.temp.path = fresh_dir("run");
    ClassifierRunOptions o;
    o.out_dir = r.dir.string();
    o.quiet = true;
    r.result = train_classifier(small_run(), o);
    return r;
  }();
  return run;
}

}  // namespace

TEST_CASE("train_classifier: the loss falls and the test accuracy is far above chance", "[classifier_run]") {
  const TrainedRun& run = trained_run();
  REQUIRE(run.result.steps_done == 40);
  REQUIRE(run.result.test_images == 200);
  CHECK(run.result.test_accuracy > 0.8);  // chance is 0.1
  REQUIRE(fs::exists(run.dir / "checkpoint.safetensors"));
  std::vector<std::string> m = lines_of(run.dir / "metrics.jsonl");
  REQUIRE(m.size() == 5);  // 4 logging windows and the test line
  const double first = json_field(m[0], "loss"), last = json_field(m[3], "loss");
  INFO("loss " << first << " -> " << last);
  REQUIRE(last < 0.5 * first);
  REQUIRE(json_field(m[3], "train_accuracy") > json_field(m[0], "train_accuracy"));
  REQUIRE(m[4].find("\"event\":\"test\"") != std::string::npos);
  REQUIRE(json_field(m[4], "test_accuracy") == Approx(run.result.test_accuracy).margin(1e-5));
}

TEST_CASE("load_classifier: the trained network in eval mode, with its config", "[classifier_run]") {
  const TrainedRun& run = trained_run();
  LoadedClassifier lc = load_classifier((run.dir / "checkpoint.safetensors").string());
  REQUIRE(lc.step == 40);
  REQUIRE_FALSE(lc.model->is_training());
  REQUIRE(lc.config.get_int_list("model.widths") == std::vector<int64_t>{8, 16});
  REQUIRE(lc.metadata.at("kind") == "image_classifier");
  REQUIRE(std::stod(lc.metadata.at("test_accuracy")) == Approx(run.result.test_accuracy).margin(1e-5));

  ImageDataset test = load_image_dataset(synthetic_data().string(), ImageSplit::Test);
  ClassifierTest t = test_classifier(*lc.model, test, 64);
  REQUIRE(t.accuracy == Approx(run.result.test_accuracy).margin(1e-9));
  REQUIRE(t.loss == Approx(run.result.test_loss).epsilon(1e-6));

  // Outputs do not depend on the batch size, and record no graph.
  ClassifierOutput a = classifier_outputs(*lc.model, test.images, 7),
                   b = classifier_outputs(*lc.model, test.images, 500);
  REQUIRE(a.features.shape() == Shape{200, 32});
  REQUIRE(a.logits.shape() == Shape{200, 10});
  REQUIRE_FALSE(a.features.requires_grad());
  require_close(a.features, b.features, 1e-5, 1e-5, "features, batch 7 vs 500");
  require_close(a.logits, b.logits, 1e-5, 1e-5, "logits, batch 7 vs 500");
}

TEST_CASE("load_classifier refuses checkpoints of other models", "[classifier_run]") {
  fs::path dir = fresh_dir("other");
  Generator gen(0);
  Linear model(2, 2, gen);
  CheckpointInfo info;
  info.config = RunConfig(flow_matching_schema()).to_toml();
  const std::string path = (dir / "flow.safetensors").string();
  save_checkpoint(path, {&model, nullptr, nullptr, {}}, info);
  REQUIRE_THROWS_WITH(load_classifier(path), Contains("not an image-classifier checkpoint"));
  fs::remove_all(dir);
}

TEST_CASE("evaluate_classifier: test accuracy and the Fréchet-distance floor", "[classifier_run]") {
  const TrainedRun& run = trained_run();
  LoadedClassifier lc = load_classifier((run.dir / "checkpoint.safetensors").string());
  ClassifierEvaluation e = evaluate_classifier(lc, "", 3, 64);
  REQUIRE(e.data_dir == synthetic_data().string());
  REQUIRE(e.test.images == 200);
  REQUIRE(e.test.accuracy == Approx(run.result.test_accuracy).margin(1e-9));
  REQUIRE(e.test_stats.dim() == 32);
  REQUIRE(e.test_stats.count == 200);
  REQUIRE(e.floor_images == 200);
  REQUIRE(std::isfinite(e.fd_floor));
  REQUIRE(e.fd_floor >= 0);
  // The test set against itself is 0; the floor (another draw of the same classes) is small
  // next to the FD to a set of one class only.
  ImageDataset test = load_image_dataset(synthetic_data().string(), ImageSplit::Test);
  REQUIRE(frechet_distance(e.test_stats, classifier_feature_stats(*lc.model, test.images)) < 1e-6);
  std::vector<int64_t> rows;
  const std::vector<int64_t> labels = test.labels.to_vector<int64_t>();
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] == 3) rows.push_back(int64_t(i));
  Tensor one_class = index_select(test.images, 0, from_vector(rows, {int64_t(rows.size())}));
  const double fd_one_class = frechet_distance(e.test_stats, classifier_feature_stats(*lc.model, one_class));
  INFO("floor " << e.fd_floor << ", one class " << fd_one_class);
  REQUIRE(fd_one_class > 5 * e.fd_floor);
  // A limit takes the first N test images and as many train images.
  REQUIRE(evaluate_classifier(lc, "", 3, 64, 50).floor_images == 50);
}

TEST_CASE("train_classifier refuses a missing data folder and a bad output folder", "[classifier_run]") {
  ClassifierRunOptions o;
  o.quiet = true;
  TempDir out{fresh_dir("missing")};
  o.out_dir = out.path.string();
  REQUIRE_THROWS_WITH(train_classifier(small_run({"data.path=\"/nonexistent/fmnist\""}), o),
                      Contains("/nonexistent/fmnist"));
  o.out_dir = "";
  REQUIRE_THROWS_WITH(train_classifier(small_run(), o), Contains("--out DIR"));
}

}  // namespace dualflow::testing
