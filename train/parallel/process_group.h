// The processes of one run and the few collective operations data-parallel training needs.
// A process started alone is a group of one and touches no MPI. Started by mpirun (Open MPI
// sets OMPI_COMM_WORLD_SIZE; other launchers PMI_SIZE or PMIX_SIZE) with more than one process,
// the group initialises MPI once and finalises it when the last handle goes. Collectives are
// blocking and must be called by every process in the same order.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace dualflow {

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;

  // This process's group: the launcher's world when it started several processes, else a
  // group of one. MPI may be initialised once per process, so every call returns the same group.
  static std::shared_ptr<ProcessGroup> join();
  // A group of one, for programs and tests that never distribute.
  static std::shared_ptr<ProcessGroup> single();

  int rank() const { return rank_; }
  int size() const { return size_; }
  // This process's place among the group's processes on its machine (its GPU index).
  int local_rank() const { return local_rank_; }
  // How many of the group's processes run on this machine.
  int local_size() const { return local_size_; }
  bool distributed() const { return size_ > 1; }
  // "rank 1 of 4 on node7"
  virtual std::string describe() const;

  // data[i] <- sum over ranks r = 0, 1, ... in that order, accumulated in f64, of
  // weights[r] * (rank r's data[i]): the same bits on every rank, run after run, whatever
  // algorithm the transport would pick for its own sums.
  virtual void weighted_sum(float* data, int64_t n, std::span<const double> weights) = 0;
  // Every rank receives `root`'s bytes.
  virtual void broadcast(void* data, size_t bytes, int root = 0) = 0;
  // One value from each rank, in rank order, on every rank.
  virtual std::vector<uint64_t> all_gather(uint64_t value) = 0;
  // Rank 0 receives every rank's floats concatenated in rank order; the others an empty vector.
  virtual std::vector<float> gather_to_root(std::span<const float> mine) = 0;
  virtual void barrier() = 0;
  // Ends every process of the run with `code` (after this process printed why).
  [[noreturn]] virtual void abort(int code) = 0;

 protected:
  ProcessGroup(int rank, int size, int local_rank, int local_size)
      : rank_(rank), size_(size), local_rank_(local_rank), local_size_(local_size) {}

 private:
  int rank_, size_, local_rank_, local_size_;
};

}  // namespace dualflow
