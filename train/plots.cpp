// PNG scatter plots and image grids (see plots.h).
#include "train/plots.h"

#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "engine/atomic_file.h"

namespace dualflow {

namespace {
// stb encodes into memory; the file is then written atomically, so a reader never sees half.
void write_png_atomically(const std::string& path, int w, int h, int channels, const std::vector<uint8_t>& pixels) {
  std::string png;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size_t(size));
  };
  DF_CHECK(stbi_write_png_to_func(append, &png, w, h, channels, pixels.data(), w * channels) != 0,
           "save png: cannot encode {}x{} pixels for '{}'", w, h, path);
  write_file_atomically(path, png, "save png");
}
}  // namespace

void save_scatter_png(const std::string& path, const Tensor& points, double extent, int size) {
  DF_CHECK(points.defined() && points.dim() == 2 && points.shape()[1] == 2,
           "save_scatter_png: points must be [N, 2], got {}", points.defined() ? points.shape().str() : "undefined");
  DF_CHECK(size >= 16 && extent > 0, "save_scatter_png: size must be >= 16 and extent > 0");
  auto xy = points.detach().to(Device::cpu()).to(DType::f64).contiguous().to_vector<double>();
  std::vector<double> counts(size_t(size) * size, 0.0);
  for (size_t i = 0; i + 1 < xy.size(); i += 2) {
    double u = (xy[i] + extent) / (2 * extent), v = (extent - xy[i + 1]) / (2 * extent);
    if (!(u >= 0 && u < 1 && v >= 0 && v < 1)) continue;
    counts[size_t(int(v * size)) * size + size_t(int(u * size))] += 1;
  }
  const double peak = std::log1p(*std::max_element(counts.begin(), counts.end()));
  std::vector<uint8_t> px(counts.size());
  for (size_t i = 0; i < counts.size(); ++i)
    px[i] = uint8_t(255 - std::lround(peak > 0 ? 255 * std::log1p(counts[i]) / peak : 0));
  write_png_atomically(path, size, size, 1, px);
}

void save_image_grid_png(const std::string& path, const Tensor& images, int columns) {
  DF_CHECK(images.defined() && images.dim() == 4 && (images.shape()[1] == 1 || images.shape()[1] == 3),
           "save_image_grid_png: images must be [N, 1 or 3, H, W], got {}",
           images.defined() ? images.shape().str() : "undefined");
  DF_CHECK(columns >= 1, "save_image_grid_png: columns must be >= 1, got {}", columns);
  const int64_t n = images.shape()[0], c = images.shape()[1], h = images.shape()[2], w = images.shape()[3];
  const int64_t rows = (n + columns - 1) / columns, border = 2;
  const int64_t gw = columns * (w + border) + border, gh = rows * (h + border) + border;
  auto v = images.detach().to(Device::cpu()).to(DType::f32).contiguous().to_vector<float>();
  std::vector<uint8_t> px(size_t(gw * gh * c), 255);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t oy = (i / columns) * (h + border) + border, ox = (i % columns) * (w + border) + border;
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          float val = v[size_t(((i * c + ch) * h + y) * w + x)];
          float unit = std::clamp((val + 1.0f) * 0.5f, 0.0f, 1.0f);
          px[size_t(((oy + y) * gw + (ox + x)) * c + ch)] = uint8_t(std::lround(unit * 255));
        }
  }
  write_png_atomically(path, int(gw), int(gh), int(c), px);
}

}  // namespace dualflow
