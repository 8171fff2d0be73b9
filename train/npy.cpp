// .npy writer (see npy.h). The header is the Python dict literal NumPy expects, padded with
// spaces and ended by a newline so the data starts on a 64-byte boundary.
#include "train/npy.h"

#include <fmt/format.h>

#include "engine/atomic_file.h"

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
  write_file_atomically(path, npy_f32_bytes(t), "save_npy");
}

}  // namespace dualflow
