// Module bookkeeping: registration, dotted-name traversal, state loading with all checks
// before any copy, in-place device/dtype moves, and ScopedParameters.
#include "models/module.h"

#include <fmt/format.h>

#include <unordered_map>
#include <unordered_set>

namespace dualflow {

std::string ModuleName::str() const { return module_ ? module_->describe() : name_; }

namespace {

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// Points `handle`'s TensorImpl at `fresh`'s storage and geometry while keeping its autodiff
// state (requires_grad, leaf-ness); every holder of the handle sees the change.
void rebind(const Tensor& handle, const Tensor& fresh) {
  TensorImpl& dst = *handle.impl();
  const TensorImpl& src = *fresh.impl();
  dst.storage = src.storage;
  dst.shape = src.shape;
  dst.strides = src.strides;
  dst.offset = src.offset;
  dst.dtype = src.dtype;
  if (dst.autograd) dst.autograd->grad = Tensor();
}

std::string list_or_none(const std::vector<std::string>& xs) { return fmt::format("[{}]", fmt::join(xs, ", ")); }

}  // namespace

void Module::check_new_name(const std::string& name) const {
  DF_CHECK(!name.empty() && name.find('.') == std::string::npos,
           "{}: a parameter, buffer or sub-module name must be non-empty and free of '.', got '{}'", describe(), name);
  auto taken = [&](const auto& list) {
    for (const auto& [n, _] : list)
      if (n == name) return true;
    return false;
  };
  DF_CHECK(!taken(params_) && !taken(buffers_) && !taken(children_), "{}: the name '{}' is registered twice",
           describe(), name);
}

Tensor Module::register_parameter(const std::string& name, const Tensor& value) {
  check_new_name(name);
  DF_CHECK(value.defined(), "{}: parameter '{}' is undefined", describe(), name);
  DF_CHECK(is_floating(value.dtype()), "{}: parameter '{}' must be floating, got {}", describe(), name,
           dtype_name(value.dtype()));
  // A leaf handle of its own (sharing the storage): the caller's tensor may carry a graph.
  Tensor p = value.detach().contiguous().detach();
  p.set_requires_grad(true);
  params_.emplace_back(name, p);
  return p;
}

Tensor Module::register_buffer(const std::string& name, const Tensor& value) {
  check_new_name(name);
  DF_CHECK(value.defined(), "{}: buffer '{}' is undefined", describe(), name);
  Tensor b = value.detach().contiguous().detach();
  buffers_.emplace_back(name, b);
  return b;
}

void Module::collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const {
  if (params)
    for (const auto& [n, t] : params_) out.emplace_back(join_name(prefix, n), t);
  if (buffers)
    for (const auto& [n, t] : buffers_) out.emplace_back(join_name(prefix, n), t);
  for (const auto& [n, m] : children_) m->collect(join_name(prefix, n), params, buffers, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, false, out);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, true, out);
  return out;
}

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect("", true, true, out);
  for (auto& [n, t] : out) t = t.detach();
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out{{"", this}};
  for (const auto& [n, m] : children_)
    for (auto& [sub, ptr] : m->named_modules()) out.emplace_back(sub.empty() ? n : n + "." + sub, ptr);
  return out;
}

Tensor Module::find(const std::string& dotted_name) const {
  NamedTensors all;
  collect("", true, true, all);
  for (const auto& [n, t] : all)
    if (n == dotted_name) return t;
  fail("{}: has no parameter or buffer named '{}'", describe(), dotted_name);
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [_, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [_, m] : children_) m->train(on);
}

template <class F>
void Module::for_each_tensor(F&& f) {
  for (auto& [_, t] : params_) f(t, true);
  for (auto& [_, t] : buffers_) f(t, false);
  for (auto& [_, m] : children_) m->for_each_tensor(f);
}

void Module::load_state_dict(const NamedTensors& state, bool strict) {
  NamedTensors own;
  collect("", true, true, own);
  std::unordered_map<std::string, size_t> given;
  std::vector<std::string> duplicated, missing, unexpected, mismatched;
  for (size_t i = 0; i < state.size(); ++i)
    if (!given.emplace(state[i].first, i).second) duplicated.push_back(state[i].first);
  std::unordered_set<std::string> own_names;
  std::vector<std::pair<Tensor, Tensor>> copies;  // (destination, source)
  for (const auto& [name, dst] : own) {
    own_names.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
      continue;
    }
    const Tensor& src = state[it->second].second;
    if (!src.defined()) {
      mismatched.push_back(fmt::format("{}: given an undefined tensor", name));
    } else if (src.shape() != dst.shape()) {
      mismatched.push_back(fmt::format("{}: shape expected {}, given {}", name, dst.shape().str(), src.shape().str()));
    } else if (src.dtype() != dst.dtype()) {
      mismatched.push_back(
          fmt::format("{}: dtype expected {}, given {}", name, dtype_name(dst.dtype()), dtype_name(src.dtype())));
    } else {
      copies.emplace_back(dst, src);
    }
  }
  for (const auto& [name, _] : state)
    if (!own_names.count(name)) unexpected.push_back(name);
  std::vector<std::string> problems;
  if (!duplicated.empty()) problems.push_back("names given twice: " + list_or_none(duplicated));
  if (strict && !missing.empty()) problems.push_back("missing: " + list_or_none(missing));
  if (strict && !unexpected.empty()) problems.push_back("unexpected: " + list_or_none(unexpected));
  if (!mismatched.empty()) problems.push_back("mismatched: " + list_or_none(mismatched));
  if (!problems.empty())
    fail("{}: load_state_dict refused, nothing was copied; {}", describe(), fmt::join(problems, "; "));
  NoGradGuard ng;
  for (const auto& [dst, src] : copies) copy_(dst, src);
}

Module& Module::to(Device device) {
  NoGradGuard ng;
  for_each_tensor([&](const Tensor& t, bool) {
    if (t.device() != device) rebind(t, t.detach().to(device));
  });
  return *this;
}

Module& Module::to(DType dtype) {
  DF_CHECK(is_floating(dtype), "{}: to(dtype) expects a floating dtype, got {}", describe(), dtype_name(dtype));
  NoGradGuard ng;
  for_each_tensor([&](const Tensor& t, bool) {
    if (is_floating(t.dtype()) && t.dtype() != dtype) rebind(t, t.detach().to(dtype));
  });
  return *this;
}

void Module::zero_grad() {
  for_each_tensor([](const Tensor& t, bool is_param) {
    if (is_param) t.zero_grad();
  });
}

void Module::set_requires_grad(bool on) {
  for_each_tensor([on](const Tensor& t, bool is_param) {
    if (is_param) t.set_requires_grad(on);
  });
}

// ---- Sequential ----

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const auto& m : items_) y = m->forward(y);
  return y;
}

// ---- ScopedParameters ----

ScopedParameters::ScopedParameters(Module& module, const NamedTensors& replacements) {
  NamedTensors own = module.named_parameters();
  std::unordered_map<std::string, Tensor> by_name(own.begin(), own.end());
  std::vector<std::pair<Tensor, Tensor>> swaps;
  for (const auto& [name, t] : replacements) {
    auto it = by_name.find(name);
    DF_CHECK(it != by_name.end(), "ScopedParameters: {} has no parameter named '{}'", module.describe(), name);
    const Tensor& p = it->second;
    DF_CHECK(t.defined() && t.shape() == p.shape() && t.dtype() == p.dtype() && t.device() == p.device(),
             "ScopedParameters: '{}' expects {} {} on {}, given {}", name, dtype_name(p.dtype()), p.shape().str(),
             p.device().str(),
             t.defined() ? fmt::format("{} {} on {}", dtype_name(t.dtype()), t.shape().str(), t.device().str())
                         : "undefined");
    swaps.emplace_back(p, t);
  }
  // Everything checked: swap in, remembering each parameter's own state.
  for (const auto& [p, t] : swaps) {
    saved_.emplace_back(p, *p.impl());
    *p.impl() = *t.impl();
  }
}

ScopedParameters::~ScopedParameters() {
  for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) *it->first.impl() = it->second;
}

}  // namespace dualflow
