// The progress of a long command (sampling thousands of images): "sampled 2500/10000 (25%),
// 41 samples/s, ETA 183 s", updated in place on a terminal and printed every 10 s otherwise
// (a log file gets a readable line, not a stream of carriage returns); the last line always.
#pragma once
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

namespace dualflow::cli {

class ProgressLine {
 public:
  ProgressLine(std::string verb, int64_t total)
      : verb_(std::move(verb)), total_(total), tty_(isatty(STDOUT_FILENO) != 0), start_(clock::now()) {}

  void update(int64_t done) {
    const double secs = std::chrono::duration<double>(clock::now() - start_).count();
    if (!tty_ && done < total_ && secs - last_print_ < 10) return;
    last_print_ = secs;
    const double rate = double(done) / std::max(secs, 1e-9);
    fmt::print("{}{} {}/{} ({:.0f}%), {:.0f} samples/s, ETA {:.0f} s{}", tty_ ? "\r" : "", verb_, done, total_,
               100.0 * double(done) / double(std::max<int64_t>(total_, 1)), rate,
               double(total_ - done) / std::max(rate, 1e-9), tty_ && done < total_ ? "" : "\n");
    std::fflush(stdout);
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string verb_;
  int64_t total_;
  bool tty_;
  clock::time_point start_;
  double last_print_ = -1;
};

}  // namespace dualflow::cli
