// .npy writer (see npy.h). The header is the Python dict literal NumPy expects, padded with
// spaces and ended by a newline so the data starts on a 64-byte boundary.
#include "train/npy.h"

#include <fmt/format.h>

#include "engine/atomic_file.h"

namespace dualflow {

std::string npy_f32_header(const Shape& shape) {
  std::string dims;
  for (int64_t d : shape) dims += fmt::format("{}, ", d);
  if (shape.size() == 1) dims.pop_back();  // "(5,)"
  else if (shape.size() > 1) dims.resize(dims.size() - 2);
  std::string header = fmt::format("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims);
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
  return out;
}

std::string npy_f32_bytes(const Tensor& t) {
  DF_CHECK(t.defined(), "save_npy: the tensor is undefined");
  std::string out = npy_f32_header(t.shape());
  Tensor data = t.detach().to(Device::cpu()).to(DType::f32).contiguous();
  out.append(static_cast<const char*>(data.raw_data()), size_t(data.numel()) * 4);
  return out;
}

NpyF32Writer::NpyF32Writer(const std::string& path, const Shape& shape) : file_(path, "save_npy"), shape_(shape) {
  DF_CHECK(shape.size() >= 1, "save_npy: a streamed array needs a leading dim, got shape {}", shape.str());
  file_.write(npy_f32_header(shape));
}

void NpyF32Writer::append(const Tensor& rows) {
  DF_CHECK(rows.defined() && rows.dim() == shape_.size(), "save_npy: rows of shape {} for an array of {}",
           rows.defined() ? rows.shape().str() : "undefined", shape_.str());
  for (int d = 1; d < shape_.size(); ++d)
    DF_CHECK(rows.shape()[d] == shape_[d], "save_npy: rows of shape {} for an array of {}", rows.shape().str(),
             shape_.str());
  DF_CHECK(rows_ + rows.shape()[0] <= shape_[0], "save_npy: {} rows more than the array's {}",
           rows_ + rows.shape()[0] - shape_[0], shape_[0]);
  Tensor data = rows.detach().to(Device::cpu()).to(DType::f32).contiguous();
  file_.write(data.raw_data(), size_t(data.numel()) * 4);
  rows_ += rows.shape()[0];
}

void NpyF32Writer::commit() {
  DF_CHECK(rows_ == shape_[0], "save_npy: {} of the array's {} rows were written", rows_, shape_[0]);
  file_.commit();
}

void save_npy_f32(const std::string& path, const Tensor& t) {
  write_file_atomically(path, npy_f32_bytes(t), "save_npy");
}

}  // namespace dualflow
