// Training checkpoints: one .safetensors file holding the model weights ("model.<name>"), the
// EMA weights ("ema.<name>"), the optimizer state ("optim.<name>"), generator states
// ("rng.<name>", i64 [seed, offset]) and, in the metadata, the step and the run's config.
// Python's safetensors reads it as it is. Writes are atomic; loads are all-or-nothing.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/dualflow.h"
#include "models/module.h"
#include "train/optim.h"

namespace dualflow {

// The live objects a checkpoint saves from and loads into; null parts are not involved.
struct CheckpointParts {
  Module* model = nullptr;
  Optimizer* optimizer = nullptr;
  Ema* ema = nullptr;
  std::vector<std::pair<std::string, Generator*>> generators;
};

struct CheckpointInfo {
  int64_t step = 0;
  std::string config;                           // the run's config (TOML text)
  std::map<std::string, std::string> metadata;  // further strings, saved as "user.<key>"
};

// Writes everything in `parts` (a model is required) atomically: a crash or a full disk during
// the write leaves the previous file at `path` as it was.
void save_checkpoint(const std::string& path, const CheckpointParts& parts, const CheckpointInfo& info);

// Loads into every non-null part. The file must hold each requested part with exactly the
// names and shapes of the live object; otherwise nothing changes (parts already loaded are put
// back) and the error names the file, the part and what differs. Parts in the file that are
// not requested (an optimizer state when sampling) are ignored.
CheckpointInfo load_checkpoint(const std::string& path, const CheckpointParts& parts);

// The weights for evaluation: the EMA weights when the file has them and `prefer_ema`, else the
// model weights, under the model's own names. `info` (optional) receives step and config.
NamedTensors checkpoint_weights(const std::string& path, bool prefer_ema = true, CheckpointInfo* info = nullptr);

}  // namespace dualflow
