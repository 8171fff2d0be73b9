// Limits shared by the engine's shapes and the backends' iteration layouts.
#pragma once

namespace dualflow {

// The most dims a tensor (and so a kernel's iteration space) has.
constexpr int kMaxDims = 8;

}  // namespace dualflow
