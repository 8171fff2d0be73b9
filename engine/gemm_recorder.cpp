// GemmRecorder's registry of the live recorder and GemmShape's text form (see gemm_recorder.h).
#include "engine/gemm_recorder.h"

#include <fmt/format.h>

#include <atomic>

#include "engine/error.h"

namespace dualflow {
namespace {
std::atomic<GemmRecorder*> g_active{nullptr};
}

std::string GemmShape::str() const {
  std::string s = batch > 1 ? fmt::format("{}x", batch) : "";
  s += fmt::format("[{}x{}]{}{} @ [{}x{}]{}{}", m, k, trans_a ? "^T" : "", shared_a && batch > 1 ? " shared" : "", k, n,
                   trans_b ? "^T" : "", shared_b && batch > 1 ? " shared" : "");
  if (accumulate) s += " +C";
  if (bias) s += " +bias";
  return s + " " + std::string(dtype_name(dtype));
}

GemmRecorder::GemmRecorder() {
  GemmRecorder* expected = nullptr;
  DF_CHECK(g_active.compare_exchange_strong(expected, this),
           "GemmRecorder: another recorder is already alive; only one can count GEMMs at a time");
}

GemmRecorder::~GemmRecorder() { g_active.store(nullptr); }

void GemmRecorder::note(const GemmShape& shape) {
  GemmRecorder* r = g_active.load(std::memory_order_acquire);
  if (!r) return;
  std::lock_guard<std::mutex> lock(r->mutex_);
  ++r->counts_[shape];
}

std::map<GemmShape, int64_t> GemmRecorder::counts() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return counts_;
}

int64_t GemmRecorder::calls() const {
  int64_t n = 0;
  for (const auto& [shape, c] : counts()) n += c;
  return n;
}

double GemmRecorder::flops() const {
  double f = 0;
  for (const auto& [shape, c] : counts()) f += shape.flops() * double(c);
  return f;
}

}  // namespace dualflow
