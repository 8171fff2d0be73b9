// Running the built `dualflow` program from a test, as a child process in a scratch folder:
// its exit status, stdout and stderr (shared by the CLI tests of tests/train/).
#pragma once
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#ifndef DUALFLOW_BINARY
#error "DUALFLOW_BINARY (the path of the built dualflow program) must be defined"
#endif

namespace dualflow::testing {

namespace fs = std::filesystem;

// A scratch folder: `work` is where the program runs; its stderr goes beside it.
struct Scratch {
  fs::path root, work;
  explicit Scratch(const std::string& name) {
    static int serial = 0;  // several scratch folders of one test stay apart
    root = fs::temp_directory_path() / fmt::format("dualflow-cli-{}-{}-{}", name, ::getpid(), serial++);
    fs::remove_all(root);
    work = root / "work";
    fs::create_directories(work);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream(work / name, std::ios::binary) << bytes;
  }
  std::string read(const std::string& name) const {
    std::ifstream f(work / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  // Every path under `work` with its size: what "nothing changed on disk" compares.
  std::set<std::string> listing() const {
    std::set<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(work))
      out.insert(fs::relative(e.path(), work).string() +
                 (e.is_regular_file() ? fmt::format(" {}", e.file_size()) : std::string("/")));
    return out;
  }
};

// ` 'word'`: one shell word, single-quoted, with the space before it.
inline std::string shell_word(const std::string& s) {
  std::string q = " '";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  q += '\'';
  return q;
}

struct Outcome {
  int status = 0;  // the exit status; -1 when a signal ended the program (a crash)
  std::string err, out;
};

inline Outcome run_dualflow(const Scratch& s, const std::vector<std::string>& args) {
  const fs::path err_file = s.root / "stderr.txt";
  std::string cmd = "cd";
  cmd += shell_word(s.work.string());
  cmd += " && exec";
  cmd += shell_word(DUALFLOW_BINARY);
  for (const auto& a : args) cmd += shell_word(a);
  cmd += " 2>";
  cmd += shell_word(err_file.string());
  cmd += " </dev/null";
  Outcome o;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) o.out.append(buf, n);
  const int st = ::pclose(pipe);
  o.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream f(err_file);
  o.err.assign(std::istreambuf_iterator<char>(f), {});
  return o;
}

// A success: exit status 0 (stderr and stdout are shown when it is not).
#define REQUIRE_SUCCEEDED(outcome)  \
  do {                              \
    const Outcome& o_ = (outcome);  \
    INFO("stderr: " << o_.err);     \
    INFO("stdout: " << o_.out);     \
    REQUIRE(o_.status == 0);        \
  } while (0)

// A refusal: an error exit, no crash, and the message on stderr.
#define REQUIRE_REFUSED(outcome, matcher) \
  do {                                    \
    const Outcome& o_ = (outcome);        \
    INFO("stderr: " << o_.err);           \
    INFO("stdout: " << o_.out);           \
    REQUIRE(o_.status > 0);               \
    REQUIRE(o_.status < 128);             \
    REQUIRE_THAT(o_.err, matcher);        \
  } while (0)

// Two steps of a width-8 MLP on the checkerboard: a real checkpoint in well under a second.
inline const char* kTinyRun = R"([train]
steps = 2
batch = 16
log_every = 1
checkpoint_every = 2
[model]
width = 8
depth = 1
[sample]
n = 16
solver = "euler"
steps = 4
)";

// Writes tiny.toml and trains it into `run/`.
inline void train_tiny(const Scratch& s) {
  s.write("tiny.toml", kTinyRun);
  Outcome o = run_dualflow(s, {"train", "tiny.toml", "--out", "run"});
  INFO(o.err);
  REQUIRE(o.status == 0);
  REQUIRE(fs::exists(s.work / "run" / "checkpoint.safetensors"));
}

}  // namespace dualflow::testing
