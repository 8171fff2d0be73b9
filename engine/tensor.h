// Tensor: a cheap shared handle to storage + shape + strides + offset + dtype + device, with
// optional autodiff state (reverse-mode graph edge, leaf gradient, forward-mode tangents).
// Views share storage. The ops themselves are free functions declared in engine/ops.h.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/device.h"
#include "engine/shape.h"
#include "kernels/common/dtype.h"

namespace dualflow {

struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  Storage(size_t bytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

// Bytes held by tensor storages on a device: now and at the peak since the last reset (what a
// workload needs, independent of how much an allocator caches on top).
struct MemoryStats {
  int64_t current_bytes = 0;
  int64_t peak_bytes = 0;
};
MemoryStats memory_stats(Device device);
void reset_peak_memory(Device device);  // peak := current

struct AutogradMeta;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Dims shape;
  Dims strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;  // null for tensors autodiff never touched
};

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
  TensorOptions() = default;
  TensorOptions(DType t) : dtype(t) {}    // NOLINT: lets `zeros(s, DType::f64)` read naturally
  TensorOptions(Device d) : device(d) {}  // NOLINT
  TensorOptions(DType t, Device d) : dtype(t), device(d) {}
};

class Node;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // A fresh, uninitialised, contiguous tensor.
  static Tensor empty(const Shape& shape, TensorOptions opts = {});

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl_->shape; }
  const Dims& strides() const { return impl_->strides; }
  int64_t offset() const { return impl_->offset; }
  int dim() const { return impl_->shape.size(); }
  int64_t size(int64_t d) const;
  int64_t numel() const { return impl_->shape.numel(); }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device; }
  TensorOptions options() const { return TensorOptions(dtype(), device()); }
  bool is_contiguous() const;
  size_t element_size() const { return dtype_size(dtype()); }

  // Raw pointer to the first element (storage + offset); device memory for CUDA tensors.
  void* raw_data() const;
  template <class T>
  T* data() const {
    return static_cast<T*>(raw_data());
  }
  // The single value of a one-element tensor, as double (copies from the device if needed).
  double item() const;
  // All values in logical (row-major) order, converted to T.
  template <class T>
  std::vector<T> to_vector() const;

  // Views (share storage; differentiable).
  Tensor reshape(const Shape& shape) const;
  Tensor view(const Shape& shape) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor broadcast_to(const Shape& shape) const { return expand(shape); }
  Tensor squeeze(int64_t dim) const;
  Tensor squeeze() const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor t() const { return transpose(-2, -1); }

  // Copies and conversions.
  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(Device d) const;
  Tensor to(DType t) const;
  Tensor detach() const;

  // Autodiff.
  bool requires_grad() const;
  // Marks a leaf as requiring grad (in place); returns *this for chaining.
  const Tensor& set_requires_grad(bool on = true) const;
  Tensor grad() const;
  void zero_grad() const;
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const;
  // Reverse pass from this tensor; a scalar needs no seed gradient.
  void backward(const Tensor& seed = Tensor(), bool retain_graph = false, bool create_graph = false) const;

  std::string str() const;
  std::shared_ptr<TensorImpl>& impl() { return impl_; }
  const std::shared_ptr<TensorImpl>& impl() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Makes a view impl over the same storage with new geometry (no autodiff attached).
Tensor make_view(const Tensor& base, const Dims& shape, const Dims& strides, int64_t offset);

// Factories.
Tensor zeros(const Shape& shape, TensorOptions opts = {});
Tensor ones(const Shape& shape, TensorOptions opts = {});
Tensor full(const Shape& shape, double value, TensorOptions opts = {});
Tensor scalar_tensor(double value, TensorOptions opts = {});
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor arange(double start, double end, double step = 1.0, TensorOptions opts = {});
Tensor arange(int64_t n, TensorOptions opts = {});
Tensor linspace(double start, double end, int64_t steps, TensorOptions opts = {});
Tensor eye(int64_t n, TensorOptions opts = {});
Tensor from_vector(const std::vector<double>& values, const Shape& shape, TensorOptions opts = {});
Tensor from_vector(const std::vector<float>& values, const Shape& shape, TensorOptions opts = {});
Tensor from_vector(const std::vector<int64_t>& values, const Shape& shape, TensorOptions opts = DType::i64);

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Tensors under stable dotted names ("blocks.3.attn.qkv.weight"), in a fixed order: what a
// module's state, an optimizer's state and a safetensors file exchange.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

}  // namespace dualflow
