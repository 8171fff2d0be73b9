// `dualflow`: the one program. Subcommands: info, bench, demo, train, sample, nll, eval, train-classifier,
// eval-classifier.
#include <fmt/format.h>

#include "engine/error.h"
#include "train/commands.h"

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
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const dualflow::Error& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
