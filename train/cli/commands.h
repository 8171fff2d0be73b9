// The subcommands of the `dualflow` program; each registers its options on the CLI11 app and
// returns the callback that runs it.
#pragma once
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>

namespace dualflow::cli {

void add_info(CLI::App& app);
void add_bench(CLI::App& app);
// `bench models`, a subcommand of `bench`.
void add_bench_models(CLI::App* bench);
// `bench toy2d-cfm`, `toy2d-meanflow`, `toy2d-euler`, `toy2d-nll-exact`: subcommands of `bench`.
void add_bench_flow(CLI::App* bench);
void add_demo(CLI::App& app);
// `plot`: training curves of finished runs (cmd_plot.cpp).
void add_plot(CLI::App& app);
// `train`, `sample` and `nll` (cmd_flow.cpp).
void add_flow_commands(CLI::App& app);
// `eval`: FD and class accuracy of image samples with the engine's classifier (cmd_eval.cpp).
void add_eval(CLI::App& app);
// `train-classifier` and `eval-classifier`: the Fashion-MNIST evaluation classifier (cmd_classifier.cpp).
void add_classifier_commands(CLI::App& app);

// Numeric option checks whose messages name what the option expects and what it was given
// ("--n: expected a positive integer, got 'abc'"); CLI11's PositiveNumber answers a word and a
// negative number alike with "Value abc not in range 0.000000 to 1.797...e308".
inline CLI::Validator number_check(bool integer, bool allow_zero) {
  const char* expected = integer ? (allow_zero ? "a non-negative integer" : "a positive integer")
                                 : (allow_zero ? "a number >= 0" : "a number > 0");
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        const char *first = s.data(), *last = s.data() + s.size();
        bool ok = false;
        if (integer && allow_zero) {
          uint64_t v = 0;
          auto [end, ec] = std::from_chars(first, last, v);
          ok = ec == std::errc() && end == last;
        } else if (integer) {
          int64_t v = 0;
          auto [end, ec] = std::from_chars(first, last, v);
          ok = ec == std::errc() && end == last && v > 0;
        } else {
          char* end = nullptr;
          errno = 0;
          const double v = s.empty() ? 0.0 : std::strtod(s.c_str(), &end);
          ok = !s.empty() && end == last && errno == 0 && std::isfinite(v) && (allow_zero ? v >= 0 : v > 0);
        }
        return ok ? std::string() : fmt::format("expected {}, got '{}'", expected, s);
      },
      allow_zero ? "NONNEGATIVE" : "POSITIVE");
}
inline CLI::Validator positive_integer() { return number_check(true, false); }
inline CLI::Validator non_negative_integer() { return number_check(true, true); }
inline CLI::Validator positive_number() { return number_check(false, false); }
inline CLI::Validator non_negative_number() { return number_check(false, true); }

}  // namespace dualflow::cli
