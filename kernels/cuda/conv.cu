// CUDA im2col / col2im: the data movement that turns a 2-D convolution into one strided-batched
// GEMM. One thread per column entry (im2col) or per image element (col2im, a gather over the
// windows that read it: no atomics, deterministic, the same sums as the CPU kernel).
#include "kernels/cuda/device_utils.cuh"

namespace dualflow::gpu {
namespace {

// cols[n, (c*kh + ky)*kw + kx, oy*out_w + ox] = x[n, c, oy*sh + ky*dh - ph, ox*sw + kx*dw - pw]
template <class T>
__global__ void im2col_kernel(const T* x, T* cols, ConvGeometry g, int64_t total) {
  const int64_t L = g.out_h * g.out_w;
  for (int64_t p = global_index(); p < total; p += grid_stride()) {
    const int64_t l = p % L, q = p / L;
    const int64_t kx = q % g.kw, ky = (q / g.kw) % g.kh, nc = q / (g.kw * g.kh);
    const int64_t oy = l / g.out_w, ox = l % g.out_w;
    const int64_t iy = oy * g.stride_h + ky * g.dil_h - g.pad_h;
    const int64_t ix = ox * g.stride_w + kx * g.dil_w - g.pad_w;
    cols[p] = (iy >= 0 && iy < g.h && ix >= 0 && ix < g.w) ? x[(nc * g.h + iy) * g.w + ix] : T(0.0f);
  }
}

template <class T>
__global__ void col2im_kernel(const T* cols, T* x, ConvGeometry g, int64_t total) {
  using C = typename Compute<T>::type;
  const int64_t L = g.out_h * g.out_w, kk = g.kh * g.kw;
  for (int64_t p = global_index(); p < total; p += grid_stride()) {
    const int64_t ix = p % g.w, iy = (p / g.w) % g.h, nc = p / (g.w * g.h);
    C acc = C(0);
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t ty = iy + g.pad_h - ky * g.dil_h;
      if (ty < 0 || ty % g.stride_h) continue;
      const int64_t oy = ty / g.stride_h;
      if (oy >= g.out_h) continue;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t tx = ix + g.pad_w - kx * g.dil_w;
        if (tx < 0 || tx % g.stride_w) continue;
        const int64_t ox = tx / g.stride_w;
        if (ox >= g.out_w) continue;
        acc += C(cols[(nc * kk + ky * g.kw + kx) * L + oy * g.out_w + ox]);
      }
    }
    x[p] = T(acc);
  }
}

void im2col(int device, DType t, const void* x, void* cols, const ConvGeometry& g) {
  const int64_t total = g.n * g.c * g.kh * g.kw * g.out_h * g.out_w;
  if (total <= 0) return;
  dispatch_floating("im2col", t, [&]<class T>() {
    im2col_kernel<T>
        <<<grid_for(total), kThreads, 0, stream(device)>>>(static_cast<const T*>(x), static_cast<T*>(cols), g, total);
    CUDA_CHECK_LAUNCH();
  });
}

void col2im(int device, DType t, const void* cols, void* x, const ConvGeometry& g) {
  const int64_t total = g.n * g.c * g.h * g.w;
  if (total <= 0) return;
  dispatch_floating("col2im", t, [&]<class T>() {
    col2im_kernel<T>
        <<<grid_for(total), kThreads, 0, stream(device)>>>(static_cast<const T*>(cols), static_cast<T*>(x), g, total);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void register_conv(Backend& b) {
  b.im2col = im2col;
  b.col2im = col2im;
}

}  // namespace dualflow::gpu
