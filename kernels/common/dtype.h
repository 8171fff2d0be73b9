// Element types known to every layer: the enum, its size, its name, and a compile-time map
// from enum to C++ storage type. Lives in kernels/ because kernels dispatch on it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kernels/common/half.h"

namespace dualflow {

enum class DType : uint8_t { f32, f64, bf16, f16, i64, i32, b8 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::i64: return 8;
    case DType::i32: return 4;
    case DType::b8: return 1;
  }
  return 0;
}

constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i64: return "i64";
    case DType::i32: return "i32";
    case DType::b8: return "bool";
  }
  return "?";
}

constexpr bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16;
}
constexpr bool is_integral(DType t) { return t == DType::i64 || t == DType::i32 || t == DType::b8; }

template <DType D>
struct dtype_traits;
template <>
struct dtype_traits<DType::f32> {
  using type = float;
  using compute = float;
};
template <>
struct dtype_traits<DType::f64> {
  using type = double;
  using compute = double;
};
template <>
struct dtype_traits<DType::bf16> {
  using type = bf16_t;
  using compute = float;
};
template <>
struct dtype_traits<DType::f16> {
  using type = f16_t;
  using compute = float;
};
template <>
struct dtype_traits<DType::i64> {
  using type = int64_t;
  using compute = int64_t;
};
template <>
struct dtype_traits<DType::i32> {
  using type = int32_t;
  using compute = int32_t;
};
template <>
struct dtype_traits<DType::b8> {
  using type = bool;
  using compute = bool;
};

// Calls f.template operator()<T>() with T the storage type of the runtime dtype `t`: the one
// dtype switch of the kernels that handle every dtype.
template <class F>
void dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::f32: f.template operator()<float>(); break;
    case DType::f64: f.template operator()<double>(); break;
    case DType::bf16: f.template operator()<bf16_t>(); break;
    case DType::f16: f.template operator()<f16_t>(); break;
    case DType::i64: f.template operator()<int64_t>(); break;
    case DType::i32: f.template operator()<int32_t>(); break;
    case DType::b8: f.template operator()<bool>(); break;
  }
}

}  // namespace dualflow
