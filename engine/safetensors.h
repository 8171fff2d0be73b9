// Checkpoint I/O in the safetensors format (https://github.com/huggingface/safetensors), so that
// dualflow checkpoints open in Python and Hugging Face weights open in dualflow. Readers refuse
// any file the format does not allow before handing back a single tensor: a checkpoint is
// either loaded whole or not at all.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace dualflow {

struct SafetensorsContent {
  // CPU, contiguous tensors in header order. save_safetensors writes the header in the
  // caller's order, so a save -> load round trip keeps it; the reference writer lists tensors
  // in the order of their data.
  NamedTensors tensors;
  std::map<std::string, std::string> metadata;
};

// One tensor as the header describes it. `begin`/`end` are byte offsets into the data
// buffer, which starts at `SafetensorsHeader::data_start` in the file.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // same order as SafetensorsContent::tensors
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + header length
  uint64_t data_size = 0;   // bytes of the data buffer (the rest of the file)
};

// Writes atomically (engine/atomic_file.h): a crash, kill or error leaves either the old file or
// the new one, never a torn one.
// Tensors may live on any device and have any strides (they are copied to contiguous CPU
// bytes one at a time). Names must be unique, non-empty and not "__metadata__". As in the
// reference writer, the header is space-padded to a multiple of 8 bytes and the data is laid
// out by descending element size, so every tensor starts aligned to its element size.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads and fully validates the file before reading any tensor data; BOOL bytes must be 0 or 1.
SafetensorsContent load_safetensors(const std::string& path);

// The same validation on an in-memory copy of a file (for tests and fuzzing); `what` names the
// source in error messages.
SafetensorsContent parse_safetensors(const uint8_t* data, size_t size, const std::string& what = "buffer");

// Names, dtypes, shapes, offsets and metadata, validated as load_safetensors does, without
// reading tensor data.
SafetensorsHeader inspect_safetensors(const std::string& path);

}  // namespace dualflow
