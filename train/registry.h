// Registry<Entry>: a named list of entries (the networks of model.kind, the methods of
// method.name) that starts with the built-in ones, takes more from programs, refuses a name
// twice and answers an unknown name with the registered ones.
#pragma once
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <utility>
#include <vector>

#include "engine/error.h"

namespace dualflow {

template <class Entry, std::string Entry::*Name>
class Registry {
 public:
  // `key` names the config key the entries are chosen by ("model.kind"), for messages.
  Registry(const char* key, std::vector<Entry> builtins) : key_(key), entries_(std::move(builtins)) {}

  const std::vector<Entry>& entries() const { return entries_; }

  void add(Entry entry) {
    DF_CHECK(!(entry.*Name).empty(), "registering a {}: the entry has no name", key_);
    for (const Entry& e : entries_)
      DF_CHECK(e.*Name != entry.*Name, "registering a {}: \"{}\" is already registered", key_, entry.*Name);
    entries_.push_back(std::move(entry));
  }

  const Entry& find(const std::string& name) const {
    std::vector<std::string> names;
    for (const Entry& e : entries_) {
      if (e.*Name == name) return e;
      names.push_back(e.*Name);
    }
    fail("{} = \"{}\": nothing of that name is registered; registered: {}", key_, name, fmt::join(names, ", "));
  }

 private:
  const char* key_;
  std::vector<Entry> entries_;
};

}  // namespace dualflow
