// One process's share of a training step's batch in data-parallel training. Every process
// draws the whole global batch's random inputs (data, noise, times, dropped labels) from the
// run's one data stream, so each per-sample number depends on the sample's place in the global
// batch only; a process then keeps its rows and runs the network on them. N processes thus
// train what one process trains, up to the order of floating-point sums. The rows are strided
// (rank, rank + N, rank + 2N, ...) rather than blocks, so batches laid out in blocks (MeanFlow's
// r = t rows first, the dropped labels first) spread evenly over the processes.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/tensor.h"

namespace dualflow {

struct BatchShard {
  int rank = 0;  // this process
  int size = 1;  // processes sharing each batch

  bool whole() const { return size == 1; }
  // How many of `global` rows process `r` takes.
  int64_t rows_of(int64_t global, int r) const { return global / size + (r < global % size ? 1 : 0); }
  // This process's rows of a batch [global, ...] (the batch itself when whole()).
  Tensor rows(const Tensor& batch) const;
  // Each process's weight in the batch mean: rows_of(global, r) / global. A process's mean loss
  // over its rows, weighted so and summed, is the mean over the global batch.
  std::vector<double> weights(int64_t global) const;
};

// The shard of process `rank` of `size`; refuses a batch smaller than the number of processes.
BatchShard make_batch_shard(int rank, int size, int64_t global_batch);

}  // namespace dualflow
