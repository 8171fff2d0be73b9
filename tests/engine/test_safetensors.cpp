// safetensors I/O: bit-exact round trips for every dtype and layout, a file written by the
// reference Python library (tests/fixtures/mixed.safetensors, made by
// tools/reference/make_safetensors_fixture.py), refusal of every malformed header the format
// forbids, and saves that fail without touching the file they were meant to replace.
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "test_util.h"

#ifndef DUALFLOW_FIXTURE_DIR
#error "DUALFLOW_FIXTURE_DIR must name tests/fixtures"
#endif

namespace dualflow::testing {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "dualflow-st-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  fs::path path_;
};

Bytes read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void write_file(const std::string& path, const Bytes& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  REQUIRE(f.good());
}

// A tensor's values as bytes in row-major order, whatever its device and strides.
Bytes bytes_of(const Tensor& t) {
  Tensor c = t.detach().to(Device::cpu()).contiguous();
  Bytes b(size_t(c.numel()) * c.element_size());
  if (!b.empty()) std::memcpy(b.data(), c.raw_data(), b.size());
  return b;
}

template <class T>
Tensor from_raw(const std::vector<T>& values, const Shape& shape, DType dtype) {
  REQUIRE(values.size() * sizeof(T) == size_t(shape.numel()) * dtype_size(dtype));
  Tensor t = Tensor::empty(shape, dtype);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}

// A file image: length prefix, header text, data bytes (no padding unless the header has it).
Bytes make_file(const std::string& header, const Bytes& data = {}) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(char(uint8_t(uint64_t(header.size()) >> (8 * i))));
  s += header;
  s.append(data.begin(), data.end());
  return Bytes(s.begin(), s.end());
}

Bytes prefix_only(uint64_t n, size_t extra_bytes) {
  Bytes b(8 + extra_bytes, uint8_t('{'));
  for (int i = 0; i < 8; ++i) b[i] = uint8_t(n >> (8 * i));
  return b;
}

SafetensorsContent parse(const Bytes& b) { return parse_safetensors(b.data(), b.size(), "case.safetensors"); }

const Tensor& find(const SafetensorsContent& c, const std::string& name) {
  for (const auto& [n, t] : c.tensors)
    if (n == name) return t;
  FAIL("no tensor named " << name);
  static Tensor none;
  return none;
}

void require_same(const Tensor& loaded, const Tensor& source) {
  REQUIRE(loaded.device().is_cpu());
  if (loaded.numel() > 0) REQUIRE(loaded.is_contiguous());  // engine's is_contiguous says no for some empty shapes
  REQUIRE(loaded.dtype() == source.dtype());
  REQUIRE(loaded.shape() == source.shape());
  REQUIRE(bytes_of(loaded) == bytes_of(source));
}

constexpr const char* kOneF32 = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

}  // namespace

TEST_CASE("save then load is bit-exact for every dtype, layout and edge shape", "[safetensors]") {
  const float f32_inf = std::numeric_limits<float>::infinity();
  Tensor f32 = from_raw(std::vector<uint32_t>{0x7fc00001u, 0xff800001u /* signalling NaN */, 0x00000001u, 0x80000000u,
                                              float_bits(f32_inf), float_bits(-1.5f)},
                        Shape{2, 3}, DType::f32);
  Tensor f64 = from_raw(std::vector<uint64_t>{0x7ff0000000000001ull, 0xfff8000000000123ull, 0x0000000000000001ull,
                                              0x8000000000000000ull, 0x3fd5555555555555ull},
                        Shape{5}, DType::f64);
  Tensor bf16 = from_raw(std::vector<uint16_t>{0x7fc1, 0xff81, 0x7f80, 0xff80, 0x0001, 0x8000, 0x3f80, 0xc049},
                         Shape{2, 2, 2}, DType::bf16);
  Tensor f16 = from_raw(std::vector<uint16_t>{0x7e01, 0x7d00, 0x7c00, 0xfc00, 0x0001, 0x8000, 0x3c00, 0xc248},
                        Shape{4, 2}, DType::f16);
  Tensor i64 =
      from_raw(std::vector<int64_t>{std::numeric_limits<int64_t>::min(), -1, 0, std::numeric_limits<int64_t>::max()},
               Shape{4}, DType::i64);
  Tensor i32 = from_raw(
      std::vector<int32_t>{std::numeric_limits<int32_t>::min(), -7, 0, 7, 1 << 30, std::numeric_limits<int32_t>::max()},
      Shape{3, 2}, DType::i32);
  Tensor b8 = from_raw(std::vector<uint8_t>{1, 0, 0, 1, 1}, Shape{5}, DType::b8);
  Tensor grid = arange(24, DType::f64).reshape(Shape{2, 3, 4});
  Tensor transposed = grid.permute({2, 0, 1});                                                     // non-contiguous
  Tensor strided = grid.slice(2, 1, 4, 2).select(0, 1);                                            // offset and step
  Tensor broadcast = from_vector(std::vector<float>{1.f, -2.f}, Shape{2, 1}).expand(Shape{2, 3});  // stride 0
  Tensor scalar = scalar_tensor(-3.25, DType::f64);                                                // 0-d
  Tensor empty_f32 = zeros(Shape{0, 5});
  Tensor empty_i32 = zeros(Shape{3, 0, 2}, DType::i32);
  REQUIRE_FALSE(transposed.is_contiguous());
  REQUIRE_FALSE(strided.is_contiguous());

  NamedTensors tensors = {{"w.f32", f32},
                          {"w.f64", f64},
                          {"w.bf16", bf16},
                          {"w.f16", f16},
                          {"idx.i64", i64},
                          {"idx.i32", i32},
                          {"mask", b8},
                          {"empty.first", empty_f32},
                          {"view.permute", transposed},
                          {"view.slice", strided},
                          {"view.expand", broadcast},
                          {"scalar", scalar},
                          {"empty.i32", empty_i32}};
  TempDir dir;
  std::string path = dir.file("all.safetensors");
  save_safetensors(path, tensors);

  SafetensorsContent loaded = load_safetensors(path);
  REQUIRE(loaded.metadata.empty());
  REQUIRE(loaded.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    INFO(tensors[i].first);
    REQUIRE(loaded.tensors[i].first == tensors[i].first);  // the caller's order
    require_same(loaded.tensors[i].second, tensors[i].second);
  }
  REQUIRE(find(loaded, "scalar").dim() == 0);
  REQUIRE(find(loaded, "scalar").item() == -3.25);
  REQUIRE(std::isnan(find(loaded, "w.f32").to_vector<float>()[0]));

  // The same bytes through the in-memory parser, and the header alone.
  Bytes file = read_file(path);
  SafetensorsContent parsed = parse_safetensors(file.data(), file.size(), path);
  for (size_t i = 0; i < tensors.size(); ++i) require_same(parsed.tensors[i].second, tensors[i].second);
  SafetensorsHeader header = inspect_safetensors(path);
  REQUIRE(header.entries.size() == tensors.size());
  REQUIRE(header.data_start % 8 == 0);
  REQUIRE(header.data_start + header.data_size == file.size());
  std::vector<SafetensorsEntry> by_offset = header.entries;
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const auto& a, const auto& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SafetensorsEntry& e = header.entries[i];
    REQUIRE(e.name == tensors[i].first);
    REQUIRE(e.dtype == tensors[i].second.dtype());
    REQUIRE(e.shape == tensors[i].second.shape());
    REQUIRE(e.begin % dtype_size(e.dtype) == 0);  // data laid out by descending element size
  }
  uint64_t offset = 0;
  for (const SafetensorsEntry& e : by_offset) {
    REQUIRE(e.begin == offset);
    offset = e.end;
  }
  REQUIRE(offset == header.data_size);
}

TEST_CASE("the written header is the reference layout, space-padded to 8 bytes", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("one.safetensors");
  save_safetensors(path, {{"a", from_vector(std::vector<float>{1.f, 2.f}, Shape{2})}});
  Bytes file = read_file(path);
  std::string expected = std::string("{") + kOneF32 + "}";
  expected.append((8 - expected.size() % 8) % 8, ' ');
  REQUIRE(file.size() == 8 + expected.size() + 8);
  REQUIRE(file[0] == expected.size());
  REQUIRE(std::all_of(file.begin() + 1, file.begin() + 8, [](uint8_t b) { return b == 0; }));
  REQUIRE(std::string(file.begin() + 8, file.begin() + 8 + long(expected.size())) == expected);

  save_safetensors(path, {}, {{"k", "v"}});
  std::string meta_only = R"({"__metadata__":{"k":"v"}})";
  meta_only.append((8 - meta_only.size() % 8) % 8, ' ');
  REQUIRE(read_file(path) == make_file(meta_only));
  REQUIRE(load_safetensors(path).tensors.empty());
}

TEST_CASE("metadata round-trips exactly", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("meta.safetensors");
  std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"config", R"({"lr": 1e-4, "name": "a \"quoted\" \\ path"})"},
      {"empty", ""},
      {"unicode", "σ_min → 0 ✓"},
      {"lines", "one\ntwo\tthree\x01"},
      {"step", "123456789"},
  };
  save_safetensors(path, {{"x", ones(Shape{3})}}, metadata);
  SafetensorsContent c = load_safetensors(path);
  REQUIRE(c.metadata == metadata);
  REQUIRE(inspect_safetensors(path).metadata == metadata);
  REQUIRE(c.tensors.size() == 1);
  require_same(c.tensors[0].second, ones(Shape{3}));
}

TEST_CASE("a file written by Python's safetensors loads bit-exactly", "[safetensors]") {
  std::string path = std::string(DUALFLOW_FIXTURE_DIR) + "/mixed.safetensors";
  SafetensorsContent c = load_safetensors(path);
  REQUIRE(c.metadata ==
          std::map<std::string, std::string>{{"format", "np"}, {"source", "make_safetensors_fixture.py"}});
  REQUIRE(c.tensors.size() == 8);

  // Values rebuilt from the formulas in make_safetensors_fixture.py.
  std::vector<float> f32;
  for (int i = 0; i < 12; ++i) f32.push_back(float(i - 6) * 0.75f);
  std::vector<double> f64;
  for (int i = 0; i < 5; ++i) f64.push_back((double(i) - 2.0) / 3.0);
  std::vector<uint16_t> f16;
  for (int i = 0; i < 8; ++i) f16.push_back(f16_t(float(i - 4) * 0.125f).bits);
  std::vector<int64_t> i64;
  for (int i = 0; i < 6; ++i) i64.push_back(int64_t(i - 3) * 1'000'000'000'000);
  std::vector<int32_t> i32;
  for (int i = 0; i < 8; ++i) i32.push_back((i - 4) * 7);
  std::vector<uint8_t> mask;
  for (int i = 0; i < 6; ++i) mask.push_back(i % 3 == 0);

  require_same(find(c, "f32"), from_raw(f32, Shape{3, 4}, DType::f32));
  require_same(find(c, "f64"), from_raw(f64, Shape{5}, DType::f64));
  require_same(find(c, "f16"), from_raw(f16, Shape{2, 4}, DType::f16));
  require_same(find(c, "i64"), from_raw(i64, Shape{2, 3}, DType::i64));
  require_same(find(c, "i32"), from_raw(i32, Shape{2, 2, 2}, DType::i32));
  require_same(find(c, "bool"), from_raw(mask, Shape{6}, DType::b8));
  require_same(find(c, "scalar"), from_raw(std::vector<float>{2.5f}, Shape{}, DType::f32));
  require_same(find(c, "empty"), zeros(Shape{0, 3}));

  // Returned in header order, which the reference writer makes the order of the data (sorted
  // by alignment, then name).
  SafetensorsHeader h = inspect_safetensors(path);
  for (size_t i = 0; i < c.tensors.size(); ++i) {
    REQUIRE(h.entries[i].name == c.tensors[i].first);
    if (i > 0) REQUIRE(h.entries[i].begin >= h.entries[i - 1].end);
  }
  Bytes file = read_file(path);
  REQUIRE(parse(file).tensors.size() == 8);
}

TEST_CASE("headers the format allows are accepted", "[safetensors]") {
  REQUIRE(parse(make_file("{}")).tensors.empty());
  REQUIRE(parse(make_file("{}      ")).tensors.empty());  // space padding
  REQUIRE(parse(make_file(R"({"__metadata__":{}})")).metadata.empty());
  // Zero-sized tensors anywhere, a 0-d tensor, and header order that differs from data order.
  Bytes data(12);
  float v[3] = {1.f, 2.f, 3.f};
  std::memcpy(data.data(), v, 12);
  SafetensorsContent c = parse(make_file(R"({"z2":{"dtype":"I64","shape":[4,0],"data_offsets":[12,12]},)"
                                         R"("s":{"dtype":"F32","shape":[],"data_offsets":[8,12]},)"
                                         R"("a":{"data_offsets":[0,8],"shape":[2],"dtype":"F32"},)"
                                         R"("z1":{"dtype":"BF16","shape":[0],"data_offsets":[0,0]}})",
                                         data));
  REQUIRE(c.tensors.size() == 4);  // in header order
  REQUIRE(c.tensors[0].first == "z2");
  REQUIRE(c.tensors[1].first == "s");
  REQUIRE(c.tensors[2].first == "a");
  REQUIRE(c.tensors[3].first == "z1");
  REQUIRE(c.tensors[0].second.shape() == Shape{4, 0});
  REQUIRE(c.tensors[1].second.dim() == 0);
  REQUIRE(c.tensors[1].second.item() == 3.0);
  REQUIRE(c.tensors[2].second.to_vector<float>() == std::vector<float>{1.f, 2.f});
  REQUIRE(c.tensors[3].second.dtype() == DType::bf16);
}

TEST_CASE("malformed files are refused with the source, the expectation and what was found", "[safetensors]") {
  auto refused = [](const Bytes& b, const std::string& expected) {
    INFO(std::string(b.begin() + std::min<size_t>(8, b.size()), b.end()));
    REQUIRE_THROWS_WITH(parse(b), Catch::Contains("case.safetensors") && Catch::Contains(expected));
  };
  auto one = [](const std::string& entry, const Bytes& data = Bytes(8)) { return make_file("{" + entry + "}", data); };

  SECTION("sizes") {
    refused(Bytes(5, 0), "at least 8");
    refused(Bytes{}, "at least 8");
    refused(prefix_only(1000, 20), "header length is 1000 bytes but only 20 bytes follow");
    refused(prefix_only(100'000'001, 4), "at most 100000000");
    refused(prefix_only(uint64_t(1) << 63, 4), "at most 100000000");
    refused(prefix_only(~uint64_t(0), 4), "at most 100000000");
  }
  SECTION("not a JSON object") {
    refused(make_file(""), "not valid JSON");
    refused(make_file("{not json}"), "not valid JSON");
    refused(make_file("{} trailing"), "not valid JSON");
    refused(make_file(std::string("{}\0\0\0", 5)), "NUL byte at offset 2");  // padding must be spaces
    refused(make_file(std::string("{\"a\0\":1}", 8)), "NUL byte at offset 3");
    refused(make_file("{\"a\xff\":1}"), "not valid JSON");  // not UTF-8
    refused(make_file("[1, 2]"), "must be a JSON object, got array");
    refused(make_file("\"text\""), "must be a JSON object, got string");
  }
  SECTION("entry structure and JSON types") {
    refused(one(R"("a":3)"), "expected an object with dtype, shape and data_offsets, got number 3");
    refused(one(R"("a":{"shape":[2],"data_offsets":[0,8]})"), "missing field \"dtype\"");
    refused(one(R"("a":{"dtype":"F32","data_offsets":[0,8]})"), "missing field \"shape\"");
    refused(one(R"("a":{"dtype":"F32","shape":[2]})"), "missing field \"data_offsets\"");
    refused(one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"offsets":[0,8]})"),
            "unexpected field \"offsets\"");
    refused(one(R"("a":{"dtype":5,"shape":[2],"data_offsets":[0,8]})"), "dtype must be a string, got 5");
    refused(one(R"("a":{"dtype":"F32","shape":"2","data_offsets":[0,8]})"), "shape must be an array, got \"2\"");
    refused(one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":"0,8"})"), "data_offsets must be [begin, end]");
    refused(one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8]})"), "got [8]");
    refused(one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]})"), "got [0,8,8]");
    refused(one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]})"), "non-negative integers");
    refused(one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[-1,7]})"), "got [-1,7]");
    refused(one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":null})"), "got null");
  }
  SECTION("dtypes and shapes") {
    refused(one(R"("a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]})"),
            "unsupported dtype \"U8\"; expected one of F32, F64, BF16, F16, I64, I32, BOOL");
    refused(one(R"("a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]})"), "unsupported dtype \"f32\"");
    refused(one(R"("a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]})"),
            "must hold non-negative integers below 2^63, got -2");
    refused(one(R"("a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), "got 2.0");
    refused(one(R"("a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]})"), "got 1.5");
    refused(one(R"("a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]})"), "got \"2\"");
    refused(one(R"("a":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]})"), "got [2]");
    refused(one(R"("a":{"dtype":"F32","shape":[1,1,1,1,1,1,1,1,2],"data_offsets":[0,8]})"), "has 9 dims");
    refused(one(R"("a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]})"), "non-negative integers");
    refused(one(R"("a":{"dtype":"F32","shape":[4294967296,4294967296,0],"data_offsets":[0,0]})", {}),
            "more elements than fit in 63 bits");
    // Empty, but its strides would overflow (found by fuzzing: undefined behaviour before).
    refused(one(R"("a":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]})", {}),
            "more elements than fit in 63 bits");
    refused(one(R"("a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]})"),
            "more bytes than fit in 64 bits");
    refused(one(R"("a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]})"), "span 8 bytes but F32 [3] needs 12");
    refused(one(R"("a":{"dtype":"F32","shape":[],"data_offsets":[0,8]})"), "span 8 bytes but F32 [] needs 4");
  }
  SECTION("offsets against the data buffer") {
    refused(one(R"("a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]})"), "[8, 0] end before they begin");
    refused(one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", Bytes(4)),
            "run past the data buffer, which is 4 bytes");
    refused(one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[18446744073709551608,18446744073709551615]})"),
            "span");
    refused(
        make_file(std::string("{") + kOneF32 + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", Bytes(12)),
        "tensor \"b\" at data_offsets [4, 12] overlaps tensor \"a\" at [0, 8]");
    refused(
        make_file(std::string("{") + kOneF32 + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", Bytes(8)),
        "overlaps");
    refused(
        make_file(std::string("{") + kOneF32 + R"(,"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}})", Bytes(8)),
        "overlaps");
    refused(make_file(std::string("{") + kOneF32 + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                      Bytes(20)),
            "data bytes [8, 12) belong to no tensor");
    refused(one(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]})", Bytes(12)),
            "data bytes [0, 4) belong to no tensor");
    refused(one(kOneF32, Bytes(12)), "data buffer is 12 bytes but the tensors cover only the first 8");
    refused(make_file("{}", Bytes(1)), "data buffer is 1 bytes but the tensors cover only the first 0");
  }
  SECTION("names and metadata") {
    refused(make_file(std::string("{") + kOneF32 + "," + kOneF32 + "}"), "repeats the key \"a\"");
    refused(make_file(R"({"__metadata__":{"k":"1"},"__metadata__":{"k":"2"}})"), "repeats the key \"__metadata__\"");
    refused(make_file(R"({"__metadata__":{"k":"1","k":"2"}})"), "repeats the key \"k\" inside a nested object");
    refused(make_file(R"({"__metadata__":{"k":1}})"), "__metadata__ value for \"k\" must be a string, got number 1");
    refused(make_file(R"({"__metadata__":{"k":null}})"), "got null");
    refused(make_file(R"({"__metadata__":"k"})"), "__metadata__ must be an object of strings, got string");
    refused(make_file(R"({"__metadata__":null})"), "got null");
    refused(make_file(R"({"__metadata__":[["k","v"]]})"), "got array");
  }
  SECTION("tensor data") {
    refused(one(R"("m":{"dtype":"BOOL","shape":[8],"data_offsets":[0,8]})", Bytes{0, 1, 1, 0, 2, 0, 0, 0}),
            "BOOL tensor \"m\" holds byte 0x02 at element 4; expected 0 or 1");
  }
}

TEST_CASE("load refuses damaged files by path, before reading tensor data", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("model.safetensors");
  REQUIRE_THROWS_WITH(load_safetensors(path), Catch::Contains(path) && Catch::Contains("cannot open"));
  REQUIRE_THROWS_WITH(load_safetensors(dir.path().string()), Catch::Contains("not a regular file"));

  save_safetensors(path, {{"w", arange(10, DType::f32)}, {"b", ones(Shape{2}, DType::i64)}});
  Bytes good = read_file(path);
  Bytes truncated(good.begin(), good.end() - 1);
  write_file(path, truncated);
  REQUIRE_THROWS_WITH(load_safetensors(path), Catch::Contains(path) && Catch::Contains("run past the data buffer"));
  REQUIRE_THROWS_WITH(inspect_safetensors(path), Catch::Contains("run past the data buffer"));

  write_file(path, prefix_only(99'999'999, 16));  // plausible length, far beyond the file
  REQUIRE_THROWS_WITH(load_safetensors(path), Catch::Contains("99999999") && Catch::Contains("only 16 bytes follow"));
  write_file(path, Bytes(3, 0));
  REQUIRE_THROWS_WITH(load_safetensors(path), Catch::Contains("file is 3 bytes"));

  Bytes bad_bool = make_file(R"({"m":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}})", Bytes{7});
  write_file(path, bad_bool);
  REQUIRE_THROWS_WITH(load_safetensors(path), Catch::Contains(path) && Catch::Contains("0x07"));
  REQUIRE(inspect_safetensors(path).entries.size() == 1);  // the header alone is fine
}

TEST_CASE("save refuses names the format cannot hold", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("x.safetensors");
  Tensor t = ones(Shape{2});
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"", t}}), Catch::Contains("empty name"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"a", t}, {"b", t}, {"a", t}}), Catch::Contains("\"a\" appears twice"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"__metadata__", t}}), Catch::Contains("reserves"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"a", Tensor()}}), Catch::Contains("undefined"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"a\xff", t}}), Catch::Contains("UTF-8"));
  REQUIRE_THROWS_WITH(save_safetensors(path, {{"a", t}}, {{"k", "\xc3"}}), Catch::Contains("UTF-8"));
  REQUIRE(dir.listing().empty());
}

TEST_CASE("a failed save leaves the old file untouched and no temporary file", "[safetensors]") {
  TempDir dir;
  std::string path = dir.file("ckpt.safetensors");
  save_safetensors(path, {{"old", arange(4, DType::f32)}});
  const Bytes old = read_file(path);
  auto untouched = [&] {
    REQUIRE(read_file(path) == old);
    REQUIRE(dir.listing() == std::vector<std::string>{"ckpt.safetensors"});
  };
  Tensor big = zeros(Shape{64, 1024});  // 256 KiB

  SECTION("refused before writing") {
    REQUIRE_THROWS(save_safetensors(path, {{"a", big}, {"a", big}}));
    untouched();
  }
  SECTION("a write fails half-way (file size limit)") {
    // RLIMIT_FSIZE binds root too, unlike directory permissions; restored before any REQUIRE.
    struct rlimit saved {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    struct rlimit small = saved;
    small.rlim_cur = 16 * 1024;
    auto* previous_handler = ::signal(SIGXFSZ, SIG_IGN);
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
    std::string message;
    try {
      save_safetensors(path, {{"new", big}});
    } catch (const Error& e) { message = e.what(); }
    ::setrlimit(RLIMIT_FSIZE, &saved);
    ::signal(SIGXFSZ, previous_handler);
    REQUIRE_THAT(message, Catch::Contains(path) && Catch::Contains("write failed"));
    untouched();
  }
  SECTION("the final rename fails (a directory is in the way)") {
    std::string blocked = dir.file("blocked");
    fs::create_directory(blocked);
    fs::create_directory(dir.file("blocked/child"));  // a non-empty directory cannot be renamed over
    REQUIRE_THROWS_WITH(save_safetensors(blocked, {{"new", big}}), Catch::Contains("cannot rename"));
    REQUIRE(dir.listing() == std::vector<std::string>{"blocked", "ckpt.safetensors"});
    fs::remove_all(blocked);
    untouched();
  }
  SECTION("the directory is not writable") {
    fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec);
    bool writable = ::access(dir.path().c_str(), W_OK) == 0;  // root writes anyway
    if (!writable) {
      REQUIRE_THROWS_WITH(save_safetensors(path, {{"new", big}}),
                          Catch::Contains(path) && Catch::Contains("cannot create temporary file"));
    }
    fs::permissions(dir.path(), fs::perms::owner_all);
    untouched();
  }
  SECTION("the directory does not exist") {
    std::string missing = dir.file("no/such/dir/x.safetensors");
    REQUIRE_THROWS_WITH(save_safetensors(missing, {{"new", big}}), Catch::Contains(missing));
    untouched();
  }
  SECTION("a successful save replaces the file and cleans up") {
    save_safetensors(path, {{"new", big}});
    REQUIRE(dir.listing() == std::vector<std::string>{"ckpt.safetensors"});
    SafetensorsContent c = load_safetensors(path);
    REQUIRE(c.tensors.size() == 1);
    REQUIRE(c.tensors[0].first == "new");
  }
}

TEST_CASE("safetensors: CUDA tensors save like their CPU copies", "[cuda]") {
  REQUIRE(cuda_available());
  TempDir dir;
  std::string path = dir.file("gpu.safetensors");
  Tensor host = arange(24, DType::f32).reshape(Shape{4, 6});
  Tensor device = host.to(Device::cuda());
  save_safetensors(path, {{"full", device}, {"view", device.t().slice(0, 1, 5, 2)}, {"half", device.to(DType::bf16)}});
  SafetensorsContent c = load_safetensors(path);
  require_same(find(c, "full"), host);
  require_same(find(c, "view"), host.t().slice(0, 1, 5, 2));
  require_same(find(c, "half"), host.to(DType::bf16));
}

// Not part of the suite: writes a file for tools/reference/verify_safetensors_from_dualflow.py.
// Run: test_engine "[safetensors-export]" (path from DUALFLOW_SAFETENSORS_EXPORT).
TEST_CASE("write a file for Python's safetensors to check", "[.][safetensors-export]") {
  const char* env = std::getenv("DUALFLOW_SAFETENSORS_EXPORT");
  std::string path = env ? env : "/tmp/dualflow_export.safetensors";
  // The fixture's tensors (see make_safetensors_fixture.py), f32 saved from a transposed
  // (non-contiguous) view, plus what numpy cannot write: bf16, and float specials.
  std::vector<float> f32;
  for (int i = 0; i < 12; ++i) f32.push_back(float(i - 6) * 0.75f);
  std::vector<double> f64;
  for (int i = 0; i < 5; ++i) f64.push_back((double(i) - 2.0) / 3.0);
  std::vector<uint16_t> f16, bf16;
  for (int i = 0; i < 8; ++i) f16.push_back(f16_t(float(i - 4) * 0.125f).bits);
  for (int i = 0; i < 8; ++i) bf16.push_back(bf16_t(float(i - 4) * 0.375f).bits);
  std::vector<int64_t> i64;
  for (int i = 0; i < 6; ++i) i64.push_back(int64_t(i - 3) * 1'000'000'000'000);
  std::vector<int32_t> i32;
  for (int i = 0; i < 8; ++i) i32.push_back((i - 4) * 7);
  std::vector<uint8_t> mask;
  for (int i = 0; i < 6; ++i) mask.push_back(i % 3 == 0);
  Tensor f32_view = from_raw(f32, Shape{3, 4}, DType::f32).t().contiguous().t();
  REQUIRE_FALSE(f32_view.is_contiguous());
  NamedTensors tensors = {
      {"f32", f32_view},
      {"f64", from_raw(f64, Shape{5}, DType::f64)},
      {"f16", from_raw(f16, Shape{2, 4}, DType::f16)},
      {"bf16", from_raw(bf16, Shape{2, 4}, DType::bf16)},
      {"i64", from_raw(i64, Shape{2, 3}, DType::i64)},
      {"i32", from_raw(i32, Shape{2, 2, 2}, DType::i32)},
      {"bool", from_raw(mask, Shape{6}, DType::b8)},
      {"scalar", scalar_tensor(2.5)},
      {"empty", zeros(Shape{0, 3})},
      {"specials", from_raw(std::vector<uint32_t>{0x7fc00001u, float_bits(std::numeric_limits<float>::infinity()),
                                                  0xff800000u, 0x80000000u, 0x00000001u},
                            Shape{5}, DType::f32)},
  };
  save_safetensors(path, tensors, {{"format", "dualflow"}, {"note", "see verify_safetensors_from_dualflow.py"}});
  WARN("wrote " << path);
}

}  // namespace dualflow::testing
