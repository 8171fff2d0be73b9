// Run configuration: a typed schema of dotted keys ("optim.lr") with defaults, checks and help,
// the loader that resolves a TOML file plus `--set key=value` overrides against it, and the
// resolved RunConfig that programs read and checkpoints record (to_toml).
#pragma once
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace dualflow {

enum class ConfigType { Int, Float, Bool, String, IntList };

// Alternatives in ConfigType's order, so that value.index() == int(type).
using ConfigValue = std::variant<int64_t, double, bool, std::string, std::vector<int64_t>>;

// "int", "float", "bool", "string", "list of ints".
std::string config_type_name(ConfigType type);
ConfigType config_type_of(const ConfigValue& value);
// The value in TOML syntax: 3, 0.001, 1.0, true, "moons", [1, 2, 2].
std::string config_value_to_toml(const ConfigValue& value);

// One key of a schema. Bounds apply to ints and floats, and to every element of a list of ints;
// choices apply to strings. The fluent setters add checks right after ConfigSchema::add_*.
struct ConfigKey {
  std::string name;  // dotted: "section.key"
  ConfigType type = ConfigType::Int;
  ConfigValue default_value;
  std::string help;
  std::optional<double> lower, upper;
  bool lower_exclusive = false, upper_exclusive = false;
  std::vector<std::string> choices;

  ConfigKey& at_least(double v);
  ConfigKey& greater_than(double v);
  ConfigKey& at_most(double v);
  ConfigKey& less_than(double v);
  ConfigKey& one_of(std::vector<std::string> allowed);

  // "" when the value passes, else why not: "must be >= 1, got 0".
  std::string violation(const ConfigValue& value) const;
  // The checks in words for help(): ">= 1", "in [0, 1)", "one of cfm, meanflow"; "" when none.
  std::string constraint_text() const;
};

class ConfigSchema {
 public:
  // Each returns the new key for chaining checks; the reference stays valid (keys live in a
  // deque). Adding a name twice, or a name that is a section of another key, is refused.
  ConfigKey& add_int(std::string name, int64_t default_value, std::string help);
  ConfigKey& add_float(std::string name, double default_value, std::string help);
  ConfigKey& add_bool(std::string name, bool default_value, std::string help);
  ConfigKey& add_string(std::string name, std::string default_value, std::string help);
  ConfigKey& add_int_list(std::string name, std::vector<int64_t> default_value, std::string help);

  // nullptr when the schema has no such key.
  const ConfigKey* find(std::string_view name) const;
  // Whether `name` is a section holding keys ("optim" for "optim.lr").
  bool is_section(std::string_view name) const;
  // The closest key name to a misspelt one, or "" when nothing is close.
  std::string suggest(std::string_view unknown) const;
  const std::deque<ConfigKey>& keys() const { return keys_; }

  // Every key with its type, default, checks and help, grouped by section.
  std::string help() const;

 private:
  ConfigKey& add(std::string name, ConfigValue default_value, std::string help);
  std::deque<ConfigKey> keys_;
};

// The resolved values of every key of a schema (defaults filled in), in schema order.
class RunConfig {
 public:
  // All defaults; the schema's defaults are checked like any other value.
  explicit RunConfig(ConfigSchema schema);

  // Typed reads: an unknown key (with a suggestion) or a key of another type is refused.
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  const std::vector<int64_t>& get_int_list(std::string_view key) const;
  const ConfigValue& get(std::string_view key) const;

  // Replaces a value after checking its type (an int is widened where a float is expected)
  // and the key's checks; `origin` prefixes the error ("run.toml:3:9", "--set train.steps=0").
  void set(std::string_view key, ConfigValue value, std::string_view origin = "");

  // The full resolved config as TOML, one table per section, in schema order; it parses back
  // (parse_config_text) to equal values.
  std::string to_toml() const;

  const ConfigSchema& schema() const { return schema_; }
  bool operator==(const RunConfig& other) const { return values_ == other.values_; }

 private:
  size_t index_of(std::string_view key) const;
  const ConfigValue& typed(std::string_view key, ConfigType want) const;
  ConfigSchema schema_;
  std::vector<ConfigValue> values_;  // parallel to schema_.keys()
};

// Reads the TOML file at `path`, then applies `overrides` ("key=value", the value in TOML
// syntax, or bare text for string keys), then checks every value. Errors name the file with
// line and column (or the --set argument), the key, what was expected and what was given.
RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides, const ConfigSchema& schema);
// The same from text; `what` names the source in messages (a file name, "<test>").
RunConfig parse_config_text(std::string_view text, const std::string& what, const std::vector<std::string>& overrides,
                            const ConfigSchema& schema);

// Levenshtein distance between two words: what "did you mean" suggestions rank by.
size_t edit_distance(std::string_view a, std::string_view b);

// The schema of `dualflow train` (defined in train/run_spec.cpp, assembled from the network and
// method registries).
ConfigSchema flow_matching_schema();

}  // namespace dualflow
