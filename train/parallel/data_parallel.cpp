// Data-parallel training over a process group (see data_parallel.h).
#include "train/parallel/data_parallel.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "engine/autograd.h"
#include "engine/dualflow.h"
#include "train/parallel/nccl_exchange.h"

namespace dualflow {

namespace {

using Clock = std::chrono::steady_clock;

// FNV-1a over the bytes of every tensor, in order: equal on two ranks exactly when their
// parameters are bit for bit the same (up to a 2^-64 collision).
uint64_t checksum(const NamedTensors& tensors) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& [name, t] : tensors) {
    const Tensor host = t.detach().to(Device::cpu()).contiguous();
    const auto* bytes = static_cast<const unsigned char*>(host.raw_data());
    const size_t n = size_t(host.numel()) * host.element_size();
    for (size_t i = 0; i < n; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  }
  return h;
}

void set_grad(const Tensor& param, const Tensor& grad) {
  DF_CHECK(param.impl()->autograd, "data parallel: parameter of shape {} does not require grad",
           param.shape().str());
  param.impl()->autograd->grad = grad;
}

}  // namespace

DataParallel::DataParallel(std::shared_ptr<ProcessGroup> group, Device device, DataParallelOptions options)
    : group_(std::move(group)), device_(device), options_(options) {
  DF_CHECK(group_ != nullptr, "DataParallel: no process group");
  DF_CHECK(options_.sync_check_every >= 0, "run.sync_check_every must be >= 0, got {}", options_.sync_check_every);
  DF_CHECK(options_.bucket_floats > 0, "DataParallel: bucket size must be > 0");
  shard_ = make_batch_shard(group_->rank(), group_->size(), options_.global_batch);
  weights_ = shard_.weights(options_.global_batch);
  // NCCL needs a GPU of its own for each rank; ranks that share one exchange through the host.
  // Every rank must choose alike (NCCL's set-up is collective), so they agree on it first.
  if (device_.is_cuda() && group_->distributed()) {
    const bool can = NcclExchange::built() && cuda_device_count() >= group_->local_size();
    const std::vector<uint64_t> votes = group_->all_gather(can ? 1 : 0);
    if (std::all_of(votes.begin(), votes.end(), [](uint64_t v) { return v == 1; }))
      nccl_ = NcclExchange::create(*group_, device_.index);
  }
}

DataParallel::~DataParallel() = default;

std::string DataParallel::transport() const {
  if (!group_->distributed()) return "none (one process)";
  if (nccl_) return "NCCL";
  if (device_.is_cuda())
    return NcclExchange::built() ? "MPI through host memory (ranks share a GPU, which NCCL refuses)"
                                 : "MPI through host memory (built without NCCL)";
  return "MPI, rank-order sums";
}

void DataParallel::combine(const NamedTensors& params, std::vector<double>& scalars) {
  const auto started = Clock::now();
  // Which parameters have a gradient here rides with the scalars: one that has none on any
  // rank stays without one, so the optimizer skips it as one process would (a zero gradient
  // would still decay it and advance its step count).
  const size_t own = scalars.size();
  for (const auto& [name, p] : params) scalars.push_back(p.grad().defined() ? 1.0 : 0.0);
  if (nccl_) combine_on_device(params, scalars);
  else combine_on_host(params, scalars);
  for (size_t i = 0; i < params.size(); ++i)
    if (scalars[own + i] == 0.0) set_grad(params[i].second, Tensor());
  scalars.resize(own);
  combine_seconds_ += std::chrono::duration<double>(Clock::now() - started).count();
}

void DataParallel::combine_on_host(const NamedTensors& params, std::vector<double>& scalars) {
  NoGradGuard no_grad;
  // Parameters [first, last) of `params` fill the bucket; the scalars ride with the last one.
  auto exchange = [&](size_t first, size_t last, bool with_scalars) {
    bucket_.clear();
    for (size_t i = first; i < last; ++i) {
      const Tensor& p = params[i].second;
      const Tensor g = p.grad();
      const size_t at = bucket_.size(), n = size_t(p.numel());
      bucket_.resize(at + n, 0.0f);  // an undefined gradient counts as zeros
      if (!g.defined()) continue;
      DF_CHECK(g.dtype() == DType::f32, "data parallel: the gradient of '{}' is {}; gradients are exchanged as f32",
               params[i].first, dtype_name(g.dtype()));
      const Tensor host = g.detach().to(Device::cpu()).contiguous();
      std::memcpy(bucket_.data() + at, host.raw_data(), n * sizeof(float));
    }
    const size_t grads_end = bucket_.size();
    if (with_scalars)
      for (double v : scalars) bucket_.push_back(float(v));
    group_->weighted_sum(bucket_.data(), int64_t(bucket_.size()), weights_);
    size_t at = 0;
    for (size_t i = first; i < last; ++i) {
      const Tensor& p = params[i].second;
      Tensor g = Tensor::empty(p.shape(), TensorOptions(DType::f32));
      std::memcpy(g.raw_data(), bucket_.data() + at, size_t(p.numel()) * sizeof(float));
      at += size_t(p.numel());
      set_grad(p, device_.is_cpu() ? g : g.to(device_));
    }
    if (with_scalars)
      for (size_t k = 0; k < scalars.size(); ++k) scalars[k] = double(bucket_[grads_end + k]);
  };
  size_t first = 0;
  int64_t filled = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t n = params[i].second.numel();
    if (filled > 0 && filled + n > options_.bucket_floats) {
      exchange(first, i, false);
      first = i;
      filled = 0;
    }
    filled += n;
  }
  exchange(first, params.size(), true);
}

void DataParallel::combine_on_device(const NamedTensors& params, std::vector<double>& scalars) {
  NoGradGuard no_grad;
  // One flat buffer on the GPU, scaled by this rank's weight and summed by NCCL; each gradient
  // becomes a view of its part of the sum.
  std::vector<Tensor> flat_parts;
  for (const auto& [name, p] : params) {
    const Tensor g = p.grad();
    DF_CHECK(!g.defined() || g.dtype() == DType::f32,
             "data parallel: the gradient of '{}' is {}; gradients are exchanged as f32", name,
             dtype_name(g.dtype()));
    flat_parts.push_back(g.defined() ? g.detach().reshape({-1}) : zeros({p.numel()}, TensorOptions(DType::f32, device_)));
  }
  Tensor flat = mul(cat(flat_parts, 0), weights_[size_t(group_->rank())]).contiguous();
  nccl_->sum(static_cast<float*>(flat.raw_data()), flat.numel());
  int64_t at = 0;
  for (const auto& [name, p] : params) {
    set_grad(p, flat.narrow(0, at, p.numel()).reshape(p.shape()));
    at += p.numel();
  }
  std::vector<float> s(scalars.begin(), scalars.end());
  group_->weighted_sum(s.data(), int64_t(s.size()), weights_);
  for (size_t k = 0; k < s.size(); ++k) scalars[k] = double(s[k]);
}

void DataParallel::broadcast_tensor(const Tensor& t) {
  if (t.numel() == 0) return;
  const size_t bytes = size_t(t.numel()) * t.element_size();
  if (t.device().is_cpu()) {
    DF_CHECK(t.is_contiguous(), "data parallel: broadcast of a non-contiguous tensor {}", t.shape().str());
    group_->broadcast(t.raw_data(), bytes, 0);
  } else if (nccl_ && t.is_contiguous()) {
    nccl_->broadcast(t.raw_data(), bytes, 0);
  } else {
    Tensor host = t.detach().to(Device::cpu()).contiguous();
    group_->broadcast(host.raw_data(), bytes, 0);
    NoGradGuard no_grad;
    copy_(t, host.to(t.device()));
  }
}

void DataParallel::broadcast_state(const NamedTensors& state, const std::vector<Generator*>& generators,
                                   int64_t& step) {
  if (!group_->distributed()) return;
  for (const auto& [name, t] : state) broadcast_tensor(t);
  std::vector<uint64_t> words{uint64_t(step)};
  for (const Generator* g : generators) {
    words.push_back(g->seed());
    words.push_back(g->offset());
  }
  group_->broadcast(words.data(), words.size() * sizeof(uint64_t), 0);
  step = int64_t(words[0]);
  for (size_t i = 0; i < generators.size(); ++i) generators[i]->set_state({words[1 + 2 * i], words[2 + 2 * i]});
}

void DataParallel::wait_for_all() { group_->barrier(); }

void DataParallel::check_in_sync(const NamedTensors& params, int64_t step) {
  if (!group_->distributed()) return;
  const std::vector<uint64_t> sums = group_->all_gather(checksum(params));
  std::vector<int> differing;
  for (size_t r = 1; r < sums.size(); ++r)
    if (sums[r] != sums[0]) differing.push_back(int(r));
  if (differing.empty()) return;
  fail(
      "train: step {}: the parameters of rank{} {} differ from rank 0's (checksums {:016x} against {:016x}): the "
      "processes are out of sync, so training stops here rather than go on with diverged models (run.sync_check_every "
      "= {})",
      step, differing.size() == 1 ? "" : "s", fmt::join(differing, ", "), sums[size_t(differing[0])], sums[0],
      options_.sync_check_every);
}

Device rank_device(const Device& configured, const ProcessGroup& group) {
  if (!configured.is_cuda() || !group.distributed()) return configured;
  const int count = cuda_device_count();
  DF_CHECK(count > 0, "run.device = \"{}\": {} sees no CUDA device", configured.str(), group.describe());
  return Device::cuda(group.local_rank() % count);
}

}  // namespace dualflow
