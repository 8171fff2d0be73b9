// Shared machinery of the op files: argument checks with the op's name in every message,
// broadcasting, and building the coalesced ElemLayout a kernel iterates over.
#pragma once
#include <initializer_list>

#include "engine/ops.h"
#include "kernels/common/backend.h"

namespace dualflow::detail {

inline const Backend& be(const Tensor& t) { return backend_for(t.device()); }
inline int dev_index(const Tensor& t) { return t.device().index; }

void check_defined(const char* op, const Tensor& t, const char* what = "input");
void check_same_device(const char* op, const Tensor& a, const Tensor& b);
void check_same_dtype(const char* op, const Tensor& a, const Tensor& b);
void check_floating(const char* op, const Tensor& t);
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);
// Strides of `t` viewed as broadcast to `shape` (0 along broadcast dims).
Dims broadcast_strides(const char* op, const Tensor& t, const Shape& shape);
// Layout over `shape` for operand 0 = out and operands 1.. = inputs (broadcast), coalesced.
ElemLayout make_layout(const char* op, const Tensor& out, std::initializer_list<const Tensor*> inputs);

std::vector<int> normalize_dims(const char* op, const std::vector<int64_t>& dims, int ndim);

// Whether a rule runs outside any differentiation of itself (no tape, no visible forward
// level): then it may use saved values and fused kernels; otherwise it must compute through
// differentiable engine ops so its own derivatives exist.
bool rule_is_plain();

// A tangent expanded to `shape`; a batch of tangents (jvp_batched, [K, ...]) keeps its leading
// dim and is expanded to [K, ...shape].
Tensor fit(const Tensor& t, const Shape& shape);

// Normalized dims moved one place right, for a rule that reduces a batch of tangents [K, ...].
std::vector<int64_t> dims_after_batch(const std::vector<int>& dims);

}  // namespace dualflow::detail
