// Measured per-sample memory, the machine's available memory and disk, and the refusals (see
// memory_check.h).
#include "train/memory_check.h"

#include <fmt/format.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "train/velocity_model.h"

namespace dualflow {

int64_t available_memory_bytes(Device device) {
  if (!device.is_cpu()) return -1;
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream in(line);
    std::string key;
    int64_t kib = 0;
    if (in >> key >> kib && key == "MemAvailable:") return kib * 1024;
  }
  return -1;
}

int64_t free_disk_bytes(const std::string& path) {
  namespace fs = std::filesystem;
  fs::path folder = fs::path(path).parent_path();
  if (folder.empty()) folder = ".";
  struct statvfs st {};
  if (::statvfs(folder.c_str(), &st) != 0) return -1;
  return int64_t(st.f_bavail) * int64_t(st.f_frsize);
}

namespace {
// Peak bytes of one pass over `rows` random samples, above what was held before it.
int64_t pass_peak_bytes(const VelocityModel& model, bool with_backward, int64_t rows) {
  const Device device = model_device(model);
  Generator gen(0x5A11);
  Dims shape = {rows};
  for (int64_t d : model.sample_shape) shape.push_back(d);
  const TensorOptions f32(DType::f32, device);
  const Tensor x = randn(shape, gen, f32), t = uniform(Shape{rows}, 0.0, 1.0, gen, f32);
  const Tensor labels = model.num_classes > 0 ? zeros(Shape{rows}, TensorOptions(DType::i64, device)) : Tensor();
  reset_peak_memory(device);
  const int64_t before = memory_stats(device).current_bytes;
  {
    std::unique_ptr<NoGradGuard> no_grad;
    if (!with_backward) no_grad = std::make_unique<NoGradGuard>();
    Tensor out = model.net(x, t, Tensor(), labels);
    if (with_backward) sum(out).backward();
  }
  const int64_t peak = memory_stats(device).peak_bytes - before;
  model.module->zero_grad();
  return peak;
}
}  // namespace

int64_t network_bytes_per_sample(const VelocityModel& model, bool with_backward, int64_t probe) {
  const bool was_training = model.module->is_training();
  model.module->eval();  // no dropout draws from the module's generator
  // Two sizes, so what does not grow with the batch (the parameters' gradients) cancels; small
  // samples (2-D points) get more rows, so the activations outweigh the parameters at the peak.
  if (probe <= 0) probe = std::clamp<int64_t>(8192 / std::max<int64_t>(1, model.sample_shape.numel()), 8, 4096);
  const int64_t small = pass_peak_bytes(model, with_backward, probe);
  const int64_t large = pass_peak_bytes(model, with_backward, 2 * probe);
  model.module->train(was_training);
  return std::max<int64_t>(1, (large - small) / probe);
}

std::string format_bytes(double bytes) {
  if (bytes >= double(1ull << 30)) return fmt::format("{:.1f} GiB", bytes / double(1ull << 30));
  if (bytes >= double(1 << 20)) return fmt::format("{:.1f} MiB", bytes / double(1 << 20));
  if (bytes >= 1024) return fmt::format("{:.1f} KiB", bytes / 1024);
  return fmt::format("{:.0f} B", bytes);
}

void check_memory_fits(const std::string& what, int64_t needed_bytes, const std::string& how, Device device) {
  const int64_t available = available_memory_bytes(device);
  if (available < 0) return;
  DF_CHECK(needed_bytes <= available, "{} needs about {} of memory ({}), but {} has {} available; make it smaller",
           what, format_bytes(double(needed_bytes)), how, device.str(), format_bytes(double(available)));
}

}  // namespace dualflow
