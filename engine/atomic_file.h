// Files written atomically, and output paths checked before the work that fills them. Every
// file dualflow writes (checkpoints, samples, plots, results) goes through AtomicFile, so a
// crash, a kill or an error at any moment leaves either the old file or the whole new one.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dualflow {

// Bytes go to `<target>.tmp.<pid>.<k>` beside the target (a rename is atomic only within one file
// system); commit() fsyncs it, renames it over the target and fsyncs the directory so the rename
// itself is durable. Destroyed without a commit (an error, an exception) it removes its temp
// file and leaves the target as it was. A writer killed mid-write leaves its temp file; the next
// AtomicFile for the same target deletes the temp files of writers that no longer exist.
// `who` starts every error message ("save_safetensors", "save_npy", ...).
class AtomicFile {
 public:
  AtomicFile(std::string target, std::string who);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  void commit();

  const std::string& temp_name() const { return temp_; }

 private:
  std::string target_, who_, temp_;
  int fd_ = -1;
  int slot_ = -1;  // where the temp file is listed for install_interrupt_cleanup's handler
  bool committed_ = false;
};

// Makes SIGINT and SIGTERM end the process the way they would anyway (exit status 128 + the
// signal) after removing the temp files of the writes in flight, so an interrupted command
// leaves each output as it was or whole, never a partial file beside it. Commands that save
// and stop on a signal (train) install their own handlers over these.
void install_interrupt_cleanup();

// The whole of `bytes` as the new content of `path`, atomically.
void write_file_atomically(const std::string& path, std::string_view bytes, const std::string& who);

// Refuses, before any work is done, an output file that could not be written: an empty path, a
// directory, a folder that does not exist or is not writable, or an existing file that is not
// writable. Creates nothing. Files are written through AtomicFile, so what counts is the folder.
void check_output_file(const std::string& path, const std::string& who);

}  // namespace dualflow
