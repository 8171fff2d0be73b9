// Which of OpenBLAS's CPU kernels the engine's GEMMs run on. A DYNAMIC_ARCH OpenBLAS picks its
// kernels from the CPU model number, and a release older than the CPU does not know the model:
// Debian 12's 0.3.21 takes a 2023 Xeon (family 6, model 207) for a Prescott and multiplies
// with SSE3 kernels at about a third of the speed its AVX-512 ones reach. The engine asks the
// CPU what it can run instead and, where OpenBLAS fell back to kernels without AVX2, switches
// it to SkylakeX (AVX-512 F/BW/DQ/VL) or Haswell (AVX2 + FMA) before the first GEMM.
// An OPENBLAS_CORETYPE set in the environment is the user's choice and is left alone.
#pragma once

#include <string>

namespace dualflow::cpu {

struct BlasKernelChoice {
  std::string detected;  // what OpenBLAS chose by itself ("Prescott", "SkylakeX", ...)
  std::string used;      // what the GEMMs run on now
  std::string reason;    // why they differ, or why they were left as detected
};

// Makes the choice on the first call (register_gemm calls it before any GEMM) and returns it.
const BlasKernelChoice& choose_blas_kernels();

}  // namespace dualflow::cpu
