// PNG pictures of samples: a density scatter of 2-D points, and a grid of images. Written
// with stb_image_write (Debian's libstb).
#pragma once
#include <string>

#include "engine/dualflow.h"

namespace dualflow {

// points [N, 2]: a size x size image of the point density over [-extent, extent]^2 (dark on
// white, log-scaled counts), y pointing up.
void save_scatter_png(const std::string& path, const Tensor& points, double extent = 4.0, int size = 512);

// images [N, C, H, W] with C = 1 or 3 and values in [-1, 1]: a grid of `columns` per row with a
// 2-pixel border.
void save_image_grid_png(const std::string& path, const Tensor& images, int columns);

}  // namespace dualflow
