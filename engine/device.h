// Device: where a tensor's storage lives (the CPU, or CUDA device i), and the backend table
// that runs kernels there.
#pragma once
#include <cstdint>
#include <string>

namespace dualflow {

struct Backend;  // kernels/common/backend.h: the kernel table, included where kernels are called

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
// Refuses a kernel table that leaves a required kernel null, naming it (backend_for checks each
// table once this way).
const Backend& check_backend_complete(const Backend& b);
// Throws the same clear error as backend_for when the device does not exist.
void check_device(const Device& d);
// Waits for the device's queued work (timing); nothing to wait for on the CPU.
void synchronize(const Device& d);
bool cuda_available();
// Number of CUDA devices that answer (0 without a GPU or without the CUDA backend); the build's
// CUDA runtime, cuBLAS and cuDNN versions (or "not built"); a device's name.
int cuda_device_count();
std::string cuda_build_info();
std::string cuda_device_name(int device);

}  // namespace dualflow
