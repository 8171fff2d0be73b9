// JSON text for the one-line records dualflow writes (metrics.jsonl, eval and nll results):
// built with fmt in the order the fields are read, with these two helpers for the values that
// need care.
#pragma once

#include <string>
#include <string_view>

namespace dualflow {

// A quoted JSON string: quotes, backslashes and control characters escaped (a path may hold any
// of them).
std::string json_string(std::string_view s);

// A number with 9 significant digits (enough to round-trip an f32); JSON has no NaN or
// infinity, so those become the strings "nan", "inf" and "-inf" that a reader can still tell.
std::string json_number(double v);

}  // namespace dualflow
