// The processes of one run (see process_group.h): a group of one, and the MPI world.
#include "train/parallel/process_group.h"

#include <fmt/format.h>

#include <climits>
#include <cstdlib>
#include <mutex>

#include "engine/error.h"

#if DUALFLOW_HAVE_MPI
#include <mpi.h>
#endif

namespace dualflow {

namespace {

class SingleProcess final : public ProcessGroup {
 public:
  SingleProcess() : ProcessGroup(0, 1, 0, 1) {}
  void weighted_sum(float* data, int64_t n, std::span<const double> weights) override {
    DF_CHECK(weights.size() == 1, "weighted_sum: one weight per rank, got {} for 1", weights.size());
    if (weights[0] != 1.0)
      for (int64_t i = 0; i < n; ++i) data[i] = float(weights[0] * double(data[i]));
  }
  void broadcast(void*, size_t, int) override {}
  std::vector<uint64_t> all_gather(uint64_t value) override { return {value}; }
  std::vector<float> gather_to_root(std::span<const float> mine) override { return {mine.begin(), mine.end()}; }
  void barrier() override {}
  [[noreturn]] void abort(int code) override { std::exit(code); }
};

// The number of processes the launcher started, from the variables it sets (1 when none).
int launched_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"})
    if (const char* v = std::getenv(name)) return std::max(1, std::atoi(v));
  return 1;
}

#if DUALFLOW_HAVE_MPI

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail("{}: {}", what, std::string(text, size_t(len)));
}

int as_count(int64_t n, const char* what) {
  DF_CHECK(n >= 0 && n <= INT_MAX, "{}: {} elements exceed one MPI message", what, n);
  return int(n);
}

class MpiWorld final : public ProcessGroup {
 public:
  static std::shared_ptr<MpiWorld> start() {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    DF_CHECK(!finalized, "MPI was already finalised in this process; it cannot start again");
    if (!initialized) {
      int provided = 0;
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    }
    int rank = 0, size = 1, local = 0, local_size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm node;
    check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node),
              "MPI_Comm_split_type");
    MPI_Comm_rank(node, &local);
    MPI_Comm_size(node, &local_size);
    MPI_Comm_free(&node);
    char host[MPI_MAX_PROCESSOR_NAME] = {};
    int len = 0;
    MPI_Get_processor_name(host, &len);
    return std::shared_ptr<MpiWorld>(new MpiWorld(rank, size, local, local_size, std::string(host, size_t(len))));
  }
  ~MpiWorld() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }

  std::string describe() const override { return ProcessGroup::describe() + " on " + host_; }

  void weighted_sum(float* data, int64_t n, std::span<const double> weights) override {
    const int world = size(), me = rank();
    DF_CHECK(int(weights.size()) == world, "weighted_sum: one weight per rank, got {} for {}", weights.size(), world);
    as_count(n, "weighted_sum");
    // Reduce-scatter by hand: rank d sums chunk d of every rank's data in rank order, then
    // every rank gathers all chunks. Chunk boundaries are fixed by n and the world size alone.
    std::vector<int> counts(static_cast<size_t>(world)), starts(static_cast<size_t>(world));
    for (int r = 0; r < world; ++r) {
      starts[size_t(r)] = int(n * r / world);
      counts[size_t(r)] = int(n * (r + 1) / world) - starts[size_t(r)];
    }
    const int mine = counts[size_t(me)];
    std::vector<int> recv_counts(static_cast<size_t>(world), mine), recv_starts(static_cast<size_t>(world));
    for (int r = 0; r < world; ++r) recv_starts[size_t(r)] = r * mine;
    received_.resize(size_t(world) * size_t(mine));
    check_mpi(MPI_Alltoallv(data, counts.data(), starts.data(), MPI_FLOAT, received_.data(), recv_counts.data(),
                            recv_starts.data(), MPI_FLOAT, MPI_COMM_WORLD),
              "weighted_sum (MPI_Alltoallv)");
    // Rank by rank over the whole chunk (the loop vectorises), so each element still sums
    // 0 + w_0 x_0 + w_1 x_1 + ... in that order.
    sums_.assign(size_t(mine), 0.0);
    for (int r = 0; r < world; ++r) {
      const double w = weights[size_t(r)];
      const float* x = received_.data() + size_t(r) * size_t(mine);
      for (int i = 0; i < mine; ++i) sums_[size_t(i)] += w * double(x[i]);
    }
    float* out = data + starts[size_t(me)];
    for (int i = 0; i < mine; ++i) out[i] = float(sums_[size_t(i)]);
    check_mpi(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data, counts.data(), starts.data(), MPI_FLOAT,
                             MPI_COMM_WORLD),
              "weighted_sum (MPI_Allgatherv)");
  }

  void broadcast(void* data, size_t bytes, int root) override {
    auto* p = static_cast<char*>(data);
    for (size_t done = 0; done < bytes;) {
      const int part = int(std::min<size_t>(bytes - done, size_t(1) << 30));
      check_mpi(MPI_Bcast(p + done, part, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast (MPI_Bcast)");
      done += size_t(part);
    }
  }

  std::vector<uint64_t> all_gather(uint64_t value) override {
    std::vector<uint64_t> all(static_cast<size_t>(size()));
    check_mpi(MPI_Allgather(&value, 1, MPI_UINT64_T, all.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD),
              "all_gather (MPI_Allgather)");
    return all;
  }

  std::vector<float> gather_to_root(std::span<const float> mine) override {
    const int count = as_count(int64_t(mine.size()), "gather_to_root");
    std::vector<int> counts(static_cast<size_t>(size())), starts(static_cast<size_t>(size()));
    check_mpi(MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, MPI_COMM_WORLD),
              "gather_to_root (MPI_Gather)");
    std::vector<float> all;
    if (rank() == 0) {
      int64_t total = 0;
      for (int r = 0; r < size(); ++r) {
        starts[size_t(r)] = as_count(total, "gather_to_root");
        total += counts[size_t(r)];
      }
      all.resize(size_t(as_count(total, "gather_to_root")));
    }
    check_mpi(MPI_Gatherv(mine.data(), count, MPI_FLOAT, all.data(), counts.data(), starts.data(), MPI_FLOAT, 0,
                          MPI_COMM_WORLD),
              "gather_to_root (MPI_Gatherv)");
    return all;
  }

  void barrier() override { check_mpi(MPI_Barrier(MPI_COMM_WORLD), "barrier (MPI_Barrier)"); }

  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
  }

 private:
  MpiWorld(int rank, int size, int local, int local_size, std::string host)
      : ProcessGroup(rank, size, local, local_size), host_(std::move(host)) {}
  std::string host_;
  std::vector<float> received_;
  std::vector<double> sums_;
};

#endif

std::mutex g_join_mutex;
std::weak_ptr<ProcessGroup> g_joined;

}  // namespace

std::string ProcessGroup::describe() const { return fmt::format("rank {} of {}", rank_, size_); }

std::shared_ptr<ProcessGroup> ProcessGroup::single() { return std::make_shared<SingleProcess>(); }

std::shared_ptr<ProcessGroup> ProcessGroup::join() {
  std::lock_guard lock(g_join_mutex);
  if (std::shared_ptr<ProcessGroup> alive = g_joined.lock()) return alive;
  const int launched = launched_world_size();
  std::shared_ptr<ProcessGroup> group;
  if (launched <= 1) {
    group = std::make_shared<SingleProcess>();
  } else {
#if DUALFLOW_HAVE_MPI
    group = MpiWorld::start();
    DF_CHECK(group->size() == launched,
             "the launcher started {} processes but MPI counts {} in this one's world: mpirun and the MPI dualflow was "
             "built with do not match (use the mpirun of the Open MPI it was built with)",
             launched, group->size());
#else
    fail(
        "this process is one of {} started by an MPI launcher, but this dualflow was built without MPI; install "
        "Open MPI (tools/setup.sh installs libopenmpi-dev and openmpi-bin) and configure the build again",
        launched);
#endif
  }
  g_joined = group;
  return group;
}

}  // namespace dualflow
