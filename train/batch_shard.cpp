// One process's share of a step's batch (see batch_shard.h).
#include "train/batch_shard.h"

#include "engine/dualflow.h"

namespace dualflow {

Tensor BatchShard::rows(const Tensor& batch) const {
  if (whole() || !batch.defined()) return batch;
  DF_CHECK(batch.dim() >= 1 && batch.size(0) >= size,
           "BatchShard: a batch of {} rows cannot be shared by {} processes (shape {})",
           batch.dim() >= 1 ? batch.size(0) : 0, size, batch.shape().str());
  return batch.slice(0, rank, batch.size(0), size).contiguous();
}

std::vector<double> BatchShard::weights(int64_t global) const {
  std::vector<double> w(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r) w[size_t(r)] = double(rows_of(global, r)) / double(global);
  return w;
}

BatchShard make_batch_shard(int rank, int size, int64_t global_batch) {
  DF_CHECK(size >= 1 && rank >= 0 && rank < size, "make_batch_shard: rank {} of {} processes", rank, size);
  DF_CHECK(global_batch >= size,
           "train.batch = {} is the global batch, shared by {} processes; give at least one row per process",
           global_batch, size);
  return BatchShard{rank, size};
}

}  // namespace dualflow
