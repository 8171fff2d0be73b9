// Up-front size checks: a training batch, a sampling chunk or an output file that cannot fit is
// refused before any work, with the bytes it would need and what the machine has, instead of
// ending mid-run in the allocator (std::bad_alloc) or on a full disk.
#pragma once
#include <cstdint>
#include <string>

#include "engine/dualflow.h"

namespace dualflow {

struct VelocityModel;

// Memory the device can still give: on the CPU, Linux's MemAvailable (/proc/meminfo); -1 where
// it is not known (a CUDA device: its allocator reports a failed allocation itself).
int64_t available_memory_bytes(Device device);

// Bytes free for a new file in `path`'s folder (statvfs), -1 if it cannot be read.
int64_t free_disk_bytes(const std::string& path);

// Bytes one sample holds at the peak of the network's forward pass (and backward, with
// `with_backward`): the growth of the pass's peak from `probe` to 2 x `probe` random samples
// (probe <= 0: 8192 floats' worth, 8 to 4096 samples), so what does not grow with the batch,
// such as the parameters' gradients, is left out. Counts the tensors the pass keeps, not what an
// allocator caches. The run's generators are not touched, the module's mode is restored and its
// gradients are cleared, so the measurement changes nothing that follows.
int64_t network_bytes_per_sample(const VelocityModel& model, bool with_backward, int64_t probe = 0);

// "1.5 GiB", "820.0 MiB", "12.0 KiB", "900 B".
std::string format_bytes(double bytes);

// Throws, naming `what` (a setting: "train.batch = 100000000"), the bytes it needs and how that
// was estimated (`how`), when that exceeds the available memory of `device`; nothing when the
// available memory is unknown.
void check_memory_fits(const std::string& what, int64_t needed_bytes, const std::string& how, Device device);

}  // namespace dualflow
