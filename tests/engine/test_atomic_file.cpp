// AtomicFile and check_output_file: a file is replaced whole or not at all, and an output path
// that cannot be written is refused before any work, with nothing created.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "engine/atomic_file.h"
#include "engine/error.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;
using Catch::Contains;

struct Folder {
  fs::path path;
  Folder() {
    std::string tmpl = (fs::temp_directory_path() / "dualflow-af-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~Folder() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

std::string contents(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("AtomicFile: the target changes only on commit, whole", "[atomic_file]") {
  Folder dir;
  const std::string path = dir.file("out.txt");
  write_file_atomically(path, "old contents\n", "test");
  REQUIRE(contents(path) == "old contents\n");

  SECTION("abandoned before commit (an error mid-write): old file kept, temp file removed") {
    try {
      AtomicFile f(path, "test");
      f.write("new, but never ");
      REQUIRE(fs::exists(f.temp_name()));
      REQUIRE(contents(path) == "old contents\n");
      throw std::runtime_error("fault mid-write");
    } catch (const std::runtime_error&) {}
    REQUIRE(contents(path) == "old contents\n");
    REQUIRE(dir.listing() == std::vector<std::string>{"out.txt"});
  }
  SECTION("committed: the new bytes, no temp file left") {
    AtomicFile f(path, "test");
    f.write("new ");
    f.write(std::string(100000, 'x'));
    f.commit();
    REQUIRE(contents(path) == "new " + std::string(100000, 'x'));
    REQUIRE(dir.listing() == std::vector<std::string>{"out.txt"});
    REQUIRE_THROWS_WITH(f.write("more"), Contains("write after commit"));
  }
  SECTION("a dead writer's temp and probe files are removed by the next write; a foreign name is kept") {
    // pid 2^22 + 1 is above Linux's pid_max limit, so no such process can exist.
    const std::string stale = path + ".tmp.4194305.0", other = path + ".tmp.notes";
    write_file_atomically(stale, "half a file", "test");
    write_file_atomically(path + ".tmp.4194305.probe", "", "test");  // check_output_file's, killed
    write_file_atomically(other, "kept", "test");
    write_file_atomically(path, "newer\n", "test");
    REQUIRE(contents(path) == "newer\n");
    REQUIRE(dir.listing() == std::vector<std::string>{"out.txt", "out.txt.tmp.notes"});
  }
}

TEST_CASE("check_output_file refuses what could not be written, and creates nothing", "[atomic_file]") {
  Folder dir;
  write_file_atomically(dir.file("plain"), "a regular file\n", "test");
  fs::create_directory(dir.path / "sub");
  const auto before = dir.listing();

  REQUIRE_NOTHROW(check_output_file(dir.file("new.npy"), "sample --out"));
  REQUIRE_NOTHROW(check_output_file(dir.file("plain"), "sample --out"));  // replaced on write
  REQUIRE_THROWS_WITH(check_output_file("", "nll --out"), Contains("nll --out: expected an output file path, got an "
                                                                   "empty one"));
  REQUIRE_THROWS_WITH(check_output_file(dir.file("sub"), "nll --out"),
                      Contains("nll --out: cannot write '" + dir.file("sub") + "': it is a directory"));
  REQUIRE_THROWS_WITH(check_output_file(dir.file("missing/x.npy"), "sample --out"),
                      Contains("the folder '" + dir.file("missing") + "' does not exist"));
  REQUIRE_THROWS_WITH(check_output_file(dir.file("plain/x.npy"), "sample --out"),
                      Contains("'" + dir.file("plain") + "' is not a folder"));
  // procfs takes no new files, whatever the permission bits say (even for root).
  REQUIRE_THROWS_WITH(check_output_file("/proc/dualflow-out.json", "nll --out"),
                      Contains("cannot create files in the folder '/proc'"));
  REQUIRE(dir.listing() == before);
  REQUIRE_FALSE(fs::exists(dir.path / "missing"));
}

}  // namespace dualflow::testing

namespace dualflow::testing {

// A child process is signalled in the middle of writing: the handler removes the temp file,
// the target keeps its old content, and the child dies of the signal (status 128 + signal).
TEST_CASE("install_interrupt_cleanup: a signal mid-write leaves the old file and no temp file", "[atomic_file]") {
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer does not support fork in a threaded process: the child never runs the
  // handler. The plain and ASan suites run this case.
  return;
#endif
  for (int sig : {SIGINT, SIGTERM}) {
    Folder dir;
    const std::string target = dir.file("out.npy");
    write_file_atomically(target, "previous", "test");
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      install_interrupt_cleanup();
      AtomicFile f(target, "test");
      f.write("half of the new conte");
      [[maybe_unused]] ssize_t told = ::write(ready[1], "x", 1);
      for (;;) ::pause();  // until the signal ends the child
    }
    char byte = 0;
    REQUIRE(::read(ready[0], &byte, 1) == 1);  // the child is mid-write
    ::close(ready[0]);
    ::close(ready[1]);
    REQUIRE(::kill(child, sig) == 0);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == sig);
    CHECK(contents(target) == "previous");
    CHECK(dir.listing() == std::vector<std::string>{"out.npy"});
  }
}

}  // namespace dualflow::testing
