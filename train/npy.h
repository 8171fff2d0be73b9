// NumPy .npy files (format version 1.0): what `dualflow sample` writes so samples load with
// numpy.load. Written atomically like checkpoints.
#pragma once
#include <string>

#include "engine/atomic_file.h"
#include "engine/dualflow.h"

namespace dualflow {

// Writes `t` (any device, dtype, strides) as a C-order float32 array of its shape.
void save_npy_f32(const std::string& path, const Tensor& t);
// The file's bytes, for tests: the 10-byte preamble, the header padded to 64 bytes, the data.
std::string npy_f32_bytes(const Tensor& t);
// The preamble and padded header of a C-order float32 array of `shape`.
std::string npy_f32_header(const Shape& shape);

// A float32 .npy of a known shape written in pieces along dim 0, so memory is bounded by a piece
// however large the array: append() the rows in order, then commit(). Atomic like every output:
// the file appears whole at commit(); destroyed before that it leaves no file.
class NpyF32Writer {
 public:
  NpyF32Writer(const std::string& path, const Shape& shape);
  void append(const Tensor& rows);  // [k, shape[1:]...], any device and dtype
  void commit();                    // every row must have been appended
  int64_t rows_written() const { return rows_; }

 private:
  AtomicFile file_;
  Shape shape_;
  int64_t rows_ = 0;
};

}  // namespace dualflow
