// `dualflow`: the one program. Subcommands: info, bench, demo, train, sample, nll, eval, train-classifier,
// eval-classifier.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/atomic_file.h"
#include "engine/error.h"
#include "train/cli/commands.h"
#include "train/config.h"
#include "train/parallel/process_group.h"

namespace {

// A word where a subcommand must stand that names none: CLI11 alone would answer "A subcommand
// is required". Returns the message, or "" when the command line names its subcommands.
std::string unknown_subcommand(const CLI::App& app, int argc, char** argv) {
  const CLI::App* at = &app;
  std::string path = "dualflow";
  for (int i = 1; i < argc && at->get_require_subcommand_min() > 0; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') return "";  // an option (--help, --version) comes first
    std::vector<std::string> names;
    const CLI::App* next = nullptr;
    for (const CLI::App* sub : at->get_subcommands([](const CLI::App*) { return true; })) {
      names.push_back(sub->get_name());
      if (sub->check_name(word)) next = sub;
    }
    if (next == nullptr) {
      std::string guess;
      for (const auto& n : names)
        if (dualflow::edit_distance(n, word) <= std::max<size_t>(2, word.size() / 3) &&
            (guess.empty() || dualflow::edit_distance(n, word) < dualflow::edit_distance(guess, word)))
          guess = n;
      return fmt::format("{}: unknown subcommand '{}'; expected one of {}{}", path, word, fmt::join(names, ", "),
                         guess.empty() ? "" : fmt::format("; did you mean '{}'?", guess));
    }
    path += " " + word;
    at = next;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dualflow: flow matching, MeanFlow and CNFs on a dual-mode autodiff engine"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "dualflow 0.1.0");
  dualflow::cli::add_info(app);
  dualflow::cli::add_bench(app);
  dualflow::cli::add_demo(app);
  dualflow::cli::add_flow_commands(app);
  dualflow::cli::add_eval(app);
  dualflow::cli::add_classifier_commands(app);
  dualflow::cli::add_plot(app);
  if (std::string unknown = unknown_subcommand(app, argc, argv); !unknown.empty()) {
    fmt::print(stderr, "error: {}\nRun with --help for more information.\n", unknown);
    return static_cast<int>(CLI::ExitCodes::ExtrasError);
  }
  // Under mpirun this process is one rank of a run: the group lives as long as main, and an
  // error on any rank ends every rank (never a run that hangs waiting for a dead process).
  std::shared_ptr<dualflow::ProcessGroup> group;
  auto report = [&](const char* what) {
    if (group && group->distributed()) {
      fmt::print(stderr, "error ({}): {}\n", group->describe(), what);
      std::fflush(stderr);
      group->abort(1);
    }
    fmt::print(stderr, "error: {}\n", what);
    return 1;
  };
  // SIGINT/SIGTERM leave no partial output (train saves and stops instead: it installs its own).
  dualflow::install_interrupt_cleanup();
  try {
    group = dualflow::ProcessGroup::join();
    // Only these commands split their work across the ranks of an mpirun; the others would run
    // N times over and write the same files at once.
    const std::vector<std::string> distributed_commands = {"train", "sample", "eval"};
    if (group->distributed() && argc > 1 && argv[1][0] != '-' &&
        std::find(distributed_commands.begin(), distributed_commands.end(), argv[1]) == distributed_commands.end())
      throw std::runtime_error(fmt::format(
          "dualflow {} runs as one process; start it without mpirun (under mpirun: {})", argv[1],
          fmt::join(distributed_commands, ", ")));
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // A rank that refuses its command line (a file missing on its machine) must not leave the
    // others waiting for it.
    if (group && group->distributed() && e.get_exit_code() != 0) return report(e.what());
    return app.exit(e);
  } catch (const std::exception& e) {
    return report(e.what());
  }
  return 0;
}
