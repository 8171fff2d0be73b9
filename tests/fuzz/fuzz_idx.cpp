// libFuzzer harness of the IDX reader (MNIST / Fashion-MNIST files): the input goes through
// decode_idx (gunzip when it starts with the gzip magic, then the IDX parser) and through
// parse_idx directly. Each either returns an array whose sizes match its data or is refused with
// dualflow::Error; anything else (another exception, a sanitizer report, an allocation beyond
// what the input can produce) is a finding. tools/fuzz.sh idx runs it.
// The decompressed size is capped at 1 MiB instead of kMaxIdxBytes: a 16 KiB input can inflate
// to 16 MiB, and the inputs that do would take most of the fuzzer's time without reaching any
// code that a megabyte does not; the cap's own refusal is reached this way too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "engine/error.h"
#include "train/image_data.h"

namespace {

constexpr size_t kDecompressedCap = size_t(1) << 20;

// An accepted array has 1 to 4 dimensions whose product is its byte count, never above the cap.
void check_array(const dualflow::IdxArray& a) {
  if (a.dims.empty() || a.dims.size() > 4) std::abort();
  uint64_t product = 1;
  for (int64_t d : a.dims) {
    if (d < 0 || d > int64_t(0xffffffff)) std::abort();
    product *= uint64_t(d);
  }
  if (product != a.data.size() || a.data.size() > kDecompressedCap) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dualflow;
  const std::span<const uint8_t> bytes(data, size);
  try {
    check_array(decode_idx(bytes, "fuzz input", kDecompressedCap));
  } catch (const Error&) {}
  try {
    IdxArray a = parse_idx(bytes, "fuzz input");
    check_array(a);
    // The plain parser accepts exactly header + data: nothing more, nothing less.
    if (4 + 4 * a.dims.size() + a.data.size() != size) std::abort();
  } catch (const Error&) {}
  return 0;
}
