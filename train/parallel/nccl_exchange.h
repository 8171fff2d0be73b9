// Sums and broadcasts of GPU memory between the ranks of a group, one GPU each, with NCCL.
// NCCL's unique id travels from rank 0 through the group (MPI). Built only where CMake found
// NCCL beside the CUDA toolkit; elsewhere create() refuses with the reason.
#pragma once
#include <cstdint>
#include <memory>

#include "train/parallel/process_group.h"

namespace dualflow {

class NcclExchange {
 public:
  static bool built();
  // Joins the group's NCCL communicator on CUDA device `device` (every rank calls it together).
  static std::unique_ptr<NcclExchange> create(ProcessGroup& group, int device);
  virtual ~NcclExchange() = default;
  // In place: each rank's n floats become their sum over the ranks. Waits for the result.
  virtual void sum(float* device_data, int64_t n) = 0;
  virtual void broadcast(void* device_data, size_t bytes, int root) = 0;
};

}  // namespace dualflow
