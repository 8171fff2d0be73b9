// IDX image data: the reader's round trip (plain and gzipped) and each refusal (magic, element
// type, rank, truncation, trailing bytes, size claims far beyond the file, corrupt gzip), the
// dataset loader's consistency checks on fixture folders, the batcher's epoch permutations,
// determinism, resume property and flips, and Debian's Fashion-MNIST itself.
#include <unistd.h>
#include <zlib.h>
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>

#include "engine/dualflow.h"
#include "tests/engine/test_util.h"
#include "train/image_data.h"

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
using Catch::Matchers::Contains;

constexpr const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";

// A fresh folder per test case, removed afterwards.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name) {
    path = fs::temp_directory_path() / fmt::format("dualflow-idx-{}-{}", name, ::getpid());
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& file) const { return (path / file).string(); }
};

Bytes idx_bytes(const std::vector<uint32_t>& dims, const Bytes& data, uint8_t type = 0x08) {
  Bytes b{0, 0, type, uint8_t(dims.size())};
  for (uint32_t d : dims) {
    b.push_back(uint8_t(d >> 24)), b.push_back(uint8_t(d >> 16));
    b.push_back(uint8_t(d >> 8)), b.push_back(uint8_t(d));
  }
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes pattern(size_t n, unsigned mult = 37) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = uint8_t(i * mult + 11);
  return b;
}

void write_plain(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

void write_gz(const std::string& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  if (!bytes.empty()) REQUIRE(gzwrite(f, bytes.data(), unsigned(bytes.size())) == int(bytes.size()));
  REQUIRE(gzclose(f) == Z_OK);
}

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

Bytes gzipped(const Bytes& bytes) {
  TempDir d("gz");
  write_gz(d / "x.gz", bytes);
  return read_bytes(d / "x.gz");
}

std::string refusal(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) { return e.what(); }
  FAIL("expected a dualflow::Error");
  return {};
}

TEST_CASE("image_data: IDX round trip, plain and gzipped", "[image_data]") {
  TempDir d("roundtrip");
  const Bytes data = pattern(3 * 4 * 5);
  const Bytes file = idx_bytes({3, 4, 5}, data);
  IdxArray a = parse_idx(file, "mem");
  CHECK(a.dims == std::vector<int64_t>{3, 4, 5});
  CHECK(a.data == data);

  write_plain(d / "a-idx3-ubyte", file);
  write_gz(d / "a-idx3-ubyte.gz", file);
  for (const std::string name : {"a-idx3-ubyte", "a-idx3-ubyte.gz"}) {
    INFO(name);
    IdxArray r = read_idx(d / name);
    CHECK(r.dims == a.dims);
    CHECK(r.data == data);
  }
  CHECK(decode_idx(gzipped(file), "mem").data == data);
  CHECK(gunzip(gzipped(file), "mem") == file);
  // Concatenated gzip members (`cat a.gz b.gz`) are one stream.
  const Bytes head(file.begin(), file.begin() + 20), tail(file.begin() + 20, file.end());
  Bytes two = gzipped(head), second = gzipped(tail);
  two.insert(two.end(), second.begin(), second.end());
  CHECK(decode_idx(two, "mem").data == data);

  // 1-D labels, 4-D arrays and empty dimensions parse too.
  CHECK(parse_idx(idx_bytes({7}, pattern(7)), "mem").dims == std::vector<int64_t>{7});
  CHECK(parse_idx(idx_bytes({2, 1, 3, 2}, pattern(12)), "mem").data.size() == 12);
  CHECK(parse_idx(idx_bytes({0, 28, 28}, {}), "mem").data.empty());
}

TEST_CASE("image_data: malformed IDX files are refused with what was expected and given", "[image_data]") {
  const Bytes good = idx_bytes({10, 2, 3}, pattern(60));
  auto refused = [](const Bytes& b) { return refusal([&] { decode_idx(b, "t10k-images-idx3-ubyte"); }); };

  SECTION("wrong magic") {
    Bytes b = good;
    b[1] = 0x01;
    CHECK_THAT(refused(b),
               Contains("t10k-images-idx3-ubyte: IDX magic: expected 00 00 08 xx (unsigned bytes), got 00 01 08 03"));
    CHECK_THAT(refused({'P', 'K', 3, 4, 0, 0}), Contains("got 50 4b 03 04"));
  }
  SECTION("another element type") {
    Bytes b = good;
    b[2] = 0x0d;
    CHECK_THAT(refused(b),
               Contains("expected 00 00 08 xx (unsigned bytes), got 00 00 0d 03 (element type 0d = float32)"));
  }
  SECTION("rank 0 or above 4") {
    CHECK_THAT(refused({0, 0, 8, 0}), Contains("IDX rank: expected 1 to 4 dimensions, got 0"));
    CHECK_THAT(refused(idx_bytes({1, 1, 1, 1, 1}, {7})), Contains("got 5"));
  }
  SECTION("too short for the magic or the header") {
    CHECK_THAT(refused({}), Contains("0 bytes, shorter than the 4-byte magic"));
    CHECK_THAT(refused({0, 0, 8}), Contains("3 bytes, shorter than the 4-byte magic"));
    Bytes b(good.begin(), good.begin() + 10);
    CHECK_THAT(refused(b), Contains("truncated IDX header: 3 dimensions need 16 bytes, file holds 10"));
  }
  SECTION("truncated data") {
    Bytes b(good.begin(), good.end() - 1);
    CHECK_THAT(refused(b), Contains("truncated: header claims 10x2x3 = 60 bytes of data, file holds 59"));
    CHECK_THAT(refused(gzipped(b)), Contains("truncated: header claims 10x2x3 = 60 bytes"));
  }
  SECTION("trailing bytes") {
    Bytes b = good;
    b.push_back(0), b.push_back(0);
    CHECK_THAT(refused(b), Contains("trailing bytes: header claims 10x2x3 = 60 bytes of data, file holds 62"));
    CHECK_THAT(refused(b), Contains("(2 extra)"));
    CHECK_THAT(refused(gzipped(b)), Contains("(2 extra)"));
  }
  SECTION("sizes claiming far more than the file holds, refused before allocating") {
    // 4e9 x 4e9 bytes would be 16 EB: the claim is compared with the 3 bytes present.
    CHECK_THAT(refused(idx_bytes({4000000000u, 4000000000u}, {1, 2, 3})),
               Contains("header claims 4000000000x4000000000 = 16000000000000000000 bytes of data, file holds 3"));
    CHECK_THAT(refused(idx_bytes({0xffffffffu, 0xffffffffu, 0xffffffffu}, {})), Contains("overflow 64 bits"));
    // An empty dimension makes the product 0 whatever the others claim.
    CHECK_THAT(refused(idx_bytes({0xffffffffu, 0xffffffffu, 0xffffffffu, 0}, {1})), Contains("= 0 bytes of data"));
  }
  SECTION("gzip bytes given to parse_idx") {
    CHECK_THAT(refusal([&] { parse_idx(gzipped(good), "x.gz"); }), Contains("a gzip stream"));
  }
}

TEST_CASE("image_data: corrupt, truncated or oversized gzip streams are refused", "[image_data]") {
  const Bytes file = idx_bytes({50, 4, 4}, pattern(800, 7));
  const Bytes gz = gzipped(file);
  auto refused = [](const Bytes& b) { return refusal([&] { decode_idx(b, "x.gz"); }); };

  SECTION("corrupt deflate data or CRC") {
    Bytes b = gz;
    for (size_t i = 12; i < b.size() - 8; ++i) b[i] ^= 0x5a;
    CHECK_THAT(refused(b), Contains("x.gz: corrupt gzip stream"));
    Bytes c = gz;
    c[c.size() - 6] ^= 0xff;  // the CRC-32 of the trailer
    CHECK_THAT(refused(c), Contains("corrupt gzip stream"));
    Bytes h = gz;
    h[2] = 0x07;  // compression method other than deflate
    CHECK_THAT(refused(h), Contains("corrupt gzip stream"));
  }
  SECTION("truncated") {
    for (size_t keep : {size_t(2), size_t(10), gz.size() / 2, gz.size() - 1}) {
      INFO(keep);
      CHECK_THAT(refused(Bytes(gz.begin(), gz.begin() + std::ptrdiff_t(keep))), Contains("truncated gzip stream"));
    }
  }
  SECTION("bytes after the stream") {
    Bytes b = gz;
    b.push_back(0);
    CHECK_THAT(refused(b), Contains("1 bytes after the end of the gzip stream"));
  }
  SECTION("output beyond the cap") {
    CHECK(gunzip(gz, "x.gz", file.size()) == file);
    CHECK_THAT(refusal([&] { gunzip(gz, "x.gz", file.size() - 1); }), Contains("decompresses to more than 815 bytes"));
    CHECK_THAT(refusal([&] { decode_idx(gz, "x.gz", 100); }), Contains("decompresses to more than 100 bytes"));
    CHECK(decode_idx(gz, "x.gz", file.size()).data.size() == 800);
    // A highly compressible 8 MiB stream stops at the cap, having held at most cap + 1 bytes.
    Bytes zeros(size_t(8) << 20, 0);
    Bytes bomb = gzipped(zeros);
    CHECK(bomb.size() < (size_t(1) << 20));
    CHECK_THAT(refusal([&] { gunzip(bomb, "bomb.gz", size_t(1) << 20); }), Contains("more than 1048576 bytes"));
  }
}

// A folder in the layout of MNIST / Fashion-MNIST with n images of h x w pixels.
struct Fixture {
  Bytes pixels, labels;
  std::vector<uint32_t> image_dims, label_dims;
};
Fixture fixture(uint32_t n, uint32_t h, uint32_t w) {
  Fixture f{pattern(size_t(n) * h * w, 53), Bytes(n), {n, h, w}, {n}};
  for (uint32_t i = 0; i < n; ++i) f.labels[i] = uint8_t((i * 7) % 10);
  f.pixels[0] = 0, f.pixels[1] = 255;
  return f;
}
void write_fixture(const TempDir& d, const Fixture& f, const std::string& prefix, bool gz,
                   const std::string& sep = "-") {
  auto write = gz ? write_gz : write_plain;
  const std::string ext = gz ? ".gz" : "";
  write(d / (prefix + "-images" + sep + "idx3-ubyte" + ext), idx_bytes(f.image_dims, f.pixels));
  write(d / (prefix + "-labels" + sep + "idx1-ubyte" + ext), idx_bytes(f.label_dims, f.labels));
}

TEST_CASE("image_data: load_image_dataset reads both splits, plain or gzipped, into [-1, 1]", "[image_data]") {
  TempDir d("load");
  const Fixture train = fixture(12, 4, 3), test = fixture(5, 4, 3);
  write_fixture(d, train, "train", true);
  write_fixture(d, test, "t10k", false);  // MNIST's own downloads come unzipped

  ImageDataset ds = load_image_dataset(d.path.string(), ImageSplit::Train);
  REQUIRE(ds.images.shape() == Shape{12, 1, 4, 3});
  REQUIRE(ds.images.dtype() == DType::f32);
  REQUIRE(ds.labels.shape() == Shape{12});
  REQUIRE(ds.labels.dtype() == DType::i64);
  CHECK(ds.size() == 12);
  CHECK(ds.num_classes == 10);
  CHECK(ds.source == d / "train-images-idx3-ubyte.gz");
  std::vector<float> x = ds.images.to_vector<float>();
  for (size_t i = 0; i < x.size(); ++i) REQUIRE(x[i] == float(train.pixels[i] / 127.5 - 1.0));
  CHECK(x[0] == -1.0f);
  CHECK(x[1] == 1.0f);
  std::vector<int64_t> y = ds.labels.to_vector<int64_t>();
  for (size_t i = 0; i < y.size(); ++i) REQUIRE(y[i] == train.labels[i]);

  ImageDataset te = load_image_dataset(d.path.string(), ImageSplit::Test);
  CHECK(te.images.shape() == Shape{5, 1, 4, 3});
  CHECK(te.source == d / "t10k-images-idx3-ubyte");

  ImageDataset few = load_image_dataset(d.path.string(), ImageSplit::Train, 4);
  CHECK(few.images.shape() == Shape{4, 1, 4, 3});
  CHECK(max_abs_diff(few.images, ds.images.narrow(0, 0, 4)) == 0);
  CHECK(load_image_dataset(d.path.string(), ImageSplit::Train, 1000).size() == 12);
  CHECK_THAT(refusal([&] { load_image_dataset(d.path.string(), ImageSplit::Train, -1); }), Contains("got -1"));

  // The gzipped file wins over a plain one of the same name.
  write_plain(d / "train-images-idx3-ubyte", Bytes{1, 2, 3});
  CHECK(load_image_dataset(d.path.string(), ImageSplit::Train).size() == 12);

  // The dotted spelling of some MNIST mirrors ("train-images.idx3-ubyte").
  TempDir m("load-mnist");
  write_fixture(m, fixture(6, 28, 28), "train", false, ".");
  CHECK(load_image_dataset(m.path.string(), ImageSplit::Train).images.shape() == Shape{6, 1, 28, 28});
}

TEST_CASE("image_data: inconsistent or missing dataset files are refused", "[image_data]") {
  TempDir d("bad");
  const std::string dir = d.path.string();
  auto load = [&] { return refusal([&] { load_image_dataset(dir, ImageSplit::Train); }); };
  Fixture f = fixture(8, 3, 3);

  SECTION("missing folder") {
    std::string msg = refusal([&] { load_image_dataset(dir + "/nope", ImageSplit::Train); });
    CHECK_THAT(msg, Contains(dir + "/nope does not exist"));
    CHECK_THAT(msg, Contains("apt-get install dataset-fashion-mnist"));
  }
  SECTION("missing files") {
    CHECK_THAT(load(), Contains("no train-images-idx3-ubyte[.gz] in " + dir));
    CHECK_THAT(load(), Contains("apt-get install dataset-fashion-mnist"));
    write_plain(d / "train-images-idx3-ubyte", idx_bytes(f.image_dims, f.pixels));
    CHECK_THAT(load(), Contains("no train-labels-idx1-ubyte[.gz] in " + dir));
    CHECK_THAT(refusal([&] { load_image_dataset(dir, ImageSplit::Test); }), Contains("no t10k-images-idx3-ubyte[.gz]"));
  }
  SECTION("label count differing from the image count") {
    f.labels.pop_back();
    f.label_dims = {7};
    write_fixture(d, f, "train", true);
    CHECK_THAT(load(), Contains("train-images-idx3-ubyte.gz holds 8 images but"));
    CHECK_THAT(load(), Contains("train-labels-idx1-ubyte.gz holds 7 labels"));
  }
  SECTION("a label >= 10") {
    f.labels[5] = 10;
    write_fixture(d, f, "train", false);
    CHECK_THAT(load(), Contains("label 10 at index 5: expected class labels 0 to 9"));
  }
  SECTION("images not 3-D, labels not 1-D") {
    f.image_dims = {8, 9};
    write_fixture(d, f, "train", false);
    CHECK_THAT(load(), Contains("images: expected 3 dimensions [count, height, width], got 2 (8x9)"));
    f.image_dims = {8, 3, 3};
    f.label_dims = {4, 2};
    write_fixture(d, f, "train", false);
    CHECK_THAT(load(), Contains("labels: expected 1 dimension [count], got 2 (4x2)"));
  }
  SECTION("no images") {
    write_fixture(d, Fixture{{}, {}, {0, 28, 28}, {0}}, "train", false);
    CHECK_THAT(load(), Contains("expected at least one image of at least 1x1 pixels, got 0x28x28"));
  }
  SECTION("a malformed file names its path") {
    write_fixture(d, f, "train", true);
    write_plain(d / "train-images-idx3-ubyte.gz", Bytes{0x1f, 0x8b, 8, 0, 0});
    CHECK_THAT(load(), Contains(d / "train-images-idx3-ubyte.gz" + ": truncated gzip stream"));
  }
}

// n images of h x w whose pixel (i, r, c) is i * 100 + r * 10 + c: the row of each image and
// whether it was mirrored can be read off any batch.
ImageDataset indexed_dataset(int64_t n, int64_t h = 2, int64_t w = 3) {
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < w; ++c) x.push_back(float(i * 100 + r * 10 + c));
    y.push_back(i % 10);
  }
  ImageDataset ds;
  ds.images = from_vector(x, Shape{n, 1, h, w});
  ds.labels = from_vector(y, Shape{n});
  return ds;
}

// (row index, mirrored) of each image of a batch of indexed_dataset.
std::vector<std::pair<int64_t, bool>> decode(const ImageBatch& b) {
  const int64_t bsz = b.images.size(0), h = b.images.size(2), w = b.images.size(3);
  std::vector<float> x = b.images.to(Device::cpu()).to_vector<float>();
  std::vector<int64_t> y = b.labels.to(Device::cpu()).to_vector<int64_t>();
  std::vector<std::pair<int64_t, bool>> out;
  for (int64_t k = 0; k < bsz; ++k) {
    const float* im = x.data() + k * h * w;
    const int64_t i = int64_t(im[0]) / 100;
    bool mirrored = im[0] != float(i * 100);
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < w; ++c) {
        int64_t src = mirrored ? w - 1 - c : c;
        REQUIRE(im[r * w + c] == float(i * 100 + r * 10 + src));
      }
    REQUIRE(y[size_t(k)] == i % 10);
    out.emplace_back(i, mirrored);
  }
  return out;
}

bool same_batch(const ImageBatch& a, const ImageBatch& b) {
  return max_abs_diff(a.images, b.images) == 0 && a.labels.to_vector<int64_t>() == b.labels.to_vector<int64_t>();
}

TEST_CASE("image_data: each epoch visits every image exactly once, in a fresh order", "[image_data]") {
  const int64_t n = 37, batch = 8, epochs = 4;
  ImageDataset ds = indexed_dataset(n);
  ImageBatcher batcher(ds, batch, 5);
  CHECK(batcher.batch_size() == batch);
  std::vector<int64_t> stream;
  for (int64_t s = 0; int64_t(stream.size()) < n * epochs; ++s)
    for (auto [i, mirrored] : decode(batcher.batch_at(s, {}))) {
      stream.push_back(i);
      REQUIRE_FALSE(mirrored);
    }
  std::set<std::vector<int64_t>> orders;
  for (int64_t e = 0; e < epochs; ++e) {
    std::vector<int64_t> epoch(stream.begin() + e * n, stream.begin() + (e + 1) * n), sorted = epoch;
    std::sort(sorted.begin(), sorted.end());
    for (int64_t i = 0; i < n; ++i) REQUIRE(sorted[size_t(i)] == i);
    orders.insert(epoch);
  }
  CHECK(orders.size() == size_t(epochs));

  // A batch larger than the dataset runs through whole epochs.
  ImageBatcher big(ds, 2 * n + 3, 5);
  std::vector<int64_t> first;
  for (auto [i, m] : decode(big.batch_at(0, {}))) first.push_back(i);
  CHECK(std::vector<int64_t>(first.begin(), first.begin() + 2 * n) ==
        std::vector<int64_t>(stream.begin(), stream.begin() + 2 * n));

  CHECK_THAT(refusal([&] { (void)ImageBatcher(ds, 0, 1); }), Contains("batch size must be positive, got 0"));
  CHECK_THAT(refusal([&] { batcher.batch_at(-1, {}); }), Contains("step must be >= 0, got -1"));
  CHECK_THAT(refusal([&] { batcher.batch_at(0, DType::i64); }), Contains("floating dtype"));
}

TEST_CASE("image_data: batches are a pure function of seed and step", "[image_data]") {
  ImageDataset ds = indexed_dataset(50);
  for (bool hflip : {false, true}) {
    INFO("hflip " << hflip);
    ImageBatcher a(ds, 16, 11, hflip), b(ds, 16, 11, hflip), other(ds, 16, 12, hflip);
    std::vector<ImageBatch> forward;
    for (int64_t s = 0; s < 12; ++s) forward.push_back(a.batch_at(s, {}));
    // The same seed gives the same batches; a resumed run (any order of calls, a fresh batcher)
    // sees exactly the batches of the uninterrupted one.
    for (int64_t s = 11; s >= 0; --s) REQUIRE(same_batch(b.batch_at(s, {}), forward[size_t(s)]));
    for (int64_t s : {7, 0, 9, 3, 3, 11}) REQUIRE(same_batch(a.batch_at(s, {}), forward[size_t(s)]));
    ImageBatcher resumed(ds, 16, 11, hflip);
    REQUIRE(same_batch(resumed.batch_at(8, {}), forward[8]));
    int differing = 0;
    for (int64_t s = 0; s < 12; ++s) differing += !same_batch(other.batch_at(s, {}), forward[size_t(s)]);
    CHECK(differing == 12);
    // f64 images hold the same values.
    REQUIRE(max_abs_diff(a.batch_at(4, DType::f64).images, forward[4].images.to(DType::f64)) == 0);
  }
}

TEST_CASE("image_data: hflip mirrors about half the images, exactly", "[image_data]") {
  ImageDataset ds = indexed_dataset(40, 3, 4);
  ImageBatcher plain(ds, 10, 3), flipping(ds, 10, 3, true);
  int64_t mirrored = 0, total = 0, patterns_differ = 0;
  std::vector<bool> previous;
  for (int64_t s = 0; s < 200; ++s) {
    auto p = decode(plain.batch_at(s, {}));
    auto f = decode(flipping.batch_at(s, {}));  // each row is its image or that image's exact mirror
    std::vector<bool> chosen;
    for (size_t k = 0; k < p.size(); ++k) {
      REQUIRE(f[k].first == p[k].first);  // flipping changes no sample's place in the order
      chosen.push_back(f[k].second);
      mirrored += f[k].second;
      ++total;
    }
    patterns_differ += chosen != previous;
    previous = chosen;
  }
  CHECK(mirrored > total * 45 / 100);
  CHECK(mirrored < total * 55 / 100);
  CHECK(patterns_differ > 190);
}

TEST_CASE("image_data: CUDA batches equal the CPU ones", "[image_data][cuda]") {
  ImageDataset ds = indexed_dataset(30);
  ImageBatcher b(ds, 12, 2, true);
  for (int64_t s : {0, 3}) {
    ImageBatch cpu = b.batch_at(s, {}), gpu = b.batch_at(s, Device::cuda());
    REQUIRE(gpu.images.device() == Device::cuda());
    REQUIRE(gpu.labels.device() == Device::cuda());
    REQUIRE(max_abs_diff(gpu.images.to(Device::cpu()), cpu.images) == 0);
    REQUIRE(decode(gpu) == decode(cpu));
  }
}

TEST_CASE("image_data: Debian's Fashion-MNIST", "[image_data]") {
  // dataset-fashion-mnist is a declared dependency (tools/setup.sh), so its absence is a failure.
  auto t0 = std::chrono::steady_clock::now();
  ImageDataset train = load_image_dataset(kFashionMnist, ImageSplit::Train);
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ImageDataset test = load_image_dataset(kFashionMnist, ImageSplit::Test);
  REQUIRE(train.images.shape() == Shape{60000, 1, 28, 28});
  REQUIRE(test.images.shape() == Shape{10000, 1, 28, 28});
  REQUIRE(train.labels.shape() == Shape{60000});
  REQUIRE(test.labels.shape() == Shape{10000});
  CHECK(amin(train.images).item() == -1.0);
  CHECK(amax(train.images).item() == 1.0);
  CHECK(amin(test.images).item() == -1.0);
  CHECK(amax(test.images).item() == 1.0);
  std::map<int64_t, int64_t> train_counts, test_counts;
  for (int64_t y : train.labels.to_vector<int64_t>()) ++train_counts[y];
  for (int64_t y : test.labels.to_vector<int64_t>()) ++test_counts[y];
  REQUIRE(train_counts.size() == 10);
  REQUIRE(test_counts.size() == 10);
  for (auto [label, count] : train_counts) CHECK(count == 6000);
  for (auto [label, count] : test_counts) CHECK(count == 1000);
  // The first images of both splits are ankle boots (class 9).
  CHECK(train.labels.to_vector<int64_t>()[0] == 9);
  CHECK(test.labels.to_vector<int64_t>()[0] == 9);

  // Batches of 64 from 60000 images: the epoch's permutation is drawn once, each batch gathers
  // 64 rows (the median over 200 steps, robust to a busy machine).
  ImageBatcher batcher(train, 64, 0, true);
  batcher.batch_at(0, {});
  std::vector<double> batch_ms;
  for (int s = 1; s <= 200; ++s) {
    auto t1 = std::chrono::steady_clock::now();
    ImageBatch b = batcher.batch_at(s, {});
    batch_ms.push_back(1e3 * std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count());
    REQUIRE(b.images.shape() == Shape{64, 1, 28, 28});
  }
  std::nth_element(batch_ms.begin(), batch_ms.begin() + 100, batch_ms.end());
  WARN(fmt::format("Fashion-MNIST train: loaded in {:.3f} s; a batch of 64 with flips takes {:.3f} ms (median)", load_s,
                   batch_ms[100]));
  CHECK(batch_ms[100] < 5.0);
}

}  // namespace
}  // namespace dualflow::testing
