// IDX image datasets: the checked IDX reader (plain or gzip through zlib), the dataset as
// tensors, and the epoch-shuffling, optionally flipping batcher. Every size a file claims is
// checked against the bytes actually present before anything of that size is allocated.
#include "train/image_data.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numeric>
#include <system_error>
#include <utility>

#include "engine/autograd.h"
#include "engine/error.h"
#include "engine/ops.h"

namespace dualflow {
namespace {

namespace fs = std::filesystem;

constexpr uint8_t kUnsignedByte = 0x08;
constexpr int kMaxIdxRank = 4;
constexpr char kInstallHint[] =
    "Fashion-MNIST: `apt-get install dataset-fashion-mnist` puts it in /usr/share/datasets/fashion-mnist; "
    "MNIST in the same IDX layout loads from its own folder";

bool is_gzip(std::span<const uint8_t> bytes) { return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b; }

const char* idx_type_name(uint8_t code) {
  switch (code) {
    case 0x08: return "unsigned bytes";
    case 0x09: return "signed bytes";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return nullptr;
  }
}

std::string dims_str(const std::vector<int64_t>& dims) { return fmt::format("{}", fmt::join(dims, "x")); }

struct IdxHeader {
  std::vector<int64_t> dims;
  size_t header_bytes = 0;
  size_t data_bytes = 0;
};

// Checks the magic, the rank and the sizes, and that exactly product(dims) bytes follow the
// header. Allocates nothing beyond the dims.
IdxHeader parse_header(std::span<const uint8_t> bytes, const std::string& what) {
  const size_t n = bytes.size();
  if (n < 4) fail("{}: not an IDX file: {} bytes, shorter than the 4-byte magic 00 00 08 <ndim>", what, n);
  if (bytes[0] != 0 || bytes[1] != 0 || bytes[2] != kUnsignedByte) {
    std::string note;
    if (is_gzip(bytes)) note = " (a gzip stream: read_idx and decode_idx decompress it)";
    else if (bytes[0] == 0 && bytes[1] == 0 && idx_type_name(bytes[2]))
      note = fmt::format(" (element type {:02x} = {})", bytes[2], idx_type_name(bytes[2]));
    fail("{}: IDX magic: expected 00 00 08 xx (unsigned bytes), got {:02x} {:02x} {:02x} {:02x}{}", what, bytes[0],
         bytes[1], bytes[2], bytes[3], note);
  }
  const int ndim = bytes[3];
  if (ndim < 1 || ndim > kMaxIdxRank)
    fail("{}: IDX rank: expected 1 to {} dimensions, got {}", what, kMaxIdxRank, ndim);
  IdxHeader h;
  h.header_bytes = 4 + 4 * size_t(ndim);
  if (n < h.header_bytes)
    fail("{}: truncated IDX header: {} dimensions need {} bytes, file holds {}", what, ndim, h.header_bytes, n);
  bool any_zero = false;
  for (int d = 0; d < ndim; ++d) {
    const uint8_t* p = bytes.data() + 4 + 4 * d;
    uint32_t size = (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
    h.dims.push_back(int64_t(size));
    any_zero = any_zero || size == 0;
  }
  // Four sizes below 2^32 can multiply past 2^64; an empty dimension makes the product 0 whatever
  // the others claim.
  uint64_t product = 1;
  if (any_zero) {
    product = 0;
  } else {
    for (int64_t s : h.dims)
      if (__builtin_mul_overflow(product, uint64_t(s), &product))
        fail("{}: IDX sizes {} overflow 64 bits", what, dims_str(h.dims));
  }
  const size_t available = n - h.header_bytes;
  if (product > available)
    fail("{}: truncated: header claims {} = {} bytes of data, file holds {} after its {}-byte header", what,
         dims_str(h.dims), product, available, h.header_bytes);
  if (product < available)
    fail("{}: trailing bytes: header claims {} = {} bytes of data, file holds {} after its {}-byte header ({} extra)",
         what, dims_str(h.dims), product, available, h.header_bytes, available - product);
  h.data_bytes = size_t(product);
  return h;
}

// parse_idx over a buffer it may keep: the data moves instead of being copied.
IdxArray take_idx(std::vector<uint8_t>&& bytes, const std::string& what) {
  IdxHeader h = parse_header(bytes, what);
  bytes.erase(bytes.begin(), bytes.begin() + std::ptrdiff_t(h.header_bytes));
  return IdxArray{std::move(h.dims), std::move(bytes)};
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail("{}: no such file", path);
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) fail("{}: cannot read its size: {}", path, ec.message());
  if (size > kMaxIdxBytes) fail("{}: {} bytes, more than the {} an IDX file may hold", path, size, kMaxIdxBytes);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open it for reading", path);
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size()));
  if (in.gcount() != std::streamsize(bytes.size()))
    fail("{}: read {} of its {} bytes", path, in.gcount(), bytes.size());
  if (in.peek() != std::char_traits<char>::eof()) fail("{}: grew while it was being read", path);
  return bytes;
}

// Independent Generator seeds for (run seed, stream, index): splitmix64 finalisers, so that
// neighbouring epochs or steps get unrelated Philox keys.
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
uint64_t stream_seed(uint64_t seed, uint64_t stream, uint64_t index) {
  return splitmix64(splitmix64(seed ^ splitmix64(stream)) ^ index);
}
constexpr uint64_t kPermutationStream = 0x7065726d;  // "perm"
constexpr uint64_t kFlipStream = 0x666c6970;         // "flip"

}  // namespace

IdxArray parse_idx(std::span<const uint8_t> bytes, const std::string& what) {
  IdxHeader h = parse_header(bytes, what);
  auto data = bytes.subspan(h.header_bytes);
  return IdxArray{std::move(h.dims), std::vector<uint8_t>(data.begin(), data.end())};
}

std::vector<uint8_t> gunzip(std::span<const uint8_t> bytes, const std::string& what, size_t max_bytes) {
  z_stream zs{};
  // 16 + MAX_WBITS: a gzip wrapper (header and CRC-32 / length trailer checked by zlib).
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail("{}: zlib could not start inflating (out of memory?)", what);
  struct End {
    z_stream* zs;
    ~End() { inflateEnd(zs); }
  } end{&zs};

  // avail_in is 32-bit: feed the input in pieces.
  constexpr size_t kMaxFeed = size_t(1) << 30;
  size_t fed = 0;
  auto feed = [&] {
    size_t piece = std::min(bytes.size() - fed, kMaxFeed);
    zs.next_in = const_cast<Bytef*>(bytes.data() + fed);
    zs.avail_in = uInt(piece);
    fed += piece;
  };
  auto consumed = [&] { return fed - zs.avail_in; };

  // Inflate into a fixed chunk and append what it produced: the output vector grows
  // geometrically with the bytes actually produced (never past the cap) and is never zero-filled.
  std::vector<uint8_t> out, chunk(size_t(1) << 16);
  feed();
  for (;;) {
    if (zs.avail_in == 0 && fed < bytes.size()) feed();
    zs.next_out = chunk.data();
    zs.avail_out = uInt(chunk.size());
    const int ret = inflate(&zs, Z_NO_FLUSH);
    const size_t got = chunk.size() - zs.avail_out;
    if (got > max_bytes - out.size())
      fail("{}: gzip stream decompresses to more than {} bytes, the most an IDX file may hold", what, max_bytes);
    out.insert(out.end(), chunk.begin(), chunk.begin() + std::ptrdiff_t(got));
    if (ret == Z_STREAM_END) {
      const size_t rest = bytes.size() - consumed();
      if (rest == 0) break;
      // gzip allows concatenated members (what `cat a.gz b.gz` makes); anything else is refused.
      if (!is_gzip(bytes.subspan(consumed())))
        fail("{}: {} bytes after the end of the gzip stream (expected another gzip member or nothing)", what, rest);
      if (inflateReset(&zs) != Z_OK) fail("{}: zlib could not restart inflating", what);
      continue;
    }
    if (ret == Z_OK) continue;
    if (ret == Z_BUF_ERROR && zs.avail_in == 0) {
      // No progress without more input: the next piece, or there is none.
      if (fed == bytes.size())
        fail("{}: truncated gzip stream: it ends after {} compressed bytes without its end marker and trailer", what,
             bytes.size());
      continue;
    }
    if (ret == Z_MEM_ERROR) fail("{}: zlib ran out of memory while inflating", what);
    fail("{}: corrupt gzip stream at compressed byte {}: {}", what, consumed(), zs.msg ? zs.msg : "invalid data");
  }
  return out;
}

IdxArray decode_idx(std::span<const uint8_t> bytes, const std::string& what, size_t max_bytes) {
  if (is_gzip(bytes)) return take_idx(gunzip(bytes, what, max_bytes), what);
  return parse_idx(bytes, what);
}

IdxArray read_idx(const std::string& path) {
  std::vector<uint8_t> bytes = read_file(path);
  if (is_gzip(bytes)) return take_idx(gunzip(bytes, path), path);
  return take_idx(std::move(bytes), path);
}

namespace {

// {train,t10k}-{images-idx3,labels-idx1}-ubyte with or without .gz; the originals of some MNIST
// mirrors spell it with a dot ("train-images.idx3-ubyte").
std::string find_idx_file(const fs::path& dir, const std::string& prefix, const std::string& kind,
                          const std::string& rank) {
  const std::string dash = prefix + "-" + kind + "-" + rank + "-ubyte",
                    dot = prefix + "-" + kind + "." + rank + "-ubyte";
  const std::array<std::string, 4> names{dash + ".gz", dash, dot + ".gz", dot};
  std::error_code ec;
  for (const auto& name : names)
    if (fs::is_regular_file(dir / name, ec)) return (dir / name).string();
  fail("image data: no {}[.gz] in {} (looked for {}, {}, {}, {}); {}", dash, dir.string(), names[0], names[1], names[2],
       names[3], kInstallHint);
}

}  // namespace

ImageDataset load_image_dataset(const std::string& dir, ImageSplit split, int64_t limit) {
  DF_CHECK(limit >= 0, "load_image_dataset: limit must be >= 0 (0 keeps every image), got {}", limit);
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail("image data: folder {} does not exist{}; {}", dir, fs::exists(dir, ec) ? " as a folder" : "", kInstallHint);
  const std::string prefix = split == ImageSplit::Train ? "train" : "t10k";
  const std::string images_path = find_idx_file(dir, prefix, "images", "idx3");
  const std::string labels_path = find_idx_file(dir, prefix, "labels", "idx1");

  IdxArray images = read_idx(images_path);
  IdxArray labels = read_idx(labels_path);
  DF_CHECK(images.dims.size() == 3, "{}: images: expected 3 dimensions [count, height, width], got {} ({})",
           images_path, images.dims.size(), dims_str(images.dims));
  DF_CHECK(labels.dims.size() == 1, "{}: labels: expected 1 dimension [count], got {} ({})", labels_path,
           labels.dims.size(), dims_str(labels.dims));
  const int64_t count = images.dims[0], height = images.dims[1], width = images.dims[2];
  DF_CHECK(labels.dims[0] == count, "image data: {} holds {} images but {} holds {} labels", images_path, count,
           labels_path, labels.dims[0]);
  DF_CHECK(count > 0 && height > 0 && width > 0, "{}: expected at least one image of at least 1x1 pixels, got {}",
           images_path, dims_str(images.dims));
  constexpr int64_t kClasses = 10;
  for (size_t i = 0; i < labels.data.size(); ++i)
    DF_CHECK(labels.data[i] < kClasses, "{}: label {} at index {}: expected class labels 0 to {}", labels_path,
             labels.data[i], i, kClasses - 1);

  const int64_t n = limit > 0 ? std::min(limit, count) : count;
  const int64_t pixels = height * width;
  ImageDataset out;
  out.images = Tensor::empty(Shape{n, 1, height, width}, DType::f32);
  out.labels = Tensor::empty(Shape{n}, DType::i64);
  out.num_classes = kClasses;
  out.source = images_path;
  std::array<float, 256> level;
  for (int v = 0; v < 256; ++v) level[size_t(v)] = float(double(v) / 127.5 - 1.0);
  float* x = out.images.data<float>();
  const uint8_t* p = images.data.data();
  for (int64_t i = 0; i < n * pixels; ++i) x[i] = level[p[i]];
  int64_t* y = out.labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) y[i] = labels.data[size_t(i)];
  return out;
}

ImageBatcher::ImageBatcher(const ImageDataset& data, int64_t batch, uint64_t seed, bool hflip)
    : data_(data), batch_(batch), seed_(seed), hflip_(hflip) {
  DF_CHECK(data.images.defined() && data.images.dim() == 4, "ImageBatcher: expected images [N, C, H, W], got {}",
           data.images.defined() ? data.images.shape().str() : std::string("none"));
  DF_CHECK(data.labels.defined() && data.labels.dim() == 1 && data.labels.size(0) == data.images.size(0),
           "ImageBatcher: expected labels [{}], got {}", data.images.size(0),
           data.labels.defined() ? data.labels.shape().str() : std::string("none"));
  DF_CHECK(data.size() > 0, "ImageBatcher: the dataset holds no images");
  DF_CHECK(batch > 0, "ImageBatcher: batch size must be positive, got {}", batch);
}

const std::vector<int64_t>& ImageBatcher::permutation(int64_t epoch) const {
  if (epoch == cached_epoch_) return cached_permutation_;
  const int64_t n = data_.size();
  // Fisher-Yates driven by one Philox draw per position: floor(u * (i + 1)) over 53-bit
  // uniforms favours no index by more than a relative n / 2^53.
  Generator gen(stream_seed(seed_, kPermutationStream, uint64_t(epoch)));
  Tensor u = rand(Shape{n}, gen, DType::f64);
  const double* uv = u.data<double>();
  cached_permutation_.resize(size_t(n));
  std::iota(cached_permutation_.begin(), cached_permutation_.end(), int64_t(0));
  for (int64_t i = n - 1; i > 0; --i) {
    int64_t j = std::min(i, int64_t(uv[i] * double(i + 1)));
    std::swap(cached_permutation_[size_t(i)], cached_permutation_[size_t(j)]);
  }
  cached_epoch_ = epoch;
  return cached_permutation_;
}

ImageBatch ImageBatcher::batch_at(int64_t step, TensorOptions opts) const {
  DF_CHECK(step >= 0, "ImageBatcher::batch_at: step must be >= 0, got {}", step);
  DF_CHECK(step <= std::numeric_limits<int64_t>::max() / batch_ - 1,
           "ImageBatcher::batch_at: step {} times batch {} overflows", step, batch_);
  DF_CHECK(is_floating(opts.dtype), "ImageBatcher::batch_at: images need a floating dtype, got {}",
           dtype_name(opts.dtype));
  NoGradGuard no_grad;
  const int64_t n = data_.size();
  std::vector<int64_t> index;
  index.reserve(size_t(batch_));
  // Positions [step * batch, (step + 1) * batch) of the stream of per-epoch permutations; a
  // batch may run across an epoch's end (or several, when batch > n).
  for (int64_t pos = step * batch_, end = pos + batch_; pos < end;) {
    const int64_t epoch = pos / n, at = pos % n, take = std::min(end - pos, n - at);
    const std::vector<int64_t>& perm = permutation(epoch);
    index.insert(index.end(), perm.begin() + at, perm.begin() + at + take);
    pos += take;
  }
  Tensor rows = from_vector(index, Shape{batch_});
  ImageBatch b{index_select(data_.images, 0, rows), index_select(data_.labels, 0, rows)};
  if (hflip_) {
    Generator gen(stream_seed(seed_, kFlipStream, uint64_t(step)));
    Tensor chosen = bernoulli(Shape{batch_, 1, 1, 1}, 0.5, gen, DType::b8);
    b.images = where(chosen, flip(b.images, {3}), b.images);
  }
  if (b.images.dtype() != opts.dtype) b.images = b.images.to(opts.dtype);
  if (opts.device != Device::cpu()) {
    b.images = b.images.to(opts.device);
    b.labels = b.labels.to(opts.device);
  }
  return b;
}

}  // namespace dualflow
