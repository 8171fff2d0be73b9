// Atomic file writing and early output checks (see atomic_file.h).
#include "engine/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>

#include "engine/error.h"

namespace dualflow {

namespace {

std::string errno_text(int err) { return std::strerror(err); }

// The pid in a temp file name `<target name>.tmp.<pid>.<k>` (or `.probe`, check_output_file's
// probe), or nothing when `entry` is not one.
std::optional<pid_t> temp_file_owner(const std::string& entry, const std::string& target_name) {
  const std::string stem = fmt::format("{}.tmp.", target_name);
  if (entry.compare(0, stem.size(), stem) != 0) return std::nullopt;
  std::string_view rest = std::string_view(entry).substr(stem.size());
  size_t dot = rest.find('.');
  auto all_digits = [](std::string_view s) {
    return !s.empty() && s.size() <= 18 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (dot == std::string_view::npos || !all_digits(rest.substr(0, dot)) ||
      !(all_digits(rest.substr(dot + 1)) || rest.substr(dot + 1) == "probe"))
    return std::nullopt;
  int64_t pid = std::stoll(std::string(rest.substr(0, dot)));
  if (pid <= 0 || pid > std::numeric_limits<pid_t>::max()) return std::nullopt;
  return pid_t(pid);
}

// A process killed mid-write (SIGKILL, power loss) leaves its temp file behind; nothing else
// ever removes it, so a run that is killed again and again would fill its directory. Each write
// therefore deletes the temp files of `target` whose writer no longer exists. A live writer's
// file is kept (kill(pid, 0) succeeds, or fails with EPERM for another user's process); a
// writer on another machine sharing the directory would be mistaken for a dead one, but two
// machines writing one path are unsupported anyway (the last rename would win).
void remove_stale_temp_files(const std::string& target) {
  std::filesystem::path target_path(target);
  std::filesystem::path dir = target_path.parent_path();
  if (dir.empty()) dir = ".";
  const std::string target_name = target_path.filename().string();
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string entry = it->path().filename().string();
    std::optional<pid_t> owner = temp_file_owner(entry, target_name);
    if (!owner || *owner == ::getpid()) continue;
    if (::kill(*owner, 0) == 0 || errno != ESRCH) continue;
    ::unlink(it->path().c_str());  // best effort: another writer may have removed it first
  }
}

// The temp files of the writes in flight, for the interrupt handler: fixed storage that a
// signal handler may read. A slot is free (0), being filled (1) or listed (2).
constexpr int kTempSlots = 64;
constexpr size_t kTempPathBytes = 4096;
struct TempSlot {
  std::atomic<int> state{0};
  char path[kTempPathBytes];
};
TempSlot g_temp_slots[kTempSlots];

int list_temp_file(const std::string& path) {
  if (path.size() >= kTempPathBytes) return -1;  // not listed: a kill may leave it (and the next write removes it)
  for (int i = 0; i < kTempSlots; ++i) {
    int expected = 0;
    if (!g_temp_slots[i].state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(g_temp_slots[i].path, path.c_str(), path.size() + 1);
    g_temp_slots[i].state.store(2);
    return i;
  }
  return -1;
}

void unlist_temp_file(int slot) {
  if (slot >= 0) g_temp_slots[slot].state.store(0);
}

// Only async-signal-safe calls: unlink, write, signal, raise.
extern "C" void remove_temp_files_and_reraise(int sig) {
  for (TempSlot& slot : g_temp_slots)
    if (slot.state.load() == 2) ::unlink(slot.path);
  const char message[] = "\ndualflow: interrupted; outputs not yet written were left as they were\n";
  [[maybe_unused]] ssize_t ignored = ::write(STDERR_FILENO, message, sizeof(message) - 1);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void install_interrupt_cleanup() {
  struct sigaction sa = {};
  sa.sa_handler = remove_temp_files_and_reraise;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

AtomicFile::AtomicFile(std::string target, std::string who) : target_(std::move(target)), who_(std::move(who)) {
  static std::atomic<uint64_t> counter{0};
  remove_stale_temp_files(target_);
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_ = fmt::format("{}.tmp.{}.{}", target_, ::getpid(), counter.fetch_add(1));
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) {
      slot_ = list_temp_file(temp_);
      return;
    }
    if (errno != EEXIST) fail("{}: {}: cannot create temporary file {}: {}", who_, target_, temp_, errno_text(errno));
  }
  fail("{}: {}: cannot create a temporary file next to it: too many stale {}.tmp.* files", who_, target_, target_);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_.c_str());
  unlist_temp_file(slot_);
}

void AtomicFile::write(const void* data, size_t size) {
  DF_CHECK(fd_ >= 0 && !committed_, "{}: {}: write after commit", who_, target_);
  const auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    ssize_t w = ::write(fd_, p, std::min<size_t>(size, size_t(1) << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("{}: {}: write failed: {}", who_, target_, errno_text(errno));
    }
    p += w;
    size -= size_t(w);
  }
}

void AtomicFile::commit() {
  DF_CHECK(fd_ >= 0 && !committed_, "{}: {}: committed twice", who_, target_);
  if (::fsync(fd_) != 0) fail("{}: {}: fsync failed: {}", who_, target_, errno_text(errno));
  // Closing reports a delayed write failure, so it is checked before the rename.
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) fail("{}: {}: close failed: {}", who_, target_, errno_text(errno));
  if (::rename(temp_.c_str(), target_.c_str()) != 0)
    fail("{}: {}: cannot rename {} over it: {}", who_, target_, temp_, errno_text(errno));
  committed_ = true;
  unlist_temp_file(slot_);
  slot_ = -1;

  // The rename is durable only once the directory entry is on disk.
  const std::string parent = std::filesystem::path(target_).parent_path().string();
  const std::string dir = parent.empty() ? std::string(".") : parent;
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0)
    fail("{}: {}: written, but cannot open directory {} to fsync it: {}", who_, target_, dir, errno_text(errno));
  // Some file systems cannot fsync a directory (EINVAL); there is nothing more to do there.
  int sync_rc = ::fsync(dir_fd), sync_err = errno;
  ::close(dir_fd);
  if (sync_rc != 0 && sync_err != EINVAL)
    fail("{}: {}: written, but fsync of directory {} failed: {}", who_, target_, dir, errno_text(sync_err));
}

void write_file_atomically(const std::string& path, std::string_view bytes, const std::string& who) {
  AtomicFile file(path, who);
  file.write(bytes);
  file.commit();
}

void check_output_file(const std::string& path, const std::string& who) {
  namespace fs = std::filesystem;
  DF_CHECK(!path.empty(), "{}: expected an output file path, got an empty one", who);
  std::error_code ec;
  const fs::path p(path);
  DF_CHECK(!fs::is_directory(p, ec), "{}: cannot write '{}': it is a directory; expected a file path", who, path);
  fs::path dir = p.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::exists(dir, ec)) fail("{}: cannot write '{}': the folder '{}' does not exist", who, path, dir.string());
  DF_CHECK(fs::is_directory(dir, ec), "{}: cannot write '{}': '{}' is not a folder", who, path, dir.string());
  // The file is replaced by a rename, so the folder must take new entries. Permission bits do not
  // tell (root ignores them; /proc or a read-only mount refuse anyway), so a probe file is made
  // and removed at once, named as a stale temp file would be.
  const std::string probe = fmt::format("{}.tmp.{}.probe", path, ::getpid());
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 && errno != EEXIST)
    fail("{}: cannot write '{}': cannot create files in the folder '{}': {}", who, path, dir.string(),
         errno_text(errno));
  if (fd >= 0) {
    ::close(fd);
    ::unlink(probe.c_str());
  }
}

}  // namespace dualflow
