// The network registry (see network_registry.h): the built-in list and registration.
#include "train/networks/network_registry.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace dualflow {

namespace {

std::vector<NetworkEntry>& entries() {
  static std::vector<NetworkEntry> list = [] {
    std::vector<NetworkEntry> v;
    v.push_back(mlp_network_entry());
    v.push_back(unet_network_entry());
    v.push_back(dit_network_entry());
    return v;
  }();
  return list;
}

}  // namespace

const std::vector<NetworkEntry>& network_registry() { return entries(); }

void register_network(NetworkEntry entry) {
  DF_CHECK(!entry.kind.empty() && entry.parse, "register_network: an entry needs a kind and a parse function");
  for (const NetworkEntry& e : entries())
    DF_CHECK(e.kind != entry.kind, "register_network: model.kind \"{}\" is already registered", entry.kind);
  entries().push_back(std::move(entry));
}

const NetworkEntry& find_network(const std::string& kind) {
  std::vector<std::string> kinds;
  for (const NetworkEntry& e : entries()) {
    if (e.kind == kind) return e;
    kinds.push_back(e.kind);
  }
  fail("model.kind = \"{}\": no such network; registered: {}", kind, fmt::join(kinds, ", "));
}

}  // namespace dualflow
