// The CPU kernels give the same bits at any thread count: the pool only decides which thread
// computes which outputs, never the order in which one output is summed. Checked on the ops
// whose split depends on their size (random draws, column sums, narrow GEMMs that stay with
// OpenBLAS, wide ones on the engine's kernel, elementwise ops over broadcast views), each at
// sizes on both sides of its threshold for going parallel.
#include <catch2/catch.hpp>

#include <cstring>
#include <functional>
#include <vector>

#include "engine/dualflow.h"
#include "kernels/cpu/parallel.h"

using namespace dualflow;

namespace {

// Every result of `compute`, as raw floats, at the given thread count.
std::vector<std::vector<float>> results_at(int threads, const std::function<std::vector<Tensor>()>& compute) {
  const int before = cpu::num_threads();
  cpu::set_num_threads(threads);
  std::vector<std::vector<float>> out;
  for (const Tensor& t : compute()) out.push_back(t.contiguous().to_vector<float>());
  cpu::set_num_threads(before);
  return out;
}

std::vector<Tensor> kernels_under_test() {
  Generator g(11);
  std::vector<Tensor> r;
  for (int64_t n : {1000, 2048, 3001, 40000}) {  // random draws: serial below 2,048 values
    r.push_back(randn({n}, g));
    r.push_back(rand({n}, g));
  }
  Tensor wide = randn({1024, 256}, g);
  r.push_back(sum(wide, {0}));                    // a bias gradient: 256 sums of 1,024 rows
  r.push_back(sum(randn({3, 500, 40}, g), {1}));  // sums with an outer dim, split mid-row
  r.push_back(sum(randn({8, 16}, g), {0}));       // too small to split
  Tensor narrow = randn({256, 2}, g);
  r.push_back(matmul(wide, narrow));                   // 2 columns: OpenBLAS, split by rows
  r.push_back(matmul(randn({1024, 2}, g).t(), wide));  // a weight gradient: 2 rows, k = 1,024, split by columns
  r.push_back(matmul(randn({300, 64}, g), randn({64, 300}, g)));  // the engine's own GEMM
  r.push_back(silu(randn({40000}, g)));
  r.push_back(silu(randn({5000}, g)));
  r.push_back(add(randn({64, 1, 300}, g), randn({1, 128, 300}, g)));  // broadcast both ways
  return r;
}

}  // namespace

TEST_CASE("CPU kernels: the same bits at 1, 2 and 3 threads", "[kernels][pool]") {
  const auto one = results_at(1, kernels_under_test);
  for (int threads : {2, 3}) {
    const auto many = results_at(threads, kernels_under_test);
    REQUIRE(many.size() == one.size());
    for (size_t i = 0; i < one.size(); ++i) {
      INFO("result " << i << " at " << threads << " threads");
      REQUIRE(many[i].size() == one[i].size());
      CHECK(std::memcmp(many[i].data(), one[i].data(), one[i].size() * sizeof(float)) == 0);
    }
  }
}
