// A velocity model: the network a run spec describes, with what sampling and the likelihood
// need from it (the velocity in flow-matching time, the source, the data end of time) and the
// method that trained it.
#pragma once
#include <memory>

#include "models/velocity_network.h"
#include "train/cfm.h"
#include "train/run_spec.h"

namespace dualflow {

class Method;

struct VelocityModel {
  std::shared_ptr<VelocityNetwork> module;
  // The module's own output: a velocity, the noise for method "score", or for "meanflow" the
  // average velocity u(z, r, t) called as network(z, t, h = t - r, labels) in MeanFlow's time.
  VelocityNet network;
  // The velocity in flow-matching time (noise at t = 0, data at t_end), what the ODE solvers
  // and the likelihood integrate (set by the method's prepare_model).
  VelocityNet net;
  Shape sample_shape;  // one sample, without the batch dim
  int64_t num_classes = 0;
  double t_end = 1.0;       // the data end of time (method.t_max)
  double source_std = 1.0;  // the source at t = 0 is N(0, source_std^2 I) (sigma_max on the VE path)
  std::string source = kGaussianSource;  // or a 2-D dataset (data.source): a data-to-data flow
  std::shared_ptr<const Method> method;
};

// The configured network with fresh weights from `init`, prepared by the run's method.
VelocityModel build_velocity_model(const FlowRunSpec& spec, Generator& init);

// The device the model's weights are on.
Device model_device(const VelocityModel& model);

}  // namespace dualflow
