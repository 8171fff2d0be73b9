// Building a velocity model from a run spec (see velocity_model.h).
#include "train/velocity_model.h"

#include "train/methods/method.h"

namespace dualflow {

VelocityModel build_velocity_model(const FlowRunSpec& spec, Generator& init) {
  VelocityModel vm;
  vm.module = spec.model.build(init);
  vm.num_classes = spec.model.classes;
  vm.sample_shape = spec.data.sample_shape;
  vm.source = spec.data.source;
  std::shared_ptr<VelocityNetwork> net = vm.module;
  vm.network = [net](const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& labels) {
    return net->forward(x, t, h, labels);
  };
  vm.method = spec.method;
  spec.method->prepare_model(vm, spec);
  return vm;
}

Device model_device(const VelocityModel& model) {
  const std::vector<Tensor> ps = model.module->parameters();
  return ps.empty() ? Device::cpu() : ps.front().device();
}

}  // namespace dualflow
