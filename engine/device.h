// Device: where a tensor's storage lives (the CPU, or CUDA device i), and the backend table
// that runs kernels there.
#pragma once
#include <cstdint>
#include <string>

#include "kernels/common/backend.h"

namespace dualflow {

struct Device {
  enum class Kind : uint8_t { CPU, CUDA };
  Kind kind = Kind::CPU;
  int index = 0;

  static Device cpu() { return Device{}; }
  static Device cuda(int i = 0) { return Device{Kind::CUDA, i}; }
  bool is_cpu() const { return kind == Kind::CPU; }
  bool is_cuda() const { return kind == Kind::CUDA; }
  bool operator==(const Device& o) const { return kind == o.kind && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
  // Parses "cpu", "cuda", "cuda:1"; throws with the accepted forms otherwise.
  static Device parse(const std::string& s);
};

// The kernel table for a device; throws a clear error if that device is not available.
const Backend& backend_for(const Device& d);
bool cuda_available();

}  // namespace dualflow
