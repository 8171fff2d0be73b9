// libFuzzer harness of the safetensors reader: any byte string either parses or is refused with
// dualflow::Error; anything else (another exception, a sanitizer report, an allocation beyond
// the input's own size) is a finding. tools/fuzz.sh safetensors runs it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "engine/error.h"
#include "engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dualflow;
  SafetensorsContent content;
  try {
    content = parse_safetensors(data, size, "fuzz input");
  } catch (const Error&) { return 0; }
  // An accepted file's tensors cover its data buffer exactly, so they never hold more bytes
  // than the input.
  size_t tensor_bytes = 0;
  for (const auto& [name, t] : content.tensors) tensor_bytes += size_t(t.numel()) * t.element_size();
  if (tensor_bytes > size) std::abort();
  return 0;
}
