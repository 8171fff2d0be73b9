// Checkpoint files (see checkpoint.h): the naming scheme over safetensors and the
// all-or-nothing restore.
#include "train/checkpoint.h"

#include <cstring>
#include <set>

#include "engine/safetensors.h"

namespace dualflow {

namespace {

constexpr const char* kFormatVersion = "1";

NamedTensors prefixed(const std::string& prefix, const NamedTensors& ts) {
  NamedTensors out;
  out.reserve(ts.size());
  for (const auto& [n, t] : ts) out.emplace_back(prefix + n, t);
  return out;
}

// The entries of `all` under `prefix`, with the prefix removed.
NamedTensors part_of(const NamedTensors& all, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [n, t] : all)
    if (n.compare(0, prefix.size(), prefix) == 0) out.emplace_back(n.substr(prefix.size()), t);
  return out;
}

Tensor generator_state_tensor(const Generator& g) {
  Generator::State s = g.state();
  int64_t v[2];
  std::memcpy(&v[0], &s.seed, 8);
  std::memcpy(&v[1], &s.offset, 8);
  return from_vector(std::vector<int64_t>{v[0], v[1]}, {2});
}

Generator::State generator_state_from(const std::string& where, const Tensor& t) {
  DF_CHECK(t.dtype() == DType::i64 && t.shape() == Shape{2}, "{}: expected an i64 [2] generator state, got {} {}",
           where, dtype_name(t.dtype()), t.shape().str());
  auto v = t.to_vector<int64_t>();
  Generator::State s;
  std::memcpy(&s.seed, &v[0], 8);
  std::memcpy(&s.offset, &v[1], 8);
  return s;
}

NamedTensors clone_all(const NamedTensors& ts) {
  NamedTensors out;
  out.reserve(ts.size());
  for (const auto& [n, t] : ts) out.emplace_back(n, t.detach().clone());
  return out;
}

}  // namespace

void save_checkpoint(const std::string& path, const CheckpointParts& parts, const CheckpointInfo& info) {
  DF_CHECK(parts.model != nullptr, "save_checkpoint({}): a model is required", path);
  NamedTensors all = prefixed("model.", parts.model->state_dict());
  if (parts.ema) {
    NamedTensors e = prefixed("ema.", parts.ema->state());
    all.insert(all.end(), e.begin(), e.end());
  }
  if (parts.optimizer) {
    NamedTensors o = prefixed("optim.", parts.optimizer->state());
    all.insert(all.end(), o.begin(), o.end());
  }
  for (const auto& [name, gen] : parts.generators) {
    DF_CHECK(gen != nullptr, "save_checkpoint({}): generator '{}' is null", path, name);
    all.emplace_back("rng." + name, generator_state_tensor(*gen));
  }
  std::map<std::string, std::string> meta;
  meta["format"] = "pt";  // what safetensors.torch expects of a file it loads
  meta["dualflow.version"] = std::string(kFormatVersion);
  meta["dualflow.step"] = std::to_string(info.step);
  meta["dualflow.config"] = info.config;
  if (parts.optimizer) meta["dualflow.optimizer"] = parts.optimizer->name();
  for (const auto& [k, v] : info.metadata) meta["user." + k] = v;
  save_safetensors(path, all, meta);
}

namespace {

CheckpointInfo info_from(const std::string& path, const std::map<std::string, std::string>& meta) {
  auto it = meta.find("dualflow.version");
  DF_CHECK(it != meta.end(), "checkpoint {}: not a dualflow checkpoint (no 'dualflow.version' in the metadata)", path);
  DF_CHECK(it->second == kFormatVersion, "checkpoint {}: format version {} is not the supported version {}", path,
           it->second, kFormatVersion);
  CheckpointInfo info;
  auto step = meta.find("dualflow.step");
  DF_CHECK(step != meta.end(), "checkpoint {}: metadata has no 'dualflow.step'", path);
  try {
    size_t used = 0;
    info.step = std::stoll(step->second, &used);
    DF_CHECK(used == step->second.size() && info.step >= 0, "");
  } catch (const std::exception&) {
    fail("checkpoint {}: 'dualflow.step' must be a non-negative integer, got '{}'", path, step->second);
  }
  if (auto c = meta.find("dualflow.config"); c != meta.end()) info.config = c->second;
  for (const auto& [k, v] : meta)
    if (k.compare(0, 5, "user.") == 0) info.metadata[k.substr(5)] = v;
  return info;
}

}  // namespace

CheckpointInfo load_checkpoint(const std::string& path, const CheckpointParts& parts) {
  SafetensorsContent content = load_safetensors(path);
  CheckpointInfo info = info_from(path, content.metadata);
  NamedTensors model = part_of(content.tensors, "model.");
  NamedTensors ema = part_of(content.tensors, "ema.");
  NamedTensors optim = part_of(content.tensors, "optim.");
  NamedTensors rng = part_of(content.tensors, "rng.");
  auto require = [&](bool ok, const char* what) {
    DF_CHECK(ok,
             "checkpoint {}: holds no {} state, but one was requested (the file has {} tensors: {} model, {} ema, "
             "{} optimizer, {} generator)",
             path, what, content.tensors.size(), model.size(), ema.size(), optim.size(), rng.size());
  };
  if (parts.model) require(!model.empty(), "model");
  if (parts.ema) require(!ema.empty(), "EMA");
  if (parts.optimizer) require(!optim.empty(), "optimizer");
  std::vector<Generator::State> gen_states;
  for (const auto& part : parts.generators) {
    const std::string& name = part.first;  // a plain reference: clang 14 refuses lambdas capturing a structured binding
    auto it = std::find_if(rng.begin(), rng.end(), [&](const auto& e) { return e.first == name; });
    DF_CHECK(it != rng.end(), "checkpoint {}: holds no state of generator '{}'", path, name);
    gen_states.push_back(generator_state_from(fmt::format("checkpoint {}: generator '{}'", path, name), it->second));
  }

  // Each part checks everything before it copies; if a later part refuses, the earlier ones
  // get their previous values back, so the objects end as they were.
  NamedTensors model_before = parts.model ? clone_all(parts.model->state_dict()) : NamedTensors{};
  NamedTensors ema_before = parts.ema ? clone_all(parts.ema->state()) : NamedTensors{};
  const char* stage = "model";
  try {
    if (parts.model) parts.model->load_state_dict(model);
    stage = "EMA";
    if (parts.ema) parts.ema->load_state(ema);
    stage = "optimizer";
    if (parts.optimizer) parts.optimizer->load_state(optim);
  } catch (const std::exception& e) {
    if (parts.model) parts.model->load_state_dict(model_before);
    if (parts.ema && std::string(stage) == "optimizer") parts.ema->load_state(ema_before);
    fail("checkpoint {}: the {} state does not fit: {}", path, stage, e.what());
  }
  for (size_t i = 0; i < parts.generators.size(); ++i) parts.generators[i].second->set_state(gen_states[i]);
  return info;
}

NamedTensors checkpoint_weights(const std::string& path, bool prefer_ema, CheckpointInfo* info) {
  SafetensorsContent content = load_safetensors(path);
  CheckpointInfo i = info_from(path, content.metadata);
  if (info) *info = i;
  NamedTensors ema = part_of(content.tensors, "ema.");
  NamedTensors model = part_of(content.tensors, "model.");
  DF_CHECK(!model.empty() || (prefer_ema && !ema.empty()), "checkpoint {}: holds no model weights", path);
  if (!prefer_ema || ema.empty()) return model;
  // The average covers the trainable parameters only; buffers (a DiT's positional embedding,
  // a classifier's running statistics) come from the model's own state.
  std::set<std::string> averaged;
  for (const auto& entry : ema) averaged.insert(entry.first);
  for (const auto& entry : model)
    if (!averaged.count(entry.first)) ema.push_back(entry);
  return ema;
}

}  // namespace dualflow
