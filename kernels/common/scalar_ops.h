// The scalar formulas of every elementwise op and of its first derivative, written once for
// host and device. The CPU backend, the CUDA backend and the CPU tests all use these.
#pragma once
#include <cmath>
#include <cstdint>

#include <type_traits>

#include "kernels/common/half.h"
#include "kernels/common/hd.h"

namespace dualflow {

// The op lists, once: the enums below and every backend's dispatch switch expand them, so an
// op added here reaches both backends. `a` and `b` are per-call scalar parameters of unary ops
// (exponent, bounds, ...); AddScalar/MulScalar are y = x + a and y = x * a.
#define DF_FOR_EACH_UNARY_OP(X)                                                                                    \
  X(Neg)                                                                                                           \
  X(Exp) X(Log) X(Log1p) X(Expm1) X(Sqrt) X(Rsqrt) X(Abs) X(Sign) X(Sin) X(Cos) X(Tanh) X(Sigmoid) X(Relu) X(Silu) \
      X(GeluTanh) X(GeluErf) X(Softplus) X(PowScalar) X(Clamp) X(Reciprocal) X(Square) X(AddScalar) X(MulScalar)   \
          X(LogicalNot)
// Eq..LogicalOr produce bool.
#define DF_FOR_EACH_BINARY_OP(X) \
  X(Add)                         \
  X(Sub) X(Mul) X(Div) X(Pow) X(Minimum) X(Maximum) X(Eq) X(Ne) X(Lt) X(Le) X(Gt) X(Ge) X(LogicalAnd) X(LogicalOr)

#define DF_ENUM_ENTRY(NAME) NAME,
enum class UnaryOp : uint8_t { DF_FOR_EACH_UNARY_OP(DF_ENUM_ENTRY) kCount };
enum class BinaryOp : uint8_t { DF_FOR_EACH_BINARY_OP(DF_ENUM_ENTRY) kCount };
#undef DF_ENUM_ENTRY

constexpr bool binary_is_comparison(BinaryOp op) {
  return op == BinaryOp::Eq || op == BinaryOp::Ne || op == BinaryOp::Lt || op == BinaryOp::Le || op == BinaryOp::Gt ||
         op == BinaryOp::Ge || op == BinaryOp::LogicalAnd || op == BinaryOp::LogicalOr;
}

// The unary ops defined for integer and bool tensors; the engine refuses the others for them
// and the backends instantiate only these for integer dtypes.
constexpr bool unary_allows_integers(UnaryOp op) {
  return op == UnaryOp::Neg || op == UnaryOp::Abs || op == UnaryOp::Sign || op == UnaryOp::Square ||
         op == UnaryOp::AddScalar || op == UnaryOp::MulScalar || op == UnaryOp::Clamp || op == UnaryOp::LogicalNot;
}

// The type elementwise kernels compute a T in: 16-bit floats in float, bool as int32, the rest
// as themselves; and how a computed value is stored back (bool: nonzero), alike on both backends.
template <class T>
struct Compute {
  using type = T;
};
template <>
struct Compute<bf16_t> {
  using type = float;
};
template <>
struct Compute<f16_t> {
  using type = float;
};
template <>
struct Compute<bool> {
  using type = int32_t;
};

template <class T, class C>
DF_HD_INLINE T store_as(C v) {
  if constexpr (std::is_same_v<T, bool>) return v != C(0);
  else return T(v);
}

namespace scalar {

using std::cos;
using std::erf;
using std::exp;
using std::expm1;
using std::log;
using std::log1p;
using std::pow;
using std::sin;
using std::sqrt;
using std::tanh;

// e^(x - n ln2) for an integer-valued n with x - n ln2 in [-ln2/2, ln2/2]: the reduced
// argument r (ln2 in two parts, so that n ln2 is exact enough) and a degree-6 polynomial in it.
// The common part of exp_f32 and exp_bounded_f32.
DF_HD_INLINE float exp_reduced_f32(float x, float n) {
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187e-06f;
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}
// exp for f32 without branches or library calls, so CPU loops vectorise and both backends
// round alike: 2^n * p(r) with r = x - n ln2 in [-ln2/2, ln2/2] and a degree-6 polynomial
// (max relative error ~2 ulp). f64 keeps the library exp (the gradient checks run in f64).
DF_HD_INLINE float exp_f32(float x) {
  float xc = x < -87.3f ? -87.3f : (x > 88.72f ? 88.72f : x);
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  float n = (xc * 1.44269504088896341f + shifter) - shifter;
  const float p = exp_reduced_f32(xc, n);
  int32_t ni = int32_t(n);
  float extra = ni > 127 ? 2.0f : 1.0f;  // 2^128 is not a normal float: scale in two steps
  ni = ni > 127 ? 127 : ni;
  float y = p * bits_float(uint32_t(ni + 127) << 23) * extra;
  y = x > 88.7228f ? bits_float(0x7f800000u) : y;
  y = x < -103.9f ? 0.0f : y;
  return x != x ? x : y;
}
// exp for f32 on [-87, 89] only, for callers that bound the argument themselves (the logistic
// function, whose value saturates long before): exp_f32's polynomial without its clamps and
// overflow cases. 2^n comes from the bits of the rounded sum, not a conversion to an integer:
// n + 127 in the exponent field, a normal float for n <= 127 and infinity at n = 128 (x above
// 88.38, where e^x is within a factor 1.5 of the largest float), so the result is then infinite.
DF_HD_INLINE float exp_bounded_f32(float x) {
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float shifted = x * 1.44269504088896341f + shifter;
  const float p = exp_reduced_f32(x, shifted - shifter);
  // The low bits of `shifted` hold n + 2^22 (n in [-126, 128]); n + 127 shifted into the
  // exponent field is 2^n.
  return p * bits_float((float_bits(shifted) - float_bits(shifter) + 127u) << 23);
}
template <class T>
DF_HD_INLINE T fast_exp(T x) {
  return exp(x);
}
template <>
DF_HD_INLINE float fast_exp<float>(float x) {
  return exp_f32(x);
}

// tanh for f32, branch-free like exp_f32 so that GELU's loops vectorise (the library tanhf, a
// call per element, took a fifth of a DiT training step): the odd Taylor polynomial to x^17
// below |x| = 0.625, where 1 - 2 / (e^2|x| + 1) would cancel, and that form above it (e^2|x|
// saturates to inf, giving 1). Within 2 ulp of the library tanh; f64 keeps the library's.
DF_HD_INLINE float tanh_f32(float x) {
  const float ax = x < 0.0f ? -x : x;
  const float big = 1.0f - 2.0f / (exp_f32(2.0f * ax) + 1.0f);
  const float x2 = x * x;
  float p = 6404582.0f / 10854718875.0f;
  p = p * x2 - 929569.0f / 638512875.0f;
  p = p * x2 + 21844.0f / 6081075.0f;
  p = p * x2 - 1382.0f / 155925.0f;
  p = p * x2 + 62.0f / 2835.0f;
  p = p * x2 - 17.0f / 315.0f;
  p = p * x2 + 2.0f / 15.0f;
  p = p * x2 - 1.0f / 3.0f;
  const float small = x * (1.0f + x2 * p);
  const float y = ax < 0.625f ? small : (x < 0.0f ? -big : big);
  return x != x ? x : y;
}
template <class T>
DF_HD_INLINE T fast_tanh(T x) {
  return tanh(x);
}
template <>
DF_HD_INLINE float fast_tanh<float>(float x) {
  return tanh_f32(x);
}

// sin and cos for f32 without branches or library calls, so that CPU loops vectorise (the
// library's sinf/cosf, a call per element, took 8% of sampling the toy2d network: its time
// embeddings). x = k pi/2 + r with k rounded to nearest and r reduced in f64 against pi/2 split
// into three parts (the first two with 36 bits, so k times each is exact for |k| < 2^17), then
// Cephes' minimax polynomials for sin and cos on [-pi/4, pi/4] and the quadrant k (+1 for cos).
// Within 1.5 ulp of the exact values for |x| <= kTrigFastLimit; beyond it, and for inf and nan, the CPU
// kernels recompute the element with the library (kernels/cpu/elementwise.cpp), and CUDA keeps
// its own sinf/cosf.
inline constexpr float kTrigFastLimit = 65536.0f;
DF_HD_INLINE float sin_cos_f32(float x, int quarter_turns) {
  const double xd = x;
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  const double k = (xd * 0.6366197723675814 + shifter) - shifter;
  const double rd = ((xd - k * 1.5707963267923333) - k * 2.5633441515839558e-12) - k * 1.0562999066987428e-23;
  const float r = float(rd), r2 = r * r;
  const float sin_r = r + r * r2 * ((-1.9515295891e-4f * r2 + 8.3321608736e-3f) * r2 - 1.6666654611e-1f);
  const float cos_r =
      1.0f - 0.5f * r2 + r2 * r2 * ((2.443315711809948e-5f * r2 - 1.388731625493765e-3f) * r2 + 4.166664568298827e-2f);
  const int32_t quadrant = int32_t(k > -1e6 && k < 1e6 ? k : 0.0) + quarter_turns;  // nan and inf: any
  const float y = (quadrant & 1) ? cos_r : sin_r;
  return x == 0.0f && quarter_turns == 0 ? x : ((quadrant & 2) ? -y : y);  // sin keeps the sign of zero
}
// sin(x) for quarter_turns = 0, cos(x) = sin(x + pi/2) for 1; f32 on the host takes sin_cos_f32.
template <class T>
DF_HD_INLINE T sin_or_cos(T x, int quarter_turns) {
  if constexpr (std::is_same_v<T, float>) {
#ifdef __CUDA_ARCH__
    return quarter_turns ? cosf(x) : sinf(x);
#else
    return sin_cos_f32(x, quarter_turns);
#endif
  } else {
    return quarter_turns ? cos(x) : sin(x);
  }
}

template <class T>
DF_HD_INLINE T sigmoid(T x) {
  if constexpr (std::is_same_v<T, float>) {
    // 1 / (1 + e^-x) with -x clamped to [-87, 89]: below -87, e^-x is under 2^-125 and the sum
    // rounds to 1 anyway; above 88.38, e^-x is infinite (exp_bounded_f32) and the value 0. A NaN
    // passes through the clamps and the arithmetic. No select follows the quotient: the callers'
    // products with it (SiLU's derivative) are then fused alike in vector loops and in their
    // scalar tails, which keeps their bits equal.
    float a = -x;
    a = a < -87.0f ? -87.0f : a;
    a = a > 89.0f ? 89.0f : a;
    return 1.0f / (1.0f + exp_bounded_f32(a));
  }
  // Written to avoid overflow of exp for large |x|.
  if (x >= T(0)) {
    T e = exp(-x);
    return T(1) / (T(1) + e);
  }
  T e = exp(x);
  return e / (T(1) + e);
}
template <class T>
DF_HD_INLINE T softplus(T x) {
  // log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|)
  T ax = x < T(0) ? -x : x;
  return (x > T(0) ? x : T(0)) + log1p(exp(-ax));
}
template <class T>
DF_HD_INLINE T gelu_tanh_inner(T x) {
  const T k0 = T(0.7978845608028654);  // sqrt(2/pi)
  const T k1 = T(0.044715);
  return k0 * (x + k1 * x * x * x);
}

// y = f(x)
template <class T>
DF_HD_INLINE T unary(UnaryOp op, T x, T a, T b) {
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Exp: return fast_exp(x);
    case UnaryOp::Log: return log(x);
    case UnaryOp::Log1p: return log1p(x);
    case UnaryOp::Expm1: return expm1(x);
    case UnaryOp::Sqrt: return sqrt(x);
    case UnaryOp::Rsqrt: return T(1) / sqrt(x);
    case UnaryOp::Abs: return x < T(0) ? -x : x;
    case UnaryOp::Sign: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case UnaryOp::Sin: return sin_or_cos(x, 0);
    case UnaryOp::Cos: return sin_or_cos(x, 1);
    case UnaryOp::Tanh: return fast_tanh(x);
    case UnaryOp::Sigmoid: return sigmoid(x);
    case UnaryOp::Relu: return x > T(0) ? x : T(0);
    case UnaryOp::Silu: return x * sigmoid(x);
    case UnaryOp::GeluTanh: return T(0.5) * x * (T(1) + fast_tanh(gelu_tanh_inner(x)));
    case UnaryOp::GeluErf: return T(0.5) * x * (T(1) + erf(x * T(0.7071067811865476)));
    case UnaryOp::Softplus: return softplus(x);
    case UnaryOp::PowScalar: return pow(x, a);
    case UnaryOp::Clamp: return x < a ? a : (x > b ? b : x);
    case UnaryOp::Reciprocal: return T(1) / x;
    case UnaryOp::Square: return x * x;
    case UnaryOp::AddScalar: return x + a;
    case UnaryOp::MulScalar: return x * a;
    case UnaryOp::LogicalNot: return x == T(0) ? T(1) : T(0);
    default: return x;
  }
}

// dy/dx = f'(x); the fused backward kernels compute g * f'(x) in one pass.
template <class T>
DF_HD_INLINE T unary_derivative(UnaryOp op, T x, T a, T b) {
  switch (op) {
    case UnaryOp::Neg: return T(-1);
    case UnaryOp::Exp: return fast_exp(x);
    case UnaryOp::Log: return T(1) / x;
    case UnaryOp::Log1p: return T(1) / (T(1) + x);
    case UnaryOp::Expm1: return exp(x);
    case UnaryOp::Sqrt: return T(0.5) / sqrt(x);
    case UnaryOp::Rsqrt: return T(-0.5) / (x * sqrt(x));
    case UnaryOp::Abs: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case UnaryOp::Sign: return T(0);
    case UnaryOp::Sin: return sin_or_cos(x, 1);
    case UnaryOp::Cos: return -sin_or_cos(x, 0);
    case UnaryOp::Tanh: {
      T t = fast_tanh(x);
      return T(1) - t * t;
    }
    case UnaryOp::Sigmoid: {
      T s = sigmoid(x);
      return s * (T(1) - s);
    }
    case UnaryOp::Relu: return x > T(0) ? T(1) : T(0);
    case UnaryOp::Silu: {
      T s = sigmoid(x);
      return s * (T(1) + x * (T(1) - s));
    }
    case UnaryOp::GeluTanh: {
      const T k0 = T(0.7978845608028654), k1 = T(0.044715);
      T th = fast_tanh(gelu_tanh_inner(x));
      T du = k0 * (T(1) + T(3) * k1 * x * x);
      return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * du;
    }
    case UnaryOp::GeluErf: {
      T cdf = T(0.5) * (T(1) + erf(x * T(0.7071067811865476)));
      T pdf = T(0.3989422804014327) * exp(T(-0.5) * x * x);
      return cdf + x * pdf;
    }
    case UnaryOp::Softplus: return sigmoid(x);
    case UnaryOp::PowScalar: return a == T(0) ? T(0) : a * pow(x, a - T(1));
    case UnaryOp::Clamp: return (x >= a && x <= b) ? T(1) : T(0);
    case UnaryOp::Reciprocal: return T(-1) / (x * x);
    case UnaryOp::Square: return T(2) * x;
    case UnaryOp::AddScalar: return T(1);
    case UnaryOp::MulScalar: return a;
    default: return T(0);
  }
}

template <class T>
DF_HD_INLINE T binary(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::Add: return x + y;
    case BinaryOp::Sub: return x - y;
    case BinaryOp::Mul: return x * y;
    case BinaryOp::Div: return x / y;
    case BinaryOp::Pow: return pow(x, y);
    case BinaryOp::Minimum: return (x != x) ? x : (y < x ? y : x);  // NaN propagates
    case BinaryOp::Maximum: return (x != x) ? x : (y > x ? y : x);
    default: return x;
  }
}

template <class T>
DF_HD_INLINE bool compare(BinaryOp op, T x, T y) {
  switch (op) {
    case BinaryOp::Eq: return x == y;
    case BinaryOp::Ne: return x != y;
    case BinaryOp::Lt: return x < y;
    case BinaryOp::Le: return x <= y;
    case BinaryOp::Gt: return x > y;
    case BinaryOp::Ge: return x >= y;
    case BinaryOp::LogicalAnd: return (x != T(0)) && (y != T(0));
    case BinaryOp::LogicalOr: return (x != T(0)) || (y != T(0));
    default: return false;
  }
}

}  // namespace scalar
}  // namespace dualflow
