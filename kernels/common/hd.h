// Marks functions that compile for both host and device, so one definition of scalar math
// serves the CPU backend, the CUDA backend and the CPU tests that check both.
#pragma once
#if defined(__CUDACC__)
#define DF_HD __host__ __device__
#define DF_DEVICE __device__
#else
#define DF_HD
#define DF_DEVICE
#endif
