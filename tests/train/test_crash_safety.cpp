// Crash safety of saves: a child process saves over one path again and again and is killed
// with SIGKILL at random moments; after every kill the path must load and hold exactly one of
// the versions that were written in full, and the temp files of killed writers must not pile up.
#include <fmt/ranges.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <random>
#include <thread>

#include "engine/safetensors.h"
#include "models/mlp_velocity.h"
#include "tests/engine/test_util.h"
#include "train/checkpoint.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / fmt::format("dualflow-crash-{}-{}", name, ::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

bool bit_equal(const NamedTensors& a, const NamedTensors& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].first != b[i].first || a[i].second.shape() != b[i].second.shape() ||
        a[i].second.dtype() != b[i].second.dtype() || max_abs_diff(a[i].second, b[i].second) != 0.0)
      return false;
  return true;
}

// Entries of `dir` other than the file the saves target (temp files, in this scheme).
std::vector<std::string> leftovers(const fs::path& dir, const fs::path& target) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename() != target.filename()) out.push_back(e.path().filename().string());
  return out;
}

// `save(step)` writes version `step`; `loaded_step(path)` loads the file, checks that its whole
// content is the version it claims to be, and returns that step.
struct KillLoop {
  std::function<void(int64_t step)> save;
  std::function<int64_t(const fs::path&)> loaded_step;
};

struct KillLoopResult {
  int kills = 0;
  int kills_leaving_a_temp_file = 0;  // the kill landed inside a save, after the temp file existed
  int64_t saves_seen_complete = 0;    // distinct steps found at the path after kills
};

// The child saves versions start, start + 1, ... back to back, and signals through a pipe just
// before its first save so that the delays count from the moment saving begins. Its saves use
// only objects built before fork() (no thread pool work runs in it).
KillLoopResult kill_repeatedly(const KillLoop& loop, const fs::path& dir, const fs::path& path, int kills,
                               double seconds_per_save) {
  std::mt19937_64 random(20240611);
  // Spread over three saves: kills land in every phase (temp file writes, fsync, rename,
  // directory fsync, the stale-file sweep) and sometimes after a completed save.
  std::uniform_real_distribution<double> delay(0.0, 3.0 * seconds_per_save);
  KillLoopResult result;
  int64_t last_step = loop.loaded_step(path);
  int64_t previous_distinct = last_step;
  for (int k = 0; k < kills; ++k) {
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const int64_t start = (k + 1) * int64_t(1'000'000);
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      ::close(ready[0]);
      char byte = 1;
      if (::write(ready[1], &byte, 1) != 1) ::_exit(3);
      try {
        for (int64_t step = start;; ++step) loop.save(step);
      } catch (...) { ::_exit(2); }
    }
    ::close(ready[1]);
    char byte = 0;
    REQUIRE(::read(ready[0], &byte, 1) == 1);
    ::close(ready[0]);
    // Every fourth kill waits long enough for several complete saves even when the child's
    // first saves run slower than the parent's timed ones (a freshly forked process faults its
    // pages back in, and sanitizer builds are slower still): once, under AddressSanitizer, 40
    // kills within three timed saves saw no save complete.
    const double wait = k % 4 == 3 ? 20.0 * seconds_per_save : delay(random);
    std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    REQUIRE(::kill(child, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    INFO("kill " << k << ": the saving child must die of SIGKILL, not exit (status " << status << ")");
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGKILL);
    ++result.kills;

    // At most the temp file of one killed writer may be left (this one's, or the previous
    // one's when this one died before its first save swept it away).
    std::vector<std::string> extra = leftovers(dir, path);
    INFO("left in " << dir.string() << ": " << fmt::format("{}", fmt::join(extra, ", ")));
    REQUIRE(extra.size() <= 1);
    if (!extra.empty()) {
      REQUIRE(extra[0].rfind(path.filename().string() + ".tmp.", 0) == 0);
      if (extra[0].rfind(path.filename().string() + ".tmp." + std::to_string(child) + ".", 0) == 0)
        ++result.kills_leaving_a_temp_file;
    }

    int64_t step = loop.loaded_step(path);
    // The file is the old version or a newer complete one, never an older one.
    REQUIRE(step >= last_step);
    if (step != previous_distinct) ++result.saves_seen_complete, previous_distinct = step;
    last_step = step;
  }
  return result;
}

double median_seconds_per_save(const std::function<void(int64_t)>& save, int64_t first_step, int n) {
  std::vector<double> times;
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    save(first_step + i);
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void check_kill_loop(const KillLoop& loop, const fs::path& dir, const fs::path& path) {
  // A first complete version exists before any kill (steps 0..4).
  double seconds_per_save = median_seconds_per_save(loop.save, 0, 5);
  KillLoopResult r = kill_repeatedly(loop, dir, path, 40, seconds_per_save);
  INFO("median save " << seconds_per_save * 1e3 << " ms; " << r.kills << " kills, " << r.kills_leaving_a_temp_file
                      << " inside a save, " << r.saves_seen_complete << " new versions seen");
  // Both kinds of moment were hit: mid-save kills (else the test proves nothing) and kills
  // after at least one completed save (else the children never got to write).
  CHECK(r.kills_leaving_a_temp_file > 0);
  CHECK(r.saves_seen_complete > 0);
  // A completed save leaves no temp file behind, its own or a killed writer's.
  loop.save(0x7fffffff);
  CHECK(leftovers(dir, path).empty());
  CHECK(loop.loaded_step(path) == 0x7fffffff);
}

MLPVelocityConfig crash_test_model_config() {
  MLPVelocityConfig c;
  c.width = 128;
  c.depth = 3;
  c.embedding_dim = 16;
  return c;
}

TEST_CASE("crash safety: SIGKILL during save_checkpoint leaves a complete checkpoint", "[crash_safety]") {
  fs::path dir = fresh_dir("checkpoint");
  fs::path path = dir / "checkpoint.safetensors";
  // Two different models; version `step` holds models[step % 2] and records its step, so a
  // file that mixed two saves would disagree with its own step.
  Generator init_a(1), init_b(2);
  MLPVelocity model_a(crash_test_model_config(), init_a), model_b(crash_test_model_config(), init_b);
  MLPVelocity* models[2] = {&model_a, &model_b};
  NamedTensors expected[2] = {model_a.state_dict(), model_b.state_dict()};
  REQUIRE_FALSE(bit_equal(expected[0], expected[1]));

  KillLoop loop;
  loop.save = [&](int64_t step) {
    CheckpointParts parts;
    parts.model = models[step % 2];
    CheckpointInfo info;
    info.step = step;
    info.config = fmt::format("run.seed = {}\n", step);
    save_checkpoint(path.string(), parts, info);
  };
  loop.loaded_step = [&](const fs::path& p) {
    CheckpointInfo info;
    NamedTensors weights = checkpoint_weights(p.string(), /*prefer_ema=*/false, &info);
    INFO("step " << info.step);
    REQUIRE(info.config == fmt::format("run.seed = {}\n", info.step));
    REQUIRE(bit_equal(weights, expected[info.step % 2]));
    return info.step;
  };
  check_kill_loop(loop, dir, path);
  fs::remove_all(dir);
}

TEST_CASE("crash safety: SIGKILL during save_safetensors leaves a complete file", "[crash_safety]") {
  fs::path dir = fresh_dir("safetensors");
  fs::path path = dir / "weights.safetensors";
  // Versions alternate between two tensor sets of different dtypes and sizes (so the header,
  // the data layout and the file length all change between saves).
  Generator gen(3);
  NamedTensors versions[2] = {
      {{"a", randn({256, 256}, gen)}, {"b", randn({64}, gen).to(DType::f64)}},
      {{"b", randn({512, 128}, gen).to(DType::f64)},
       {"c", from_vector(std::vector<int64_t>{1, 2, 3}, {3})},
       {"a", randn({7, 5}, gen)}},
  };
  KillLoop loop;
  loop.save = [&](int64_t step) {
    save_safetensors(path.string(), versions[step % 2], {{"step", std::to_string(step)}});
  };
  loop.loaded_step = [&](const fs::path& p) {
    SafetensorsContent content = load_safetensors(p.string());
    REQUIRE(content.metadata.count("step") == 1);
    int64_t step = std::stoll(content.metadata.at("step"));
    INFO("step " << step);
    REQUIRE(bit_equal(content.tensors, versions[step % 2]));
    return step;
  };
  check_kill_loop(loop, dir, path);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace dualflow::testing
