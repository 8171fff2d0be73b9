// .npy writer (see npy.h). The header is the Python dict literal NumPy expects, padded with
// spaces and ended by a newline so the data starts on a 64-byte boundary.
#include "train/npy.h"

#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <unistd.h>

namespace dualflow {

std::string npy_f32_bytes(const Tensor& t) {
  DF_CHECK(t.defined(), "save_npy: the tensor is undefined");
  std::string shape;
  for (int64_t d : t.shape()) shape += fmt::format("{}, ", d);
  if (t.dim() == 1) shape.pop_back();  // "(5,)"
  else if (t.dim() > 1) shape.resize(shape.size() - 2);
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", shape);
  const size_t preamble = 10;
  size_t total = preamble + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(char(1));
  out.push_back(char(0));
  const uint16_t len = uint16_t(header.size());
  out.push_back(char(len & 0xff));
  out.push_back(char(len >> 8));
  out += header;
  Tensor data = t.detach().to(Device::cpu()).to(DType::f32).contiguous();
  out.append(static_cast<const char*>(data.raw_data()), size_t(data.numel()) * 4);
  return out;
}

void save_npy_f32(const std::string& path, const Tensor& t) {
  const std::string bytes = npy_f32_bytes(t);
  const std::string tmp = path + fmt::format(".tmp.{}", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  DF_CHECK(fd >= 0, "save_npy: cannot write '{}': {}", tmp, std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0) {
      int err = errno;
      ::close(fd);
      std::remove(tmp.c_str());
      fail("save_npy: writing '{}' failed: {}", tmp, std::strerror(err));
    }
    done += size_t(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::remove(tmp.c_str());
    fail("save_npy: flushing '{}' failed: {}", tmp, std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    fail("save_npy: cannot move '{}' to '{}': {}", tmp, path, std::strerror(err));
  }
}

}  // namespace dualflow
