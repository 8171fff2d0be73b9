// The engine's one exception type and the check macro: every message names the op, what was
// expected and what was given (e.g. "matmul: inner dims differ: [64,3] x [4,8]").
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace dualflow {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace dualflow

#define DF_CHECK(cond, ...)                     \
  do {                                          \
    if (!(cond)) ::dualflow::fail(__VA_ARGS__); \
  } while (0)
