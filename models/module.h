// Module: the base of every network. A module owns named parameters (leaf tensors that
// require grad), buffers (state that is saved but not trained) and sub-modules, and exposes
// them under PyTorch-style dotted names ("blocks.3.attn.qkv.weight") in registration order,
// so a state dict maps 1:1 onto a safetensors file and onto a PyTorch model's names.
// Also here: ModuleList (numbered children), Sequential (a chain of one-tensor modules) and
// ScopedParameters (run a module with other tensors standing in for its parameters).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/dualflow.h"

namespace dualflow {

class Module;

// Who an error message names: a module (described only when a message is built, since
// describe() formats a string and the checks that take a name run on every forward pass) or a
// fixed name.
class ModuleName {
 public:
  ModuleName(const Module& module) : module_(&module) {}  // NOLINT: implicit by design
  ModuleName(const char* name) : name_(name) {}           // NOLINT
  ModuleName(const std::string& name) : name_(name) {}    // NOLINT
  std::string str() const;

 private:
  const Module* module_ = nullptr;
  std::string name_;
};

class Module {
 public:
  virtual ~Module() = default;
  // Parameters are shared handles: a copy would alias the same weights, so modules are
  // neither copied nor moved; hold them by value where built or by std::shared_ptr.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // "Linear(in=3, out=4)": names the module in error messages.
  virtual std::string describe() const { return type_name_; }
  const std::string& type_name() const { return type_name_; }

  // ---- what the module holds, recursively, in registration order (own entries first) ----
  NamedTensors named_parameters() const;  // the live leaf tensors (an optimizer's handles)
  NamedTensors named_buffers() const;
  // Parameters then buffers of each module, depth first, detached views of the live storage.
  NamedTensors state_dict() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const { return children_; }
  // Every module with its dotted path, this one first (path "").
  std::vector<std::pair<std::string, const Module*>> named_modules() const;
  // The parameter or buffer at a dotted name; throws naming the module if there is none.
  Tensor find(const std::string& dotted_name) const;
  int64_t num_parameters() const;

  // ---- mode and state ----
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Checks every name, shape and dtype first and copies only if all match; otherwise throws
  // listing missing and unexpected names and mismatches, leaving the module untouched.
  // strict=false tolerates missing and unexpected names (shapes and dtypes must still match).
  void load_state_dict(const NamedTensors& state, bool strict = true);
  // Moves (converts) every parameter and buffer in place: the handles held by layers and
  // optimizers see the new storage, parameters stay leaves that require grad, and any
  // accumulated gradient is dropped. to(DType) converts floating tensors only.
  Module& to(Device device);
  Module& to(DType dtype);
  void zero_grad();
  // Freezes (false) or unfreezes every parameter.
  void set_requires_grad(bool on);

 protected:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  // Registers `value` (floating) as a parameter: a leaf that requires grad. Returns the handle
  // the layer keeps; it stays valid through to() and load_state_dict().
  Tensor register_parameter(const std::string& name, const Tensor& value);
  Tensor register_buffer(const std::string& name, const Tensor& value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    check_new_name(name);
    DF_CHECK(module != nullptr, "{}: sub-module '{}' is null", describe(), name);
    children_.emplace_back(name, module);
    return module;
  }

 private:
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool params, bool buffers, NamedTensors& out) const;
  template <class F>
  void for_each_tensor(F&& f);

  std::string type_name_;
  bool training_ = true;
  NamedTensors params_;
  NamedTensors buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// A module that maps one tensor to one tensor (layers, activations, norms): what Sequential
// chains. Modules with more inputs derive from Module and define their own forward(...).
class UnaryModule : public Module {
 public:
  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }

 protected:
  explicit UnaryModule(std::string type_name) : Module(std::move(type_name)) {}
};

// A numbered sequence of sub-modules ("blocks.0", "blocks.1", ...) of one type.
template <class M = Module>
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  const std::shared_ptr<M>& push_back(std::shared_ptr<M> module) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(module)));
    return items_.back();
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  const std::shared_ptr<M>& operator[](size_t i) const { return items_.at(i); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

// Applies its one-tensor children in order; numbered like torch.nn.Sequential, so a
// parameter-free step (an activation) still takes an index ("mlp.0", "mlp.2").
class Sequential : public UnaryModule {
 public:
  Sequential() : UnaryModule("Sequential") {}
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    auto m = register_module(std::to_string(items_.size()), std::move(module));
    items_.push_back(m);
    return m;
  }
  size_t size() const { return items_.size(); }
  const std::shared_ptr<UnaryModule>& operator[](size_t i) const { return items_.at(i); }
  Tensor forward(const Tensor& x) override;

 protected:
  explicit Sequential(std::string type_name) : UnaryModule(std::move(type_name)) {}

 private:
  std::vector<std::shared_ptr<UnaryModule>> items_;
};

// While alive, the named parameters of `module` read as the given tensors (same shape, dtype
// and device): forward-mode derivatives with respect to parameters (pass the dual tensors jvp
// hands to its function), or evaluation at other weights (an EMA copy) without copying.
// A reverse pass through a graph built in the scope must run before the scope ends: the
// saved operands are the parameters' handles, which get their own tensors back on exit.
class ScopedParameters {
 public:
  ScopedParameters(Module& module, const NamedTensors& replacements);
  ~ScopedParameters();
  ScopedParameters(const ScopedParameters&) = delete;
  ScopedParameters& operator=(const ScopedParameters&) = delete;

 private:
  std::vector<std::pair<Tensor, TensorImpl>> saved_;
};

}  // namespace dualflow

// Formats as the name itself, so checks pass a ModuleName where they passed a string.
template <>
struct fmt::formatter<dualflow::ModuleName> : fmt::formatter<std::string> {
  auto format(const dualflow::ModuleName& name, fmt::format_context& ctx) const {
    return fmt::formatter<std::string>::format(name.str(), ctx);
  }
};
