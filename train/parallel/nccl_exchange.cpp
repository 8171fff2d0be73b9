// NCCL sums and broadcasts between GPU ranks (see nccl_exchange.h). The engine queues its
// kernels on a stream of its own, so each exchange first waits for the device, then runs on
// this exchange's stream and waits for it: simple and ordered, without overlap of the exchange
// with backward (a later improvement).
#include "train/parallel/nccl_exchange.h"

#include "engine/error.h"

#if DUALFLOW_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "engine/device.h"
#endif

namespace dualflow {

#if DUALFLOW_HAVE_NCCL

namespace {

void check_cuda(cudaError_t rc, const char* what) {
  DF_CHECK(rc == cudaSuccess, "{}: {}", what, cudaGetErrorString(rc));
}
void check_nccl(ncclResult_t rc, const char* what) {
  DF_CHECK(rc == ncclSuccess, "{}: {}", what, ncclGetErrorString(rc));
}

class Nccl final : public NcclExchange {
 public:
  Nccl(ProcessGroup& group, int device) : device_(device) {
    ncclUniqueId id{};
    if (group.rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    group.broadcast(&id, sizeof(id), 0);
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    check_nccl(ncclCommInitRank(&comm_, group.size(), id, group.rank()), "ncclCommInitRank");
  }
  ~Nccl() override {
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
  }
  void sum(float* data, int64_t n) override {
    synchronize(Device::cuda(device_));
    check_nccl(ncclAllReduce(data, data, size_t(n), ncclFloat32, ncclSum, comm_, stream_), "ncclAllReduce");
    check_cuda(cudaStreamSynchronize(stream_), "ncclAllReduce (waiting for the sum)");
  }
  void broadcast(void* data, size_t bytes, int root) override {
    synchronize(Device::cuda(device_));
    check_nccl(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_), "ncclBroadcast");
    check_cuda(cudaStreamSynchronize(stream_), "ncclBroadcast (waiting for it)");
  }

 private:
  int device_;
  cudaStream_t stream_ = nullptr;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

bool NcclExchange::built() { return true; }
std::unique_ptr<NcclExchange> NcclExchange::create(ProcessGroup& group, int device) {
  return std::make_unique<Nccl>(group, device);
}

#else

bool NcclExchange::built() { return false; }
std::unique_ptr<NcclExchange> NcclExchange::create(ProcessGroup&, int) {
  fail("NCCL: this dualflow was built without NCCL (it needs the CUDA toolkit's nccl.h and libnccl, and MPI)");
}

#endif

}  // namespace dualflow
