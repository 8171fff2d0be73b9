// model.kind = "mlp": MLPVelocity on 2-D points, with model.width and model.depth.
#include "models/mlp_velocity.h"
#include "train/networks/network_registry.h"

namespace dualflow {

NetworkEntry mlp_network_entry() {
  NetworkEntry e;
  e.kind = "mlp";
  e.description = "the MLP velocity network, for 2-D data";
  e.data_kind = DataKind::Points2D;
  e.add_keys = [](ConfigSchema& s) {
    s.add_int("model.width", 256, "hidden width of the MLP").at_least(1);
    s.add_int("model.depth", 4, "hidden layers of the MLP").at_least(1);
  };
  e.parse = [](const RunConfig& c, const NetworkContext& context) -> NetworkBuilder {
    MLPVelocityConfig m;
    m.data_dim = context.data.sample_shape[0];
    m.width = c.get_int("model.width");
    m.depth = c.get_int("model.depth");
    m.use_h = context.takes_interval;
    m.conditions = context.conditions;
    m.out_dim = m.data_dim * context.heads;
    m.time_scale = context.time_scale;
    return [m](Generator& init) { return std::make_shared<MLPVelocity>(m, init); };
  };
  return e;
}

}  // namespace dualflow
