// Tensor basics: storage lifetime, geometry queries, element access, conversions between
// devices and dtypes, factories and printing.
#include "engine/tensor.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <sstream>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/ops/op_support.h"

namespace dualflow {

namespace {
constexpr int kTrackedDevices = 65;  // the CPU and up to 64 CUDA devices
struct ByteCounter {
  std::atomic<int64_t> current{0}, peak{0};
};
ByteCounter& counter(Device d) {
  static ByteCounter counters[kTrackedDevices];
  int i = d.is_cpu() ? 0 : 1 + d.index;
  return counters[std::clamp(i, 0, kTrackedDevices - 1)];
}
}  // namespace

Storage::Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
  data = backend_for(dev).alloc(dev.index, nbytes);
  ByteCounter& c = counter(dev);
  int64_t now = c.current.fetch_add(int64_t(nbytes)) + int64_t(nbytes);
  int64_t peak = c.peak.load();
  while (now > peak && !c.peak.compare_exchange_weak(peak, now)) {}
}
Storage::~Storage() {
  if (data) backend_for(device).free(device.index, data, bytes);
  counter(device).current.fetch_sub(int64_t(bytes));
}

MemoryStats memory_stats(Device device) {
  ByteCounter& c = counter(device);
  return {c.current.load(), c.peak.load()};
}

void reset_peak_memory(Device device) {
  ByteCounter& c = counter(device);
  c.peak.store(c.current.load());
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s.rfind("cuda:", 0) == 0) {
    try {
      size_t used = 0;
      int i = std::stoi(s.substr(5), &used);
      if (used == s.size() - 5 && i >= 0) return cuda(i);
    } catch (const std::exception&) {}
  }
  fail("device: expected 'cpu', 'cuda' or 'cuda:N', got '{}'", s);
}

bool cuda_available() { return cuda_backend() != nullptr && cuda_device_count() > 0; }

// A backend's table must fill every kernel the engine calls unconditionally; the optional ones
// (a null pointer sends the engine to composed ops) are listed as such in backend.h. Checked
// once per table, so a missing registration is an error naming the kernel, not a null call.
const Backend& check_backend_complete(const Backend& b) {
#define DF_REQUIRED_KERNELS(X)                                                                                         \
  X(alloc)                                                                                                             \
  X(free) X(copy_to_host) X(copy_from_host) X(copy_same_device) X(synchronize) X(fill) X(copy) X(unary)                \
      X(unary_backward) X(binary) X(where) X(reduce) X(rowwise) X(normalize_rows) X(gemm) X(index_select) X(index_add) \
          X(gather) X(scatter_add) X(im2col) X(col2im) X(random) X(arange) X(find_out_of_range) X(adam_step)           \
              X(sgd_step) X(lerp_)
#define DF_CHECK_KERNEL(NAME) \
  DF_CHECK(b.NAME != nullptr, "backend {}: kernel '{}' is not registered (kernels/{}/)", b.name, #NAME, b.name);
  DF_REQUIRED_KERNELS(DF_CHECK_KERNEL)
#undef DF_CHECK_KERNEL
#undef DF_REQUIRED_KERNELS
  return b;
}

void check_device(const Device& d) { backend_for(d); }
void synchronize(const Device& d) { backend_for(d).synchronize(d.index); }

const Backend& backend_for(const Device& d) {
  if (d.is_cpu()) {
    static const Backend& cpu = check_backend_complete(cpu_backend());
    return cpu;
  }
  const Backend* b = cuda_backend();
  DF_CHECK(b != nullptr, "device {}: this build has no CUDA backend (configure with -DDUALFLOW_CUDA=ON)", d.str());
  int n = cuda_device_count();
  DF_CHECK(d.index < n, "device {}: no such CUDA device ({} found)", d.str(), n);
  static const Backend& cuda = check_backend_complete(*b);
  return cuda;
}

Tensor Tensor::empty(const Shape& shape, TensorOptions opts) {
  // The strides multiply the dims with zeros counted as 1; they and the byte count must fit
  // even when a zero dim leaves nothing to allocate.
  int64_t extent = 1;
  for (int64_t d : shape) {
    DF_CHECK(d >= 0, "empty: negative dimension in shape {}", shape.str());
    DF_CHECK(!__builtin_mul_overflow(extent, std::max<int64_t>(d, 1), &extent) &&
                 extent <= std::numeric_limits<int64_t>::max() / int64_t(dtype_size(opts.dtype)),
             "empty: shape {} of {} has more bytes than fit in 63 bits (zero dims counted as 1, as in its strides)",
             shape.str(), dtype_name(opts.dtype));
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(size_t(shape.numel()) * dtype_size(opts.dtype), opts.device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = opts.dtype;
  return Tensor(std::move(impl));
}

Tensor make_view(const Tensor& base, const Dims& shape, const Dims& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl()->storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim("size", d, dim())]; }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // no element to be out of place (strides of [3,0,2] vary by maker)
  int64_t expect = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expect) return false;
    expect *= shape()[i];
  }
  return true;
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl_->storage->data) + impl_->offset * int64_t(element_size());
}

double Tensor::item() const {
  DF_CHECK(defined(), "item: undefined tensor");
  DF_CHECK(numel() == 1, "item: expected a tensor with one element, got shape {}", shape().str());
  return to_vector<double>()[0];
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  DF_CHECK(defined(), "to_vector: undefined tensor");
  DType want;
  if constexpr (std::is_same_v<T, float>) want = DType::f32;
  else if constexpr (std::is_same_v<T, double>) want = DType::f64;
  else if constexpr (std::is_same_v<T, int64_t>) want = DType::i64;
  else if constexpr (std::is_same_v<T, int32_t>) want = DType::i32;
  else if constexpr (std::is_same_v<T, uint8_t>) want = DType::b8;
  else static_assert(sizeof(T) == 0, "to_vector: unsupported element type");
  NoGradGuard ng;
  Tensor c = detach().to(want).to(Device::cpu()).contiguous();
  std::vector<T> out(size_t(c.numel()));
  if (!out.empty()) std::memcpy(out.data(), c.raw_data(), out.size() * sizeof(T));
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

Tensor Tensor::to(Device d) const {
  if (d == device()) return *this;
  Tensor src = contiguous();
  Tensor out = Tensor::empty(shape(), TensorOptions(dtype(), d));
  size_t bytes = size_t(numel()) * element_size();
  if (bytes) {
    if (src.device().is_cpu()) backend_for(d).copy_from_host(d.index, out.raw_data(), src.raw_data(), bytes);
    else if (d.is_cpu())
      backend_for(src.device()).copy_to_host(src.device().index, out.raw_data(), src.raw_data(), bytes);
    else {
      Tensor host = src.to(Device::cpu());
      return host.to(d);
    }
  }
  Tensor x = *this;
  return record(
      "to_device", {&x}, out, [from = device()](const Tensor& g, NeedsGrad) -> Grads { return {g.to(from)}; },
      [d](const Tangents& t, const Tensor&) { return t[0].defined() ? t[0].to(d) : Tensor(); },
      TangentBatch::Broadcast);
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  Tensor out = Tensor::empty(shape(), TensorOptions(t, device()));
  ElemLayout l = detail::make_layout("to", out, {this});
  detail::be(*this).copy(device().index, dtype(), raw_data(), t, out.raw_data(), l);
  if (!is_floating(t) || !is_floating(dtype())) return out;
  Tensor x = *this;
  return record(
      "to_dtype", {&x}, out, [from = dtype()](const Tensor& g, NeedsGrad) -> Grads { return {g.to(from)}; },
      [t](const Tangents& tg, const Tensor&) { return tg[0].defined() ? tg[0].to(t) : Tensor(); },
      TangentBatch::Broadcast);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), options());
  ElemLayout l = detail::make_layout("clone", out, {this});
  detail::be(*this).copy(device().index, dtype(), raw_data(), dtype(), out.raw_data(), l);
  Tensor x = *this;
  return record(
      "clone", {&x}, out, [](const Tensor& g, NeedsGrad) -> Grads { return {g}; },
      [](const Tangents& t, const Tensor&) { return t[0]; }, TangentBatch::Broadcast);
}

// ---- factories ----

Tensor full(const Shape& shape, double value, TensorOptions opts) {
  Tensor out = Tensor::empty(shape, opts);
  if (out.numel() == 0) return out;
  ElemLayout l = detail::make_layout("full", out, {});
  backend_for(opts.device).fill(opts.device.index, opts.dtype, out.raw_data(), l, value);
  return out;
}
Tensor zeros(const Shape& shape, TensorOptions opts) { return full(shape, 0.0, opts); }
Tensor ones(const Shape& shape, TensorOptions opts) { return full(shape, 1.0, opts); }
Tensor scalar_tensor(double value, TensorOptions opts) { return full(Shape{}, value, opts); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), t.options()); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), t.options()); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, t.options()); }

Tensor arange(double start, double end, double step, TensorOptions opts) {
  DF_CHECK(step != 0.0, "arange: step must be non-zero, got 0");
  DF_CHECK(std::isfinite(start) && std::isfinite(end), "arange: bounds must be finite, got {} and {}", start, end);
  double count = std::ceil((end - start) / step);
  int64_t n = count > 0 ? int64_t(count) : 0;
  Tensor out = Tensor::empty(Shape{n}, opts);
  if (n) backend_for(opts.device).arange(opts.device.index, opts.dtype, out.raw_data(), n, start, step);
  return out;
}
Tensor arange(int64_t n, TensorOptions opts) { return arange(0.0, double(n), 1.0, opts); }

Tensor linspace(double start, double end, int64_t steps, TensorOptions opts) {
  DF_CHECK(steps >= 0, "linspace: steps must be >= 0, got {}", steps);
  Tensor out = Tensor::empty(Shape{steps}, opts);
  double step = steps > 1 ? (end - start) / double(steps - 1) : 0.0;
  if (steps) backend_for(opts.device).arange(opts.device.index, opts.dtype, out.raw_data(), steps, start, step);
  return out;
}

Tensor eye(int64_t n, TensorOptions opts) {
  Tensor out = zeros(Shape{n, n}, opts);
  Tensor diag = make_view(out, Shape{n}, Dims{n + 1}, 0);
  fill_(diag, 1.0);
  return out;
}

template <class T>
static Tensor from_host(const std::vector<T>& values, const Shape& shape, DType host_dtype, TensorOptions opts) {
  DF_CHECK(int64_t(values.size()) == shape.numel(), "from_vector: {} values do not fill shape {} ({} elements)",
           values.size(), shape.str(), shape.numel());
  Tensor host = Tensor::empty(shape, TensorOptions(host_dtype, Device::cpu()));
  if (!values.empty()) std::memcpy(host.raw_data(), values.data(), values.size() * sizeof(T));
  return host.to(opts.dtype).to(opts.device);
}
Tensor from_vector(const std::vector<double>& v, const Shape& s, TensorOptions o) {
  return from_host(v, s, DType::f64, o);
}
Tensor from_vector(const std::vector<float>& v, const Shape& s, TensorOptions o) {
  return from_host(v, s, DType::f32, o);
}
Tensor from_vector(const std::vector<int64_t>& v, const Shape& s, TensorOptions o) {
  return from_host(v, s, DType::i64, o);
}

// ---- printing ----

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(shape=" << shape().str() << ", dtype=" << dtype_name(dtype()) << ", device=" << device().str();
  if (requires_grad()) os << ", requires_grad";
  os << ")\n";
  std::vector<double> v = to_vector<double>();
  const bool integral = is_integral(dtype());
  auto fmt_one = [&](double x) { return integral ? fmt::format("{}", int64_t(x)) : fmt::format("{:.6g}", x); };
  // Nested brackets; long dims show their first and last 3 entries.
  std::function<void(int, int64_t, int)> rec = [&](int d, int64_t base, int indent) {
    if (dim() == 0) {
      os << fmt_one(v[0]);
      return;
    }
    int64_t n = shape()[d];
    int64_t inner = 1;
    for (int i = d + 1; i < dim(); ++i) inner *= shape()[i];
    os << "[";
    for (int64_t i = 0; i < n; ++i) {
      if (n > 8 && i == 3) {
        os << (d + 1 == dim() ? "..., " : "...\n" + std::string(size_t(indent + 1), ' '));
        i = n - 3;
      }
      if (d + 1 == dim()) os << fmt_one(v[size_t(base + i)]);
      else rec(d + 1, base + i * inner, indent + 1);
      if (i + 1 < n) os << (d + 1 == dim() ? ", " : ",\n" + std::string(size_t(indent + 1), ' '));
    }
    os << "]";
  };
  rec(0, 0, 0);
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace dualflow
