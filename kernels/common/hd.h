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

// Scalar math that inner loops call per element: always inlined, because a call left in a
// loop stops it from vectorising, and a translation unit with many loop instantiations can
// exhaust GCC's inlining budget before it reaches them.
#if defined(__CUDACC__)
#define DF_HD_INLINE __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define DF_HD_INLINE __attribute__((always_inline)) inline
#else
#define DF_HD_INLINE inline
#endif
