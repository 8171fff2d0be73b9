// JSON string and number text (see json_text.h).
#include "train/json_text.h"

#include <fmt/format.h>

#include <cmath>

namespace dualflow {

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      out += fmt::format("\\u{:04x}", c);
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (std::isfinite(v)) return fmt::format("{:.9g}", v);
  return std::isnan(v) ? "\"nan\"" : (v > 0 ? "\"inf\"" : "\"-inf\"");
}

}  // namespace dualflow
