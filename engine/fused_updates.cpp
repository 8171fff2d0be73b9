// The fused in-place optimizer updates (see fused_updates.h): operand checks, then one backend
// kernel per tensor under NoGradGuard.
#include "engine/fused_updates.h"

#include <fmt/format.h>

#include <initializer_list>
#include <utility>

#include "engine/autograd.h"
#include "engine/error.h"
#include "kernels/common/backend.h"

namespace dualflow {
namespace {

std::string describe(const Tensor& t) {
  return fmt::format("{} {} {} strides {}", dtype_name(t.dtype()), t.device().str(), t.shape().str(),
                     t.strides().str());
}

// The checks every fused update makes: `ts` are (role, tensor) with the parameter first.
void check_fused_operands(const char* op, std::initializer_list<std::pair<const char*, const Tensor*>> ts) {
  const Tensor& p = *ts.begin()->second;
  for (const auto& [role, t] : ts) {
    DF_CHECK(t->defined(), "{}: expected a defined {}, got an undefined tensor", op, role);
    DF_CHECK(t->dtype() == DType::f32 || t->dtype() == DType::f64, "{}: expected an f32 or f64 {}, got {}", op, role,
             describe(*t));
    DF_CHECK(t->is_contiguous(), "{}: expected a contiguous {}, got {}", op, role, describe(*t));
    DF_CHECK(t->dtype() == p.dtype() && t->device() == p.device() && t->shape() == p.shape(),
             "{}: expected the {} to match the param ({}), got {}", op, role, describe(p), describe(*t));
  }
}

}  // namespace

namespace optim {

void sgd_step_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SgdStepArgs& a) {
  if (a.momentum != 0.0)
    check_fused_operands("sgd_step", {{"param", &param}, {"grad", &grad}, {"momentum buffer", &momentum_buf}});
  else check_fused_operands("sgd_step", {{"param", &param}, {"grad", &grad}});
  if (param.numel() == 0) return;
  NoGradGuard no_grad;
  backend_for(param.device())
      .sgd_step(param.device().index, param.dtype(), param.raw_data(), grad.raw_data(),
                a.momentum != 0.0 ? momentum_buf.raw_data() : nullptr, param.numel(), a);
}

void adam_step_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const AdamStepArgs& a) {
  check_fused_operands("adam_step",
                       {{"param", &param}, {"grad", &grad}, {"exp_avg", &exp_avg}, {"exp_avg_sq", &exp_avg_sq}});
  if (param.numel() == 0) return;
  NoGradGuard no_grad;
  backend_for(param.device())
      .adam_step(param.device().index, param.dtype(), param.raw_data(), grad.raw_data(), exp_avg.raw_data(),
                 exp_avg_sq.raw_data(), param.numel(), a);
}

void lerp_(const Tensor& shadow, const Tensor& x, double weight) {
  check_fused_operands("lerp_", {{"shadow", &shadow}, {"source", &x}});
  if (shadow.numel() == 0) return;
  NoGradGuard no_grad;
  backend_for(shadow.device())
      .lerp_(shadow.device().index, shadow.dtype(), shadow.raw_data(), x.raw_data(), shadow.numel(), weight);
}

void scale_(const Tensor& t, double factor) {
  DF_CHECK(t.defined() && t.is_contiguous() && is_floating(t.dtype()),
           "scale_: expected a contiguous floating tensor, got {}",
           t.defined() ? describe(t) : std::string("undefined"));
  if (t.numel() == 0) return;
  NoGradGuard no_grad;
  ElemLayout l;
  l.ndim = 1;
  l.sizes[0] = t.numel();
  l.strides[0][0] = l.strides[1][0] = 1;
  backend_for(t.device())
      .unary(t.device().index, UnaryOp::MulScalar, t.dtype(), t.raw_data(), t.raw_data(), l, factor, 0.0);
}

}  // namespace optim

}  // namespace dualflow
