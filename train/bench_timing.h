// Timing for the benchmarks: the median wall time of a callable after warm-up, with the device
// synchronised around each sample so asynchronous (CUDA) work is counted.
#pragma once
#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "engine/dualflow.h"

namespace dualflow::cli {

inline double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median wall time of `fn` in ms over `samples` samples of `inner` calls each, after `warmup` calls.
inline double median_ms(const std::function<void()>& fn, const Device& dev, int samples, int inner = 1, int warmup = 2) {
  const Backend& be = backend_for(dev);
  for (int i = 0; i < warmup; ++i) fn();
  be.synchronize(dev.index);
  std::vector<double> t;
  for (int s = 0; s < samples; ++s) {
    double t0 = now_ms();
    for (int i = 0; i < inner; ++i) fn();
    be.synchronize(dev.index);
    t.push_back((now_ms() - t0) / inner);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace dualflow::cli
