// Golden runs: 300 steps of each shipped 2-D objective (the configs/ files, with smaller
// sampling and reflow budgets) and a tiny class-conditional DiT MeanFlow image run must give
// bit for bit the metrics and weights recorded in tests/fixtures/golden/. Refactors of the
// training code must not move them; a commit that changes the numbers on purpose says why and
// re-records them with DUALFLOW_UPDATE_GOLDEN=1 (the test then rewrites the files and passes).
//
// The figures are those of the recording machine's kernels, run on one thread so that no
// reduction depends on the core count. On a machine whose kernels round differently (OpenBLAS
// picks its kernels per CPU, and OPENBLAS_CORETYPE can force a set), the metrics must agree to
// within rounding (1e-3 relative) instead, and the hashes are not compared.
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <vector>

#include "engine/safetensors.h"
#include "train/flow_run.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;

uint64_t fnv1a(uint64_t h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}
constexpr uint64_t kFnvBasis = 0xcbf29ce484222325ull;

// Every tensor of the checkpoint (model, EMA, optimizer state, generators): name, dtype, shape
// and bytes, in name order. The metadata (the config's TOML text) is left out on purpose.
std::string checkpoint_hash(const fs::path& path) {
  SafetensorsContent c = load_safetensors(path.string());
  std::sort(c.tensors.begin(), c.tensors.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  uint64_t h = kFnvBasis;
  for (const auto& [name, t] : c.tensors) {
    h = fnv1a(h, name.data(), name.size());
    const std::string desc = fmt::format("{}{}", dtype_name(t.dtype()), t.shape().str());
    h = fnv1a(h, desc.data(), desc.size());
    h = fnv1a(h, t.raw_data(), size_t(t.numel()) * dtype_size(t.dtype()));
  }
  return fmt::format("{:016x}", h);
}

std::string file_hash(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return fmt::format("{:016x}", fnv1a(kFnvBasis, bytes.data(), bytes.size()));
}

// The run's record: its metrics lines without the timing field, the checkpoint's tensors and
// the samples picture.
std::string run_record(const fs::path& dir) {
  std::ifstream m(dir / "metrics.jsonl");
  const std::regex timing(R"(,"it_per_s":[^,}]*)");
  std::string out;
  for (std::string line; std::getline(m, line);) out += std::regex_replace(line, timing, "") + "\n";
  out += "checkpoint " + checkpoint_hash(dir / "checkpoint.safetensors") + "\n";
  out += "samples.png " + file_hash(dir / "samples.png") + "\n";
  return out;
}

// Rounding differences between kernel sets grow over a 300-step run to about 1e-5 of a loss or
// gradient norm; a change of method or data moves them by far more.
constexpr double kRoundingTolerance = 1e-3;

struct MetricsComparison {
  bool same_lines = true;                // the same lines, words and non-numeric text
  double max_relative_difference = 0.0;  // over every number of the metrics lines
};

// Compares two records' metrics lines number by number (the hash lines only for their names).
MetricsComparison compare_metrics(const std::string& got, const std::string& want) {
  auto lines = [](const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  };
  const std::vector<std::string> a = lines(got), b = lines(want);
  MetricsComparison c;
  if (a.size() != b.size()) return c.same_lines = false, c;
  const std::regex number(R"(-?[0-9][0-9.eE+-]*)");
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].rfind("{", 0) != 0) {  // "checkpoint <hash>", "samples.png <hash>": the names only
      if (a[i].substr(0, a[i].find(' ')) != b[i].substr(0, b[i].find(' '))) c.same_lines = false;
      continue;
    }
    if (std::regex_replace(a[i], number, "#") != std::regex_replace(b[i], number, "#")) {
      c.same_lines = false;
      continue;
    }
    std::sregex_iterator x(a[i].begin(), a[i].end(), number), y(b[i].begin(), b[i].end(), number), end;
    for (; x != end && y != end; ++x, ++y) {
      const double u = std::stod(x->str()), v = std::stod(y->str());
      const double scale = std::max({std::abs(u), std::abs(v), 1e-12});
      c.max_relative_difference = std::max(c.max_relative_difference, std::abs(u - v) / scale);
    }
  }
  return c;
}

fs::path run_dir(const std::string& name) {
  return fs::temp_directory_path() / fmt::format("dualflow-golden-{}-{}", name, ::getpid());
}

// Trains `config` (a file of configs/) for 300 steps with `extra` overrides and compares its
// record with tests/fixtures/golden/<name>.txt. Returns the run's folder (removed by the caller).
fs::path check_golden(const std::string& name, const std::string& config, std::vector<std::string> extra) {
  std::vector<std::string> sets = {"train.steps=300", "train.log_every=10", "train.checkpoint_every=100",
                                   "run.threads=1", "sample.n=500"};
  sets.insert(sets.end(), extra.begin(), extra.end());
  const fs::path dir = run_dir(name);
  fs::remove_all(dir);
  TrainRunOptions o;
  o.quiet = true;
  o.out_dir = dir.string();
  train_flow_matching(load_config(std::string(DUALFLOW_CONFIG_DIR) + "/" + config, sets, flow_matching_schema()), o);
  const std::string got = run_record(dir);
  const fs::path golden = fs::path(DUALFLOW_FIXTURE_DIR) / "golden" / (name + ".txt");
  if (const char* update = std::getenv("DUALFLOW_UPDATE_GOLDEN"); update && std::string(update) == "1") {
    fs::create_directories(golden.parent_path());
    std::ofstream(golden, std::ios::binary) << got;
    WARN("re-recorded " << golden.string());
    return dir;
  }
  std::ifstream f(golden, std::ios::binary);
  REQUIRE(f.good());
  const std::string want((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  INFO("golden file " << golden.string() << " (re-record with DUALFLOW_UPDATE_GOLDEN=1 only when a change is meant)");
  if (got != want) {
    // Another machine's kernels (OpenBLAS picks them per CPU, and the environment may force a
    // set) round differently. The metrics must then still agree to rounding; the weights'
    // and picture's hashes cannot, and are compared only when the metrics match bit for bit.
    INFO("got:\n" << got << "want:\n" << want);
    const MetricsComparison c = compare_metrics(got, want);
    REQUIRE(c.same_lines);
    CHECK(c.max_relative_difference <= kRoundingTolerance);
    if (c.max_relative_difference == 0.0) CHECK(got == want);
    else
      WARN(name << ": metrics within rounding of the record (largest relative difference "
                << c.max_relative_difference << "); weights and samples hashes not compared");
  }
  return dir;
}

}  // namespace

TEST_CASE("golden: toy2d_cfm, and toy2d_reflow from it", "[golden]") {
  const fs::path cfm = check_golden("toy2d_cfm", "toy2d_cfm.toml", {});
  const fs::path reflow = check_golden(
      "toy2d_reflow", "toy2d_reflow.toml",
      {fmt::format("reflow.teacher=\"{}\"", (cfm / "checkpoint.safetensors").string()), "reflow.pairs=2048"});
  fs::remove_all(cfm);
  fs::remove_all(reflow);
}

TEST_CASE("golden: toy2d_meanflow", "[golden]") {
  fs::remove_all(check_golden("toy2d_meanflow", "toy2d_meanflow.toml", {}));
}

TEST_CASE("golden: toy2d_cnf_mle", "[golden]") {
  fs::remove_all(check_golden("toy2d_cnf_mle", "toy2d_cnf_mle.toml", {"sample.solver=\"rk4\"", "sample.steps=20"}));
}

TEST_CASE("golden: toy2d_score_vp", "[golden]") {
  fs::remove_all(check_golden("toy2d_score_vp", "toy2d_score_vp.toml", {}));
}

TEST_CASE("golden: a tiny class-conditional DiT MeanFlow run on Fashion-MNIST", "[golden]") {
  fs::remove_all(check_golden(
      "fmnist_dit_meanflow_tiny", "fmnist_dit_meanflow.toml",
      {"data.limit=256", "model.dit_preset=\"S/4\"", "model.dit_hidden=32", "model.dit_depth=1", "model.dit_heads=2",
       "train.batch=32", "train.steps=40", "train.log_every=5", "train.checkpoint_every=20"}));
}

}  // namespace dualflow::testing
