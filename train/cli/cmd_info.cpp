// `dualflow info`: version, build options, BLAS, CUDA/cuDNN versions and the devices found.
#include <cblas.h>
#include <fmt/format.h>

#include "engine/dualflow.h"
#include "engine/threads.h"
#include "kernels/cpu/blas_kernels.h"
#include "kernels/cpu/sgemm_avx512.h"
#include "train/cli/commands.h"

namespace dualflow::cli {

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print version, build options, BLAS, CUDA/cuDNN and devices");
  cmd->callback([]() {
    fmt::print("dualflow 0.1.0\n");
#ifdef NDEBUG
    fmt::print("build:       release, C++20, {}\n", __VERSION__);
#else
    fmt::print("build:       debug, C++20, {}\n", __VERSION__);
#endif
    fmt::print("blas:        {}\n", openblas_get_config());
    const cpu::BlasKernelChoice& kernels = cpu::choose_blas_kernels();
    fmt::print("blas kernels: {} ({})\n", kernels.used, kernels.reason);
    fmt::print("f32 gemm:     {}\n", cpu::sgemm_avx512_reason());
    fmt::print("cpu threads: {}\n", cpu_threads());
    fmt::print("cuda:        {}\n", cuda_build_info());
    int n = cuda_device_count();
    fmt::print("devices:     cpu{}\n", n > 0 ? fmt::format(", {} CUDA device(s)", n) : std::string(""));
    for (int i = 0; i < n; ++i) fmt::print("  cuda:{}  {}\n", i, cuda_device_name(i));
  });
}

}  // namespace dualflow::cli
