// A training run's metrics.jsonl, continued across a resume (see metrics_log.h).
#include "train/metrics_log.h"

#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/atomic_file.h"
#include "engine/error.h"

namespace dualflow {

std::string metrics_kept_on_resume(const std::string& text, int64_t step) {
  std::string kept;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_object()) continue;  // torn by a kill, or not ours
    const bool event = record.contains("event");
    const auto s = record.find("step");
    const bool later_step = s != record.end() && s->is_number_integer() && s->get<int64_t>() > step;
    if (later_step && !event) continue;  // that step is trained again from the checkpoint
    kept += line;
    kept += '\n';
  }
  return kept;
}

MetricsLog::MetricsLog(const std::string& path, int64_t resume_step, const std::string& who) : path_(path) {
  if (resume_step >= 0) {
    std::string text;
    if (std::ifstream in{path, std::ios::binary}) {
      std::ostringstream buffer;
      buffer << in.rdbuf();
      text = buffer.str();
    }
    write_file_atomically(path, metrics_kept_on_resume(text, resume_step), who);
  }
  out_.open(path, resume_step >= 0 ? std::ios::app : std::ios::trunc);
  DF_CHECK(bool(out_), "{}: cannot write the metrics file '{}'", who, path);
  if (resume_step >= 0) write(fmt::format(R"({{"step":{},"event":"resume"}})", resume_step));
}

void MetricsLog::write(const std::string& record) {
  out_ << record << '\n';
  out_.flush();
  DF_CHECK(bool(out_), "cannot write the metrics file '{}'", path_);
}

}  // namespace dualflow
