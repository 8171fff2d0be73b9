// The run-configuration layer: schema checks, TOML loading with --set overrides, typed reads
// and the TOML writer of resolved configs. See config.h.
#include "train/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/error.h"

namespace dualflow {

// ---- values ---------------------------------------------------------------------------------

std::string config_type_name(ConfigType type) {
  switch (type) {
    case ConfigType::Int: return "int";
    case ConfigType::Float: return "float";
    case ConfigType::Bool: return "bool";
    case ConfigType::String: return "string";
    case ConfigType::IntList: return "list of ints";
  }
  return "?";
}

ConfigType config_type_of(const ConfigValue& value) { return static_cast<ConfigType>(value.index()); }

namespace {

std::string with_article(ConfigType type) { return (type == ConfigType::Int ? "an " : "a ") + config_type_name(type); }

std::string toml_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
          out += fmt::format("\\u{:04X}", static_cast<unsigned>(static_cast<unsigned char>(c)));
        else out += c;
    }
  }
  return out + "\"";
}

// Shortest text that reads back to the same double, always recognisably a float ("1.0", not "1").
std::string toml_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eni") == std::string::npos) s += ".0";
  return s;
}

std::string bound_text(double v, ConfigType type) {
  return type == ConfigType::Float ? fmt::format("{}", v) : fmt::format("{}", static_cast<int64_t>(v));
}

std::string_view last_segment(std::string_view name) {
  size_t dot = name.rfind('.');
  return dot == std::string_view::npos ? name : name.substr(dot + 1);
}

std::string_view section_of(std::string_view name) {
  size_t dot = name.rfind('.');
  return dot == std::string_view::npos ? std::string_view{} : name.substr(0, dot);
}

bool is_bare_key_segment(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  });
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? std::string(sep) : "") + items[i];
  return out;
}

// "name: " or "" so that messages read the same with and without an origin.
std::string prefix(std::string_view origin) { return origin.empty() ? "" : std::string(origin) + ": "; }

}  // namespace

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string config_value_to_toml(const ConfigValue& value) {
  switch (config_type_of(value)) {
    case ConfigType::Int: return fmt::format("{}", std::get<int64_t>(value));
    case ConfigType::Float: return toml_float(std::get<double>(value));
    case ConfigType::Bool: return std::get<bool>(value) ? "true" : "false";
    case ConfigType::String: return toml_quote(std::get<std::string>(value));
    case ConfigType::IntList: return fmt::format("[{}]", fmt::join(std::get<std::vector<int64_t>>(value), ", "));
  }
  return "";
}

// ---- keys and schema ------------------------------------------------------------------------

ConfigKey& ConfigKey::at_least(double v) {
  lower = v, lower_exclusive = false;
  return *this;
}
ConfigKey& ConfigKey::greater_than(double v) {
  lower = v, lower_exclusive = true;
  return *this;
}
ConfigKey& ConfigKey::at_most(double v) {
  upper = v, upper_exclusive = false;
  return *this;
}
ConfigKey& ConfigKey::less_than(double v) {
  upper = v, upper_exclusive = true;
  return *this;
}
ConfigKey& ConfigKey::one_of(std::vector<std::string> allowed) {
  DF_CHECK(type == ConfigType::String, "config schema: {} is {}; choices need a string key", name, with_article(type));
  choices = std::move(allowed);
  return *this;
}

std::string ConfigKey::violation(const ConfigValue& value) const {
  auto check_number = [&](double v, const std::string& shown) -> std::string {
    if (std::isnan(v)) return fmt::format("must be a number, got {}", shown);
    if (lower && (lower_exclusive ? !(v > *lower) : !(v >= *lower)))
      return fmt::format("must be {} {}, got {}", lower_exclusive ? ">" : ">=", bound_text(*lower, type), shown);
    if (upper && (upper_exclusive ? !(v < *upper) : !(v <= *upper)))
      return fmt::format("must be {} {}, got {}", upper_exclusive ? "<" : "<=", bound_text(*upper, type), shown);
    return "";
  };
  switch (config_type_of(value)) {
    case ConfigType::Int: {
      int64_t v = std::get<int64_t>(value);
      return check_number(static_cast<double>(v), fmt::format("{}", v));
    }
    case ConfigType::Float: return check_number(std::get<double>(value), toml_float(std::get<double>(value)));
    case ConfigType::IntList:
      for (int64_t v : std::get<std::vector<int64_t>>(value)) {
        std::string why = check_number(static_cast<double>(v), fmt::format("{}", v));
        if (!why.empty()) return "elements " + why;
      }
      return "";
    case ConfigType::String: {
      const auto& s = std::get<std::string>(value);
      if (choices.empty() || std::find(choices.begin(), choices.end(), s) != choices.end()) return "";
      std::string why = fmt::format("must be one of {}; got '{}'", join(choices, ", "), s);
      auto closest = std::min_element(choices.begin(), choices.end(), [&](const auto& a, const auto& b) {
        return edit_distance(a, s) < edit_distance(b, s);
      });
      if (edit_distance(*closest, s) <= std::max<size_t>(2, s.size() / 3))
        why += fmt::format("; did you mean '{}'?", *closest);
      return why;
    }
    case ConfigType::Bool: return "";
  }
  return "";
}

std::string ConfigKey::constraint_text() const {
  if (!choices.empty()) return "one of " + join(choices, ", ");
  const char* each = type == ConfigType::IntList ? "each " : "";
  if (lower && upper)
    return fmt::format("{}in {}{}, {}{}", each, lower_exclusive ? "(" : "[", bound_text(*lower, type),
                       bound_text(*upper, type), upper_exclusive ? ")" : "]");
  if (lower) return fmt::format("{}{} {}", each, lower_exclusive ? ">" : ">=", bound_text(*lower, type));
  if (upper) return fmt::format("{}{} {}", each, upper_exclusive ? "<" : "<=", bound_text(*upper, type));
  return "";
}

ConfigKey& ConfigSchema::add(std::string name, ConfigValue default_value, std::string help) {
  std::string_view rest = name;
  while (true) {
    size_t dot = rest.find('.');
    DF_CHECK(is_bare_key_segment(rest.substr(0, dot)),
             "config schema: key '{}' must be dotted segments of letters, digits, '_' or '-'", name);
    if (dot == std::string_view::npos) break;
    rest = rest.substr(dot + 1);
  }
  DF_CHECK(!find(name), "config schema: key '{}' is added twice", name);
  DF_CHECK(!is_section(name), "config schema: '{}' is already a section of other keys", name);
  for (std::string_view section = section_of(name); !section.empty(); section = section_of(section))
    DF_CHECK(!find(section), "config schema: '{}' cannot be both a key and the section of '{}'", section, name);
  ConfigKey key;
  key.type = config_type_of(default_value);
  key.name = std::move(name);
  key.default_value = std::move(default_value);
  key.help = std::move(help);
  keys_.push_back(std::move(key));
  return keys_.back();
}

ConfigKey& ConfigSchema::add_int(std::string name, int64_t default_value, std::string help) {
  return add(std::move(name), default_value, std::move(help));
}
ConfigKey& ConfigSchema::add_float(std::string name, double default_value, std::string help) {
  return add(std::move(name), default_value, std::move(help));
}
ConfigKey& ConfigSchema::add_bool(std::string name, bool default_value, std::string help) {
  return add(std::move(name), default_value, std::move(help));
}
ConfigKey& ConfigSchema::add_string(std::string name, std::string default_value, std::string help) {
  return add(std::move(name), std::move(default_value), std::move(help));
}
ConfigKey& ConfigSchema::add_int_list(std::string name, std::vector<int64_t> default_value, std::string help) {
  return add(std::move(name), std::move(default_value), std::move(help));
}

const ConfigKey* ConfigSchema::find(std::string_view name) const {
  for (const auto& key : keys_)
    if (key.name == name) return &key;
  return nullptr;
}

bool ConfigSchema::is_section(std::string_view name) const {
  return std::any_of(keys_.begin(), keys_.end(), [&](const ConfigKey& key) {
    return key.name.size() > name.size() && key.name.compare(0, name.size(), name) == 0 && key.name[name.size()] == '.';
  });
}

std::string ConfigSchema::suggest(std::string_view unknown) const {
  // A small typo in the full name first ("optim.lrr"), then the right key in the wrong
  // section ("train.lr", or a bare "lr").
  const ConfigKey* best = nullptr;
  size_t best_distance = 0;
  for (const auto& key : keys_) {
    size_t d = edit_distance(key.name, unknown);
    if (!best || d < best_distance) best = &key, best_distance = d;
  }
  if (best && best_distance <= std::max<size_t>(2, unknown.size() / 4)) return best->name;
  for (const auto& key : keys_)
    if (edit_distance(last_segment(key.name), last_segment(unknown)) <= (last_segment(unknown).size() > 4 ? 1u : 0u))
      return key.name;
  return "";
}

std::string ConfigSchema::help() const {
  std::vector<std::string_view> sections;
  for (const auto& key : keys_)
    if (std::find(sections.begin(), sections.end(), section_of(key.name)) == sections.end())
      sections.push_back(section_of(key.name));
  size_t name_width = 0, default_width = 0;
  for (const auto& key : keys_) {
    name_width = std::max(name_width, key.name.size());
    default_width = std::max(default_width, config_value_to_toml(key.default_value).size());
  }
  std::string out;
  for (std::string_view section : sections) {
    out += section.empty() ? std::string("(top level)\n") : fmt::format("[{}]\n", section);
    for (const auto& key : keys_) {
      if (section_of(key.name) != section) continue;
      std::string constraint = key.constraint_text();
      out += fmt::format("  {:<{}}  {:<12}  {:<{}}  {}{}\n", key.name, name_width, config_type_name(key.type),
                         config_value_to_toml(key.default_value), default_width, key.help,
                         constraint.empty() ? "" : " [" + constraint + "]");
    }
    out += "\n";
  }
  return out;
}

// ---- resolved config ------------------------------------------------------------------------

RunConfig::RunConfig(ConfigSchema schema) : schema_(std::move(schema)) {
  for (const auto& key : schema_.keys()) {
    std::string why = key.violation(key.default_value);
    DF_CHECK(why.empty(), "config schema: the default of {} {}", key.name, why);
    values_.push_back(key.default_value);
  }
}

size_t RunConfig::index_of(std::string_view key) const {
  const auto& keys = schema_.keys();
  for (size_t i = 0; i < keys.size(); ++i)
    if (keys[i].name == key) return i;
  std::string guess = schema_.suggest(key);
  fail("config: no key '{}'{}", key, guess.empty() ? "" : fmt::format("; did you mean '{}'?", guess));
}

const ConfigValue& RunConfig::typed(std::string_view key, ConfigType want) const {
  const ConfigValue& value = values_[index_of(key)];
  DF_CHECK(config_type_of(value) == want, "config: {} is {}, read as {}", key, with_article(config_type_of(value)),
           with_article(want));
  return value;
}

int64_t RunConfig::get_int(std::string_view key) const { return std::get<int64_t>(typed(key, ConfigType::Int)); }
double RunConfig::get_float(std::string_view key) const { return std::get<double>(typed(key, ConfigType::Float)); }
bool RunConfig::get_bool(std::string_view key) const { return std::get<bool>(typed(key, ConfigType::Bool)); }
const std::string& RunConfig::get_string(std::string_view key) const {
  return std::get<std::string>(typed(key, ConfigType::String));
}
const std::vector<int64_t>& RunConfig::get_int_list(std::string_view key) const {
  return std::get<std::vector<int64_t>>(typed(key, ConfigType::IntList));
}
const ConfigValue& RunConfig::get(std::string_view key) const { return values_[index_of(key)]; }

void RunConfig::set(std::string_view key, ConfigValue value, std::string_view origin) {
  size_t i = index_of(key);
  const ConfigKey& spec = schema_.keys()[i];
  // An int is a float too ("lr = 1"); a float is never silently truncated to an int.
  if (spec.type == ConfigType::Float && config_type_of(value) == ConfigType::Int)
    value = static_cast<double>(std::get<int64_t>(value));
  DF_CHECK(config_type_of(value) == spec.type, "{}{} expects {}, got {} {}", prefix(origin), key,
           with_article(spec.type), config_type_name(config_type_of(value)), config_value_to_toml(value));
  std::string why = spec.violation(value);
  DF_CHECK(why.empty(), "{}{} {}", prefix(origin), key, why);
  values_[i] = std::move(value);
}

std::string RunConfig::to_toml() const {
  const auto& keys = schema_.keys();
  std::vector<std::string_view> sections;
  for (const auto& key : keys)
    if (std::find(sections.begin(), sections.end(), section_of(key.name)) == sections.end())
      sections.push_back(section_of(key.name));
  // Top-level keys must come before the first table header, so the empty section goes first.
  std::stable_partition(sections.begin(), sections.end(), [](std::string_view s) { return s.empty(); });
  std::string out;
  for (std::string_view section : sections) {
    if (!section.empty()) out += fmt::format("{}[{}]\n", out.empty() ? "" : "\n", section);
    for (size_t i = 0; i < keys.size(); ++i)
      if (section_of(keys[i].name) == section)
        out += fmt::format("{} = {}\n", last_segment(keys[i].name), config_value_to_toml(values_[i]));
  }
  return out;
}

// ---- loading --------------------------------------------------------------------------------

namespace {

std::string location(const toml::source_region& where, const std::string& what) {
  return fmt::format("{}:{}:{}", what, where.begin.line, where.begin.column);
}

// A value as TOML text for messages. Lists and inline tables are written element by element:
// toml++ 3.3's own formatter sizes them by casting log10 of each float to an integer, which is
// undefined behaviour for inf and nan (found by fuzzing the config loader).
void write_toml_value(std::ostream& out, const toml::node& node) {
  if (auto array = node.as_array()) {
    out << '[';
    for (size_t i = 0; i < array->size(); ++i) {
      out << (i ? ", " : "");
      write_toml_value(out, *array->get(i));
    }
    out << ']';
  } else if (auto table = node.as_table()) {
    out << '{';
    bool first = true;
    for (auto&& [key, value] : *table) {
      out << (first ? "" : ", ") << key.str() << " = ";
      write_toml_value(out, value);
      first = false;
    }
    out << '}';
  } else {
    node.visit([&](auto&& n) { out << n; });
  }
}

std::string describe(const toml::node& node) {
  static const std::map<toml::node_type, const char*> names = {{toml::node_type::table, "table"},
                                                               {toml::node_type::array, "list"},
                                                               {toml::node_type::string, "string"},
                                                               {toml::node_type::integer, "int"},
                                                               {toml::node_type::floating_point, "float"},
                                                               {toml::node_type::boolean, "bool"},
                                                               {toml::node_type::date, "date"},
                                                               {toml::node_type::time, "time"},
                                                               {toml::node_type::date_time, "date-time"}};
  auto it = names.find(node.type());
  std::string name = it == names.end() ? "value" : it->second;
  if (node.is_table()) return "a table";
  std::ostringstream text;
  write_toml_value(text, node);
  return fmt::format("{} {} {}", node.is_integer() ? "an" : "a", name, text.str());
}

// The node as a value of `type`, or nullopt when it is some other kind of value.
std::optional<ConfigValue> convert(const toml::node& node, ConfigType type) {
  switch (type) {
    case ConfigType::Int:
      if (auto v = node.as_integer()) return ConfigValue{v->get()};
      break;
    case ConfigType::Float:
      if (auto v = node.as_floating_point()) return ConfigValue{v->get()};
      if (auto v = node.as_integer()) return ConfigValue{static_cast<double>(v->get())};
      break;
    case ConfigType::Bool:
      if (auto v = node.as_boolean()) return ConfigValue{v->get()};
      break;
    case ConfigType::String:
      if (auto v = node.as_string()) return ConfigValue{v->get()};
      break;
    case ConfigType::IntList:
      if (auto array = node.as_array()) {
        std::vector<int64_t> out;
        for (const auto& element : *array) {
          auto v = element.as_integer();
          if (!v) return std::nullopt;
          out.push_back(v->get());
        }
        return ConfigValue{std::move(out)};
      }
      break;
  }
  return std::nullopt;
}

void apply_node(RunConfig& config, const std::string& name, const toml::node& node, const std::string& origin) {
  const ConfigKey& spec = *config.schema().find(name);
  auto value = convert(node, spec.type);
  DF_CHECK(value.has_value(), "{}: {} expects {}, got {}", origin, name, with_article(spec.type), describe(node));
  config.set(name, std::move(*value), origin);
}

[[noreturn]] void fail_unknown(const ConfigSchema& schema, const std::string& name, const std::string& origin) {
  std::string guess = schema.suggest(name);
  fail("{}: unknown key '{}'{}", origin, name, guess.empty() ? "" : fmt::format("; did you mean '{}'?", guess));
}

// Every leaf of the (possibly nested) table becomes the dotted key it names.
void apply_table(RunConfig& config, const toml::table& table, const std::string& section, const std::string& what) {
  const ConfigSchema& schema = config.schema();
  for (auto&& [key, node] : table) {
    std::string name = section.empty() ? std::string(key.str()) : section + "." + std::string(key.str());
    std::string origin = location(node.source(), what);
    if (schema.find(name)) {
      apply_node(config, name, node, origin);
    } else if (auto sub = node.as_table(); sub && (schema.is_section(name) || !sub->empty())) {
      // An unknown table is walked too, so that the error names a full key ("optimizer.lr")
      // whose last part can suggest the right one.
      apply_table(config, *sub, name, what);
    } else if (schema.is_section(name)) {
      const auto& example = *std::find_if(schema.keys().begin(), schema.keys().end(),
                                          [&](const ConfigKey& k) { return k.name.rfind(name + ".", 0) == 0; });
      fail("{}: '{}' is a section of keys (such as '{}'), got {}", origin, name, example.name, describe(node));
    } else {
      fail_unknown(schema, name, location(key.source(), what));
    }
  }
}

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF),
// as TOML text must be.
bool is_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = byte(i);
    size_t extra = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xe ? 2 : (c >> 3) == 0x1e ? 3 : 4;
    if (extra == 4 || i + extra >= s.size()) return false;
    uint32_t cp = extra == 0 ? c : c & (0x3f >> extra);
    for (size_t k = 1; k <= extra; ++k) {
      if ((byte(i + k) & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (byte(i + k) & 0x3f);
    }
    static constexpr uint32_t kSmallest[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kSmallest[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += extra + 1;
  }
  return true;
}

void apply_override(RunConfig& config, const std::string& assignment) {
  const ConfigSchema& schema = config.schema();
  std::string origin = "--set " + assignment;
  size_t eq = assignment.find('=');
  auto trim = [](std::string_view s) {
    size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
    return b == std::string_view::npos ? std::string{} : std::string(s.substr(b, e - b + 1));
  };
  DF_CHECK(eq != std::string::npos && !trim(std::string_view(assignment).substr(0, eq)).empty(),
           "{}: expected key=value (such as --set optim.lr=3e-4)", origin);
  std::string name = trim(std::string_view(assignment).substr(0, eq));
  std::string text = trim(std::string_view(assignment).substr(eq + 1));
  const ConfigKey* spec = schema.find(name);
  if (!spec) {
    if (schema.is_section(name)) fail("{}: '{}' is a section; set its keys one by one", origin, name);
    fail_unknown(schema, name, origin);
  }
  // Strings may be given bare (--set data.name=moons); quotes make TOML's escapes available.
  // Bare text skips the TOML parser's UTF-8 check, and a config that is not UTF-8 could be
  // neither written back as TOML nor stored in a checkpoint's metadata.
  if (spec->type == ConfigType::String && (text.empty() || (text[0] != '"' && text[0] != '\''))) {
    DF_CHECK(is_utf8(text), "{}: the value is not UTF-8 text", origin);
    config.set(name, ConfigValue{text}, origin);
    return;
  }
  DF_CHECK(!text.empty(), "{}: no value after '=' (expected {})", origin, with_article(spec->type));
  toml::table parsed;
  try {
    std::string document = "value = " + text;
    parsed = toml::parse(std::string_view(document), std::string_view("--set"));
  } catch (const toml::parse_error& e) {
    fail("{}: '{}' is not a TOML value ({}); expected {}", origin, text, e.description(), with_article(spec->type));
  }
  DF_CHECK(parsed.size() == 1 && parsed.contains("value"), "{}: '{}' is more than one TOML value; expected {}", origin,
           text, with_article(spec->type));
  apply_node(config, name, *parsed.get("value"), origin);
}

}  // namespace

RunConfig parse_config_text(std::string_view text, const std::string& what, const std::vector<std::string>& overrides,
                            const ConfigSchema& schema) {
  toml::table table;
  try {
    table = toml::parse(text, std::string_view(what));
  } catch (const toml::parse_error& e) {
    fail("{}: TOML syntax error: {}", location(e.source(), what), e.description());
  }
  RunConfig config(schema);
  apply_table(config, table, "", what);
  for (const auto& assignment : overrides) apply_override(config, assignment);
  return config;
}

RunConfig load_config(const std::string& path, const std::vector<std::string>& overrides, const ConfigSchema& schema) {
  std::ifstream file(path, std::ios::binary);
  DF_CHECK(file.good(), "config: cannot open '{}' (expected a readable TOML file)", path);
  std::ostringstream text;
  text << file.rdbuf();
  DF_CHECK(!file.bad(), "config: cannot read '{}'", path);
  return parse_config_text(text.str(), path, overrides, schema);
}

// ---- the Flow Matching training program -----------------------------------------------------

}  // namespace dualflow
