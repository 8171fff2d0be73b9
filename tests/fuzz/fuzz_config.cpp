// libFuzzer harness of the TOML run-config loader with the `dualflow train` schema. The input is
// the TOML text up to the first NUL byte (TOML text never holds one), then NUL-separated
// `--set key=value` overrides. Every input must either load or be refused with dualflow::Error;
// a loaded config must survive to_toml -> parse_config_text unchanged. tools/fuzz.sh config
// runs it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/error.h"
#include "train/config.h"

namespace {

// toml++ 3.3 (Debian 12) classifies a non-ASCII character where whitespace may stand through a
// generated table whose default case is __builtin_unreachable(), reached by the code points
// below (marzer/tomlplusplus#190, #295; fixed upstream by #305): undefined behaviour in the
// source, which UBSan stops at. The builds we ship answer "not whitespace" there, as they
// should; test_config.cpp checks that on the library the program links. Inputs holding such a
// code point (in the text or an override) are skipped so that the fuzzer can go on looking for
// other faults.
bool has_code_point_of_toml_unreachable_bug(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    auto byte = [&](size_t k) { return k < text.size() ? static_cast<unsigned char>(text[k]) : 0u; };
    unsigned lead = byte(i);
    char32_t cp = 0;
    if ((lead & 0xe0) == 0xc0) cp = char32_t((lead & 0x1f) << 6 | (byte(i + 1) & 0x3f));
    else if ((lead & 0xf0) == 0xe0)
      cp = char32_t((lead & 0x0f) << 12 | (byte(i + 1) & 0x3f) << 6 | (byte(i + 2) & 0x3f));
    else continue;
    if ((cp >= 0xa1 && cp <= 0x499) || (cp >= 0x2c5e && cp <= 0x3057 && cp != 0x3000) || (cp >= 0xfb26 && cp <= 0xfefe))
      return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dualflow;
  static const ConfigSchema schema = flow_matching_schema();
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t nul = input.find('\0');
  std::string_view text = input.substr(0, nul);
  if (has_code_point_of_toml_unreachable_bug(input)) return 0;  // overrides are parsed as TOML too
  std::vector<std::string> overrides;
  while (nul != std::string_view::npos) {
    size_t next = input.find('\0', nul + 1);
    overrides.emplace_back(input.substr(nul + 1, next == std::string_view::npos ? next : next - nul - 1));
    nul = next;
  }
  std::optional<RunConfig> config;
  try {
    config.emplace(parse_config_text(text, "fuzz.toml", overrides, schema));
  } catch (const Error&) { return 0; }
  // What a checkpoint records must load back as it was; a refusal here escapes as a finding.
  RunConfig again = parse_config_text(config->to_toml(), "fuzz.toml (written back)", {}, schema);
  if (!(again == *config)) std::abort();
  return 0;
}
