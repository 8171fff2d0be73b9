// Data-parallel training: the StepSynchronizer of a run spread over the processes of a
// ProcessGroup, one per rank. Every process holds the whole model and draws the whole batch's
// random inputs; it runs forward and backward on its BatchShard. After backward the gradients
// are combined in buckets into the batch-weighted sum (the global batch mean): on CPUs by the
// group's deterministic rank-order sum over MPI, on GPUs by NCCL where the build has it (else
// through host memory and MPI). At the start and on resume every process takes rank 0's
// state; every sync_check_every steps the parameter checksums of all ranks are compared, so a
// desynchronised rank stops the run with the step and the ranks named instead of training on.
#pragma once
#include <cstdint>
#include <memory>

#include "engine/device.h"
#include "train/batch_shard.h"
#include "train/parallel/process_group.h"
#include "train/training_loop.h"

namespace dualflow {

struct DataParallelOptions {
  int64_t global_batch = 0;      // train.batch
  int64_t sync_check_every = 0;  // run.sync_check_every
  int64_t bucket_floats = int64_t(1) << 22;  // gradients are exchanged in buckets of this many floats (16 MiB)
};

class DataParallel final : public StepSynchronizer {
 public:
  // `device`: where the model lives (each rank's own GPU for CUDA runs).
  DataParallel(std::shared_ptr<ProcessGroup> group, Device device, DataParallelOptions options);
  ~DataParallel() override;

  BatchShard shard() const { return shard_; }
  ProcessGroup& group() const { return *group_; }
  // "MPI (rank-order sums on the host)" or "NCCL": what carries the gradients.
  std::string transport() const;

  ProcessRole role() const override { return {group_->rank(), group_->size()}; }
  void combine(const NamedTensors& params, std::vector<double>& scalars) override;
  void broadcast_state(const NamedTensors& state, const std::vector<Generator*>& generators,
                       int64_t& step) override;
  void check_in_sync(const NamedTensors& params, int64_t step) override;
  int64_t sync_check_every() const override { return options_.sync_check_every; }
  double combine_seconds() const override { return combine_seconds_; }
  void wait_for_all() override;

 private:
  void combine_on_host(const NamedTensors& params, std::vector<double>& scalars);
  void combine_on_device(const NamedTensors& params, std::vector<double>& scalars);
  void broadcast_tensor(const Tensor& t);

  std::shared_ptr<ProcessGroup> group_;
  Device device_;
  DataParallelOptions options_;
  BatchShard shard_;
  std::vector<double> weights_;
  double combine_seconds_ = 0;  // summed over the steps
  std::vector<float> bucket_;
  std::unique_ptr<class NcclExchange> nccl_;  // CUDA runs in a build with NCCL
};

// The device a rank of a run configured for `configured` trains on: its local rank's GPU for
// CUDA runs (cuda:local_rank modulo the GPUs it sees), the CPU otherwise.
Device rank_device(const Device& configured, const ProcessGroup& group);

}  // namespace dualflow
