// The subcommands of the `dualflow` program; each registers its options on the CLI11 app and
// returns the callback that runs it.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>

namespace dualflow::cli {

void add_info(CLI::App& app);
void add_bench(CLI::App& app);
// `bench models`, a subcommand of `bench`.
void add_bench_models(CLI::App* bench);
// `bench toy2d-cfm`, `toy2d-meanflow`, `toy2d-euler`, `toy2d-nll-exact`: subcommands of `bench`.
void add_bench_flow(CLI::App* bench);
void add_demo(CLI::App& app);
// `train`, `sample` and `nll` (cmd_flow.cpp).
void add_flow_commands(CLI::App& app);
// `eval`: FD and class accuracy of image samples with the engine's classifier (cmd_eval.cpp).
void add_eval(CLI::App& app);
// `train-classifier` and `eval-classifier`: the Fashion-MNIST evaluation classifier (cmd_classifier.cpp).
void add_classifier_commands(CLI::App& app);

}  // namespace dualflow::cli
