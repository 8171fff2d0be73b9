// A benchmark's --json output: rows collected as they come and written whole, atomically, when
// the benchmark ends, so an interrupted or failed benchmark leaves the previous file (or none),
// never a partial one. The path is checked up front, before minutes of timing.
#pragma once
#include <string>
#include <utility>

#include "engine/atomic_file.h"

namespace dualflow::cli {

class JsonLinesFile {
 public:
  // An empty path: no file (every call does nothing).
  JsonLinesFile(std::string path, std::string who) : path_(std::move(path)), who_(std::move(who)) {
    if (!path_.empty()) check_output_file(path_, who_);
  }
  explicit operator bool() const { return !path_.empty(); }
  JsonLinesFile& operator<<(const std::string& text) {
    text_ += text;
    return *this;
  }
  // Writes the rows collected so far as the file's whole content.
  void commit() const {
    if (!path_.empty()) write_file_atomically(path_, text_, who_);
  }

 private:
  std::string path_, who_, text_;
};

}  // namespace dualflow::cli
