// A training run's metrics.jsonl: one JSON object per line. A resumed run continues the file
// from its checkpoint, so the log reads as if the run had never stopped: lines a killed run
// wrote after its last checkpoint (steps that are about to be trained again) and a line torn
// by the kill are dropped, events (a non-finite step, a resume) are kept as history.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace dualflow {

class MetricsLog {
 public:
  // A fresh run (resume_step < 0) starts an empty file. A resumed run first rewrites the file
  // (atomically) without the step lines beyond resume_step and without lines that are not
  // complete JSON objects, then appends {"step":resume_step,"event":"resume"}.
  MetricsLog(const std::string& path, int64_t resume_step, const std::string& who);

  // Appends one record (a JSON object without its trailing newline) and flushes it, so a kill
  // loses at most the line being written.
  void write(const std::string& record);

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

// The lines of a metrics file a run resumed at `step` keeps (see MetricsLog), in order.
std::string metrics_kept_on_resume(const std::string& text, int64_t step);

}  // namespace dualflow
