// safetensors reading and writing. Everything in a header is checked against the file before
// any tensor is allocated, so a hostile or truncated file costs at most its header in memory
// and never yields a half-filled checkpoint. Format: 8-byte little-endian header length N,
// N bytes of JSON, then the data buffer that the tensors must cover exactly.
#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <unordered_set>

#include "engine/atomic_file.h"
#include "engine/autograd.h"
#include "engine/error.h"

namespace dualflow {

// Tensor bytes are copied as they lie in memory; the format stores them little-endian.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

using json = nlohmann::json;

// The reference library's limit: beyond it a "header" is far more likely an attack or a
// corrupt length than a real checkpoint, and refusing it keeps allocations bounded.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
constexpr const char* kMetadataKey = "__metadata__";

struct DTypeCode {
  const char* code;
  DType dtype;
};
constexpr DTypeCode kDTypeCodes[] = {
    {"F32", DType::f32}, {"F64", DType::f64}, {"BF16", DType::bf16}, {"F16", DType::f16},
    {"I64", DType::i64}, {"I32", DType::i32}, {"BOOL", DType::b8},
};

const char* dtype_code(DType t) {
  for (const auto& c : kDTypeCodes)
    if (c.dtype == t) return c.code;
  fail("safetensors: dtype {} has no safetensors code", dtype_name(t));
}

[[noreturn]] void refuse(const std::string& what, const std::string& msg) {
  throw Error(fmt::format("safetensors: {}: {}", what, msg));
}

// A JSON value as it appeared, cut short so a huge value cannot flood the message.
std::string brief(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}
std::string quoted(const std::string& name) { return brief(json(name)); }

std::optional<uint64_t> as_count(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return uint64_t(v.get<int64_t>());
  return std::nullopt;
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(p[i]) << (8 * i);
  return n;
}

// Checks the 8-byte length prefix against the file size; called before the header is read so
// that a lying length never drives an allocation.
uint64_t checked_header_length(const uint8_t* prefix, uint64_t file_size, const std::string& what) {
  uint64_t n = read_le64(prefix);
  if (n > kMaxHeaderBytes)
    refuse(what, fmt::format("header length is {} bytes; expected at most {} (the reference library's limit)", n,
                             kMaxHeaderBytes));
  if (n > file_size - 8)
    refuse(what,
           fmt::format("header length is {} bytes but only {} bytes follow the 8-byte length field", n, file_size - 8));
  return n;
}

void check_file_size(uint64_t size, const std::string& what) {
  if (size < 8) refuse(what, fmt::format("file is {} bytes; expected at least 8 (the header length field)", size));
}

// Parses JSON refusing duplicate keys at any depth: nlohmann would silently keep one of them,
// and two tensors under one name (or two metadata values) make the file ambiguous. Also
// returns the top-level keys in the order they appear, which std::map-backed json forgets.
json parse_json_unique_keys(const char* text, size_t size, std::vector<std::string>& top_keys,
                            const std::string& what) {
  std::vector<std::unordered_set<std::string>> open_objects;
  auto callback = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: open_objects.emplace_back(); break;
      case json::parse_event_t::object_end: open_objects.pop_back(); break;
      case json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!open_objects.back().insert(key).second)
          refuse(what, fmt::format("header repeats the key {}{}; expected unique names", quoted(key),
                                   open_objects.size() == 1 ? "" : " inside a nested object"));
        if (open_objects.size() == 1) top_keys.push_back(key);
        break;
      }
      default: break;
    }
    return true;
  };
  try {
    return json::parse(text, text + size, callback);
  } catch (const json::exception& e) { refuse(what, fmt::format("header is not valid JSON: {}", e.what())); }
}

SafetensorsEntry parse_entry(const std::string& name, const json& v, uint64_t data_size, const std::string& what) {
  const std::string tensor = "tensor " + quoted(name);
  if (!v.is_object())
    refuse(what, fmt::format("{}: expected an object with dtype, shape and data_offsets, got {} {}", tensor,
                             v.type_name(), brief(v)));
  for (const auto& [key, unused] : v.items()) {
    (void)unused;
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      refuse(what,
             fmt::format("{}: unexpected field {}; expected only dtype, shape and data_offsets", tensor, quoted(key)));
  }
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!v.contains(field)) refuse(what, fmt::format("{}: missing field \"{}\"", tensor, field));

  SafetensorsEntry e;
  e.name = name;
  const json& dt = v["dtype"];
  if (!dt.is_string()) refuse(what, fmt::format("{}: dtype must be a string, got {}", tensor, brief(dt)));
  const auto& code = dt.get_ref<const std::string&>();
  const DTypeCode* found = nullptr;
  for (const auto& c : kDTypeCodes)
    if (code == c.code) found = &c;
  if (!found)
    refuse(what, fmt::format("{}: unsupported dtype {}; expected one of F32, F64, BF16, F16, I64, I32, BOOL", tensor,
                             quoted(code)));
  e.dtype = found->dtype;

  const json& shape = v["shape"];
  if (!shape.is_array()) refuse(what, fmt::format("{}: shape must be an array, got {}", tensor, brief(shape)));
  if (shape.size() > size_t(kMaxDims))
    refuse(what, fmt::format("{}: shape {} has {} dims; dualflow supports at most {}", tensor, brief(shape),
                             shape.size(), kMaxDims));
  // Row-major strides multiply the dims with zeros counted as 1, so that product must fit in
  // 63 bits even when a zero dim makes the tensor empty ([0, 2^62, 2^62] has no element but
  // a stride of 2^124).
  uint64_t numel = 1, stride_extent = 1;
  for (const json& d : shape) {
    auto n = as_count(d);
    if (!n || *n > uint64_t(std::numeric_limits<int64_t>::max()))
      refuse(what, fmt::format("{}: shape {} must hold non-negative integers below 2^63, got {}", tensor, brief(shape),
                               brief(d)));
    if (__builtin_mul_overflow(stride_extent, std::max<uint64_t>(*n, 1), &stride_extent) ||
        stride_extent > uint64_t(std::numeric_limits<int64_t>::max()))
      refuse(what, fmt::format("{}: shape {} has more elements than fit in 63 bits (zero dims counted as 1, as in "
                               "its strides)",
                               tensor, brief(shape)));
    numel *= *n;  // <= stride_extent
    e.shape.push_back(int64_t(*n));
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(numel, uint64_t(dtype_size(e.dtype)), &bytes))
    refuse(what, fmt::format("{}: {} {} is more bytes than fit in 64 bits", tensor, code, brief(shape)));

  const json& offsets = v["data_offsets"];
  std::optional<uint64_t> begin, end;
  if (offsets.is_array() && offsets.size() == 2) begin = as_count(offsets[0]), end = as_count(offsets[1]);
  if (!begin || !end)
    refuse(what, fmt::format("{}: data_offsets must be [begin, end] with non-negative integers, got {}", tensor,
                             brief(offsets)));
  e.begin = *begin;
  e.end = *end;
  if (e.begin > e.end)
    refuse(what, fmt::format("{}: data_offsets [{}, {}] end before they begin", tensor, e.begin, e.end));
  if (e.end - e.begin != bytes)
    refuse(what, fmt::format("{}: data_offsets [{}, {}] span {} bytes but {} {} needs {}", tensor, e.begin, e.end,
                             e.end - e.begin, code, brief(shape), bytes));
  if (e.end > data_size)
    refuse(what, fmt::format("{}: data_offsets [{}, {}] run past the data buffer, which is {} bytes", tensor, e.begin,
                             e.end, data_size));
  return e;
}

// Entry indices in the order of their data (header order among equal offsets, which only
// zero-sized tensors can share).
std::vector<size_t> data_order(const std::vector<SafetensorsEntry>& entries) {
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const SafetensorsEntry &x = entries[a], &y = entries[b];
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  return order;
}

// Validates the JSON header against a data buffer of `data_size` bytes; entries come back in
// header order.
SafetensorsHeader parse_header(const char* text, uint64_t header_len, uint64_t data_size, const std::string& what) {
  // nlohmann's lexer takes a NUL byte for the end of input and would accept "{}\0garbage";
  // valid JSON never holds a raw NUL, so any NUL means a corrupt or wrongly padded header.
  if (const void* nul = std::memchr(text, 0, header_len))
    refuse(what, fmt::format("header holds a NUL byte at offset {}; expected JSON padded with spaces",
                             static_cast<const char*>(nul) - text));
  std::vector<std::string> keys;
  json root = parse_json_unique_keys(text, header_len, keys, what);
  if (!root.is_object()) refuse(what, fmt::format("header must be a JSON object, got {}", root.type_name()));

  SafetensorsHeader h;
  h.data_start = 8 + header_len;
  h.data_size = data_size;
  for (const std::string& key : keys) {
    const json& v = root.find(key).value();
    if (key == kMetadataKey) {
      if (!v.is_object())
        refuse(what, fmt::format("__metadata__ must be an object of strings, got {} {}", v.type_name(), brief(v)));
      for (const auto& [mk, mv] : v.items()) {
        if (!mv.is_string())
          refuse(what, fmt::format("__metadata__ value for {} must be a string, got {} {}", quoted(mk), mv.type_name(),
                                   brief(mv)));
        h.metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    h.entries.push_back(parse_entry(key, v, data_size, what));
  }

  // The format wants the buffer covered exactly: no byte shared, none left over. Readers that
  // mmap the file rely on it, and it catches headers that do not belong to their data.
  uint64_t covered = 0;
  const SafetensorsEntry* previous = nullptr;
  for (size_t i : data_order(h.entries)) {
    const SafetensorsEntry& e = h.entries[i];
    if (e.begin < covered)
      refuse(what, fmt::format("tensor {} at data_offsets [{}, {}] overlaps tensor {} at [{}, {}]", quoted(e.name),
                               e.begin, e.end, quoted(previous->name), previous->begin, previous->end));
    if (e.begin > covered)
      refuse(what, fmt::format("data bytes [{}, {}) belong to no tensor (the next one, {}, starts at {}); expected "
                               "tensors to cover the data buffer without gaps",
                               covered, e.begin, quoted(e.name), e.begin));
    covered = e.end;
    previous = &e;
  }
  if (covered != data_size)
    refuse(what, fmt::format("data buffer is {} bytes but the tensors cover only the first {}; expected no trailing "
                             "bytes",
                             data_size, covered));
  return h;
}

void check_bool_bytes(const uint8_t* p, uint64_t n, const SafetensorsEntry& e, const std::string& what) {
  for (uint64_t i = 0; i < n; ++i)
    if (p[i] > 1)
      refuse(what,
             fmt::format("BOOL tensor {} holds byte {:#04x} at element {}; expected 0 or 1", quoted(e.name), p[i], i));
}

std::string errno_text(int err) { return std::strerror(err); }

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd = -1) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  // Closes now so the caller sees the error (a delayed write failure can surface here).
  int close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

void read_exact(int fd, void* dst, uint64_t size, uint64_t offset, const std::string& what) {
  auto* out = static_cast<uint8_t*>(dst);
  uint64_t done = 0;
  while (done < size) {
    size_t chunk = size_t(std::min<uint64_t>(size - done, uint64_t(1) << 30));
    ssize_t r = ::pread(fd, out + done, chunk, off_t(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      refuse(what, fmt::format("read failed at byte {}: {}", offset + done, errno_text(errno)));
    }
    if (r == 0)
      refuse(what, fmt::format("file ended at byte {}; expected {} more bytes (did it shrink while being read?)",
                               offset + done, size - done));
    done += uint64_t(r);
  }
}

struct OpenedFile {
  FileDescriptor fd;
  SafetensorsHeader header;
};

void open_and_read_header(const std::string& path, OpenedFile& file) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) refuse(path, fmt::format("cannot open for reading: {}", errno_text(errno)));
  file.fd.reset(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) refuse(path, fmt::format("cannot stat: {}", errno_text(errno)));
  if (!S_ISREG(st.st_mode)) refuse(path, "not a regular file");
  uint64_t size = uint64_t(st.st_size);
  check_file_size(size, path);
  uint8_t prefix[8];
  read_exact(fd, prefix, 8, 0, path);
  uint64_t n = checked_header_length(prefix, size, path);
  std::string text(size_t(n), '\0');
  read_exact(fd, text.data(), n, 8, path);
  file.header = parse_header(text.data(), n, size - 8 - n, path);
}

uint64_t tensor_bytes(const Tensor& t) { return uint64_t(t.numel()) * t.element_size(); }

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::unordered_set<std::string_view> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    DF_CHECK(!name.empty(), "save_safetensors: {}: tensor #{} has an empty name; expected a non-empty name", path, i);
    DF_CHECK(name != kMetadataKey,
             "save_safetensors: {}: tensor #{} is named \"__metadata__\", which the format "
             "reserves for metadata",
             path, i);
    DF_CHECK(names.insert(name).second, "save_safetensors: {}: tensor name {} appears twice; expected unique names",
             path, quoted(name));
    DF_CHECK(t.defined(), "save_safetensors: {}: tensor {} is undefined", path, quoted(name));
  }

  // Data goes out largest element size first, as the reference writer does: with the buffer
  // 8-byte aligned that aligns every tensor, so readers can map the file without copying.
  // The header keeps the caller's order, which is the order load_safetensors returns.
  std::vector<size_t> layout(tensors.size());
  for (size_t i = 0; i < layout.size(); ++i) layout[i] = i;
  std::stable_sort(layout.begin(), layout.end(), [&](size_t a, size_t b) {
    return tensors[a].second.element_size() > tensors[b].second.element_size();
  });
  std::vector<uint64_t> begin(tensors.size());
  uint64_t offset = 0;
  for (size_t i : layout) {
    begin[i] = offset;
    offset += tensor_bytes(tensors[i].second);
  }

  // Written by hand rather than through a JSON object to keep the caller's order in linear time.
  std::string header = "{";
  try {
    if (!metadata.empty()) header += fmt::format("\"{}\":{}", kMetadataKey, json(metadata).dump());
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& [name, t] = tensors[i];
      if (header.size() > 1) header += ',';
      header += fmt::format("{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}", json(name).dump(),
                            dtype_code(t.dtype()), fmt::join(t.shape(), ","), begin[i], begin[i] + tensor_bytes(t));
    }
  } catch (const json::type_error& e) {
    fail("save_safetensors: {}: names and metadata must be valid UTF-8: {}", path, e.what());
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');  // data then starts 8-byte aligned
  DF_CHECK(header.size() <= kMaxHeaderBytes,
           "save_safetensors: {}: header would be {} bytes; readers accept at "
           "most {}",
           path, header.size(), kMaxHeaderBytes);

  AtomicFile file(path, "save_safetensors");
  uint8_t prefix[8];
  for (int i = 0; i < 8; ++i) prefix[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  file.write(prefix, 8);
  file.write(header);
  for (size_t i : layout) {
    // One tensor at a time on the host keeps peak memory at the largest tensor, not the model.
    NoGradGuard no_grad;
    Tensor host = tensors[i].second.detach().to(Device::cpu()).contiguous();
    if (uint64_t bytes = tensor_bytes(host)) file.write(host.raw_data(), size_t(bytes));
  }
  file.commit();
}

SafetensorsHeader inspect_safetensors(const std::string& path) {
  OpenedFile file;
  open_and_read_header(path, file);
  return std::move(file.header);
}

SafetensorsContent load_safetensors(const std::string& path) {
  OpenedFile file;
  open_and_read_header(path, file);
  const SafetensorsHeader& h = file.header;
  SafetensorsContent out;
  out.metadata = h.metadata;
  out.tensors.reserve(h.entries.size());
  for (const SafetensorsEntry& e : h.entries) out.tensors.emplace_back(e.name, Tensor::empty(e.shape, e.dtype));
  for (size_t i : data_order(h.entries)) {  // one forward pass over the file
    const SafetensorsEntry& e = h.entries[i];
    Tensor& t = out.tensors[i].second;
    uint64_t bytes = e.end - e.begin;
    if (bytes) read_exact(file.fd.get(), t.raw_data(), bytes, h.data_start + e.begin, path);
    if (e.dtype == DType::b8) check_bool_bytes(static_cast<const uint8_t*>(t.raw_data()), bytes, e, path);
  }
  return out;
}

SafetensorsContent parse_safetensors(const uint8_t* data, size_t size, const std::string& what) {
  check_file_size(size, what);
  uint64_t n = checked_header_length(data, size, what);
  SafetensorsHeader h = parse_header(reinterpret_cast<const char*>(data + 8), n, size - 8 - n, what);
  const uint8_t* buffer = data + h.data_start;
  for (const SafetensorsEntry& e : h.entries)
    if (e.dtype == DType::b8) check_bool_bytes(buffer + e.begin, e.end - e.begin, e, what);
  SafetensorsContent out;
  out.metadata = std::move(h.metadata);
  out.tensors.reserve(h.entries.size());
  for (const SafetensorsEntry& e : h.entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (e.end > e.begin) std::memcpy(t.raw_data(), buffer + e.begin, size_t(e.end - e.begin));
    out.tensors.emplace_back(e.name, std::move(t));
  }
  return out;
}

}  // namespace dualflow
