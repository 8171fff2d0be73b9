// The network registry (see network_registry.h): the built-in list and registration.
#include "train/networks/network_registry.h"

#include "train/registry.h"

namespace dualflow {

namespace {

using NetworkRegistry = Registry<NetworkEntry, &NetworkEntry::kind>;

NetworkRegistry& registry() {
  static NetworkRegistry networks("model.kind", {mlp_network_entry(), unet_network_entry(), dit_network_entry()});
  return networks;
}

}  // namespace

const std::vector<NetworkEntry>& network_registry() { return registry().entries(); }

void register_network(NetworkEntry entry) {
  DF_CHECK(entry.parse, "register_network: the entry \"{}\" has no parse function", entry.kind);
  registry().add(std::move(entry));
}

const NetworkEntry& find_network(const std::string& kind) { return registry().find(kind); }

}  // namespace dualflow
