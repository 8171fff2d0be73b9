// The network registry: model.kind -> the network's config keys and a parse of them into a
// builder. Adding a network is one file that returns its NetworkEntry plus one line in
// network_registry.cpp's list; a program can also add one with register_network before it
// parses a config.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "train/run_spec.h"

namespace dualflow {

// What a run asks of its network, besides the network's own keys.
struct NetworkContext {
  const DataSpec& data;         // sample shape and the set's name (for messages)
  int64_t classes = 0;          // labels to condition on (0: none)
  bool takes_interval = false;  // MeanFlow's h = t - r as a further input
  double time_scale = 1000;     // model.time_scale
  int64_t conditions = 0;       // further scalar inputs after h (iMF's guidance scale and interval)
  int64_t heads = 1;            // outputs shaped like a sample, side by side (iMF: u and v, 2)
};

struct NetworkEntry {
  std::string kind;         // the model.kind value
  std::string description;  // "the MLP velocity network", for help and messages
  DataKind data_kind = DataKind::Points2D;
  // Adds the network's own keys (model.<...>) to the schema; may be empty.
  std::function<void(ConfigSchema&)> add_keys;
  // Reads and checks those keys; the builder it returns makes the network.
  std::function<NetworkBuilder(const RunConfig&, const NetworkContext&)> parse;
};

const std::vector<NetworkEntry>& network_registry();
// Refuses a kind that is already registered.
void register_network(NetworkEntry entry);
// Throws naming the registered kinds when there is none of that name.
const NetworkEntry& find_network(const std::string& kind);

// The built-in networks, one file each.
NetworkEntry mlp_network_entry();
NetworkEntry unet_network_entry();
NetworkEntry dit_network_entry();

}  // namespace dualflow
