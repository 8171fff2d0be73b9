// Timing for the benchmarks: the median wall time of a callable after warm-up (and the spread of
// the per-step times), with the device synchronised around each sample so asynchronous (CUDA)
// work is counted.
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
inline double median_ms(const std::function<void()>& fn, const Device& dev, int samples, int inner = 1,
                        int warmup = 2) {
  for (int i = 0; i < warmup; ++i) fn();
  synchronize(dev);
  std::vector<double> t;
  for (int s = 0; s < samples; ++s) {
    double t0 = now_ms();
    for (int i = 0; i < inner; ++i) fn();
    synchronize(dev);
    t.push_back((now_ms() - t0) / inner);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// The distribution of per-step wall times: what a workload benchmark reports beside the median,
// so that a noisy run (a shared machine) shows itself in min/max and the quartiles.
struct StepTimes {
  double median_ms = 0, min_ms = 0, max_ms = 0, q1_ms = 0, q3_ms = 0;
  int steps = 0;
};

// Times `steps` calls of `fn` one by one after `warmup` untimed calls.
inline StepTimes time_steps(const std::function<void()>& fn, const Device& dev, int steps, int warmup) {
  for (int i = 0; i < warmup; ++i) fn();
  synchronize(dev);
  std::vector<double> t;
  for (int s = 0; s < steps; ++s) {
    double t0 = now_ms();
    fn();
    synchronize(dev);
    t.push_back(now_ms() - t0);
  }
  std::sort(t.begin(), t.end());
  // Quantiles by linear interpolation between order statistics (numpy's default).
  auto quantile = [&](double q) {
    const double pos = q * double(t.size() - 1);
    const size_t lo = size_t(pos), hi = std::min(lo + 1, t.size() - 1);
    return t[lo] + (pos - double(lo)) * (t[hi] - t[lo]);
  };
  return StepTimes{quantile(0.5), t.front(), t.back(), quantile(0.25), quantile(0.75), steps};
}

}  // namespace dualflow::cli
