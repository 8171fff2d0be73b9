// Image datasets in the IDX format of MNIST and Fashion-MNIST (Debian's dataset-fashion-mnist
// installs them gzipped under /usr/share/datasets/fashion-mnist/): the checked IDX reader
// (plain or gzip, refusing malformed, truncated or inconsistent files before allocating what a
// header claims), the dataset as tensors (pixels to [-1, 1], class labels), and the batcher
// that shuffles each epoch with the run's seed and flips horizontally on request, as a pure
// function of the step so that a resumed run sees exactly the batches it would have seen.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace dualflow {

// An IDX array of unsigned bytes (type code 0x08, the only one MNIST-like sets use).
struct IdxArray {
  std::vector<int64_t> dims;  // e.g. {60000, 28, 28} for images, {60000} for labels
  std::vector<uint8_t> data;  // row-major, product(dims) bytes
};

// Parses IDX bytes: magic 0x00 0x00 <type> <ndim>, ndim big-endian u32 sizes, then the data.
// Refuses, naming `what`, a wrong magic, another element type, ndim 0 or > 4, a size product
// that overflows, and a data length other than the product (truncated or trailing bytes).
IdxArray parse_idx(std::span<const uint8_t> bytes, const std::string& what);
// Reads `path`: gzip when it starts with the gzip magic (decompressed with zlib, with a cap on
// the decompressed size), else plain. A corrupt gzip stream is refused like a malformed file.
IdxArray read_idx(const std::string& path);

// The most bytes an IDX file may hold, plain or decompressed (the Fashion-MNIST training images
// are 47 MB); larger inputs are refused before they are read whole.
inline constexpr size_t kMaxIdxBytes = size_t(512) << 20;
// What read_idx does after reading: gunzip when `bytes` start with the gzip magic (to at most
// max_bytes), then parse_idx.
IdxArray decode_idx(std::span<const uint8_t> bytes, const std::string& what, size_t max_bytes = kMaxIdxBytes);
// Decompresses a gzip stream (one or more members) in a streaming loop. Refuses, naming `what`,
// a corrupt or truncated stream, bytes after its end, and output beyond `max_bytes`; the buffer
// grows with the bytes actually produced, never with a size the stream claims.
std::vector<uint8_t> gunzip(std::span<const uint8_t> bytes, const std::string& what, size_t max_bytes = kMaxIdxBytes);

enum class ImageSplit { Train, Test };

struct ImageDataset {
  Tensor images;  // f32 [N, 1, H, W] in [-1, 1] (pixel / 127.5 - 1), on the CPU
  Tensor labels;  // i64 [N] in [0, num_classes)
  int64_t num_classes = 10;
  std::string source;  // the images file read, for messages
  int64_t size() const { return images.size(0); }
};

// Loads {train,t10k}-images-idx3-ubyte[.gz] and the matching labels-idx1 file from `dir`
// (either spelling, gzipped preferred), checks that the counts agree and every label is < 10.
// limit > 0 keeps the first `limit` images. A missing folder or file is refused with the path
// and what was looked for.
ImageDataset load_image_dataset(const std::string& dir, ImageSplit split, int64_t limit = 0);

struct ImageBatch {
  Tensor images;  // f32 [B, 1, H, W] on the requested device (or the requested floating dtype)
  Tensor labels;  // i64 [B]
};

// Epoch-shuffled minibatches: the sample stream is the concatenation of one permutation of the
// dataset per epoch (epoch e's permutation drawn from a Generator seeded with seed and e), and
// step s takes its entries [s * batch, (s + 1) * batch). With hflip, each image of step s is
// mirrored left-right with probability 1/2 from a Generator seeded with seed and s.
// The batcher keeps a reference to `data` and caches the latest epoch's permutation, so one
// batcher serves one thread.
class ImageBatcher {
 public:
  ImageBatcher(const ImageDataset& data, int64_t batch, uint64_t seed, bool hflip = false);
  ImageBatch batch_at(int64_t step, TensorOptions opts) const;
  int64_t batch_size() const { return batch_; }

 private:
  const std::vector<int64_t>& permutation(int64_t epoch) const;
  const ImageDataset& data_;
  int64_t batch_;
  uint64_t seed_;
  bool hflip_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> cached_permutation_;
};

}  // namespace dualflow
