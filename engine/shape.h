// Dims: a fixed-capacity list of up to kMaxDims extents or strides, kept inline so that
// creating a tensor never allocates for its shape (tiny ops stay cheap).
#pragma once
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "engine/error.h"
#include "kernels/common/limits.h"

namespace dualflow {

class Dims {
 public:
  Dims() = default;
  Dims(std::initializer_list<int64_t> v) { assign(v.begin(), v.end()); }
  explicit Dims(const std::vector<int64_t>& v) { assign(v.begin(), v.end()); }
  template <class It>
  Dims(It b, It e) {
    assign(b, e);
  }

  int size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t& operator[](int i) { return d_[i]; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t* begin() { return d_; }
  int64_t* end() { return d_ + n_; }
  const int64_t* begin() const { return d_; }
  const int64_t* end() const { return d_ + n_; }
  int64_t back() const { return d_[n_ - 1]; }
  void push_back(int64_t v) {
    DF_CHECK(n_ < kMaxDims, "tensor: at most {} dims are supported, got more", kMaxDims);
    d_[n_++] = v;
  }
  void insert(int pos, int64_t v) {
    DF_CHECK(n_ < kMaxDims, "tensor: at most {} dims are supported, got more", kMaxDims);
    for (int i = n_; i > pos; --i) d_[i] = d_[i - 1];
    d_[pos] = v;
    ++n_;
  }
  void erase(int pos) {
    for (int i = pos; i + 1 < n_; ++i) d_[i] = d_[i + 1];
    --n_;
  }
  void resize(int n, int64_t fill = 0) {
    DF_CHECK(n <= kMaxDims, "tensor: at most {} dims are supported, got {}", kMaxDims, n);
    for (int i = n_; i < n; ++i) d_[i] = fill;
    n_ = n;
  }
  int64_t numel() const {
    int64_t p = 1;
    for (int i = 0; i < n_; ++i) p *= d_[i];
    return p;
  }
  std::vector<int64_t> vec() const { return std::vector<int64_t>(begin(), end()); }
  // These dims with `v` in front: [v, ...] (K tangent directions of a tensor of this shape).
  Dims with_leading(int64_t v) const {
    Dims r = *this;
    r.insert(0, v);
    return r;
  }
  bool operator==(const Dims& o) const { return n_ == o.n_ && std::equal(begin(), end(), o.begin()); }
  bool operator!=(const Dims& o) const { return !(*this == o); }
  std::string str() const { return fmt::format("[{}]", fmt::join(begin(), end(), ",")); }

 private:
  template <class It>
  void assign(It b, It e) {
    n_ = 0;
    for (; b != e; ++b) push_back(int64_t(*b));
  }
  int64_t d_[kMaxDims] = {};
  int n_ = 0;
};

using Shape = Dims;

// Contiguous (row-major) strides of a shape.
inline Dims contiguous_strides(const Dims& shape) {
  Dims s;
  s.resize(shape.size());
  int64_t acc = 1;
  for (int i = shape.size() - 1; i >= 0; --i) {
    s[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return s;
}

// Wraps a possibly negative dim index into [0, ndim); `op` names the caller in errors.
inline int wrap_dim(const char* op, int64_t dim, int ndim) {
  int64_t lim = std::max(ndim, 1);
  DF_CHECK(dim >= -lim && dim < lim, "{}: dim {} is out of range for a tensor of {} dims", op, dim, ndim);
  return int(dim < 0 ? dim + lim : dim);
}

}  // namespace dualflow

template <>
struct fmt::formatter<dualflow::Dims> : fmt::formatter<std::string> {
  template <class Ctx>
  auto format(const dualflow::Dims& d, Ctx& ctx) const {
    return fmt::formatter<std::string>::format(d.str(), ctx);
  }
};
