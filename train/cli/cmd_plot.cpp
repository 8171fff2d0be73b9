// `dualflow plot`: the training curves of finished runs (loss, gradient norm, learning rate
// against step) as one PNG, several runs overlaid with a legend; what each run redraws as
// metrics.png beside its checkpoints, for any set of runs afterwards.
#include <fmt/format.h>

#include <filesystem>

#include "engine/atomic_file.h"
#include "train/cli/commands.h"
#include "train/plots.h"

namespace dualflow::cli {
namespace {

struct PlotArgs {
  std::vector<std::string> runs;
  std::vector<std::string> labels;
  std::string out;
};

void run_plot(const PlotArgs& a) {
  namespace fs = std::filesystem;
  DF_CHECK(a.labels.empty() || a.labels.size() == a.runs.size(),
           "plot: --label given {} times for {} runs (give one per run, in order, or none)", a.labels.size(),
           a.runs.size());
  std::string out = a.out;
  if (out.empty()) {
    DF_CHECK(a.runs.size() == 1, "plot: --out FILE is required with several runs (got {})", a.runs.size());
    const fs::path run = a.runs[0];
    out = ((fs::is_directory(run) ? run : run.parent_path()) / "metrics.png").string();
  }
  check_output_file(out, "plot --out");
  std::vector<MetricsCurves> curves;
  for (size_t i = 0; i < a.runs.size(); ++i)
    curves.push_back(read_metrics_curves(a.runs[i], a.labels.empty() ? "" : a.labels[i]));
  save_metrics_png(out, curves);
  for (const auto& c : curves) {
    const auto& loss = c.fields.count("loss") ? c.fields.at("loss") : std::vector<std::pair<double, double>>{};
    fmt::print("{}: {} logged steps{}\n", c.label, loss.size(),
               loss.empty() ? "" : fmt::format(", loss {:.5g} at step {:.0f}", loss.back().second, loss.back().first));
  }
  fmt::print("-> {}\n", out);
}

}  // namespace

void add_plot(CLI::App& app) {
  auto a = std::make_shared<PlotArgs>();
  auto* cmd = app.add_subcommand("plot", "Draw the training curves of runs (loss, gradient norm, learning rate)");
  cmd->add_option("runs", a->runs, "run folders or metrics.jsonl files (several: overlaid with a legend)")
      ->required();
  cmd->add_option("--label", a->labels, "a legend label per run, in order (default: the run folders' names)");
  cmd->add_option("--out", a->out, "output PNG (default with one run: metrics.png in its folder)");
  cmd->callback([a] { run_plot(*a); });
}

}  // namespace dualflow::cli
