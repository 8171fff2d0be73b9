// Sample outputs: the .npy layout NumPy expects and PNG pictures that decode to what was drawn.
#include <catch2/catch.hpp>

#include <stb_image.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "tests/engine/test_util.h"
#include "train/npy.h"
#include "train/plots.h"

namespace dualflow::testing {

TEST_CASE("npy: version 1.0 header, 64-byte aligned data, float32 values in C order", "[outputs]") {
  Tensor t = arange(0, 6, 1, DType::f64).reshape({2, 3}).t();  // non-contiguous [3, 2]
  std::string b = npy_f32_bytes(t);
  REQUIRE(b.compare(0, 6, "\x93NUMPY") == 0);
  REQUIRE(b[6] == 1);
  REQUIRE(b[7] == 0);
  const size_t header_len = size_t(uint8_t(b[8])) | size_t(uint8_t(b[9])) << 8;
  REQUIRE((10 + header_len) % 64 == 0);
  std::string header = b.substr(10, header_len);
  REQUIRE(header.find("'descr': '<f4'") != std::string::npos);
  REQUIRE(header.find("'shape': (3, 2)") != std::string::npos);
  REQUIRE(header.back() == '\n');
  REQUIRE(b.size() == 10 + header_len + 6 * 4);
  float v[6];
  std::memcpy(v, b.data() + 10 + header_len, sizeof v);
  const float want[6] = {0, 3, 1, 4, 2, 5};
  for (int i = 0; i < 6; ++i) REQUIRE(v[i] == want[i]);
  REQUIRE(npy_f32_bytes(zeros({5})).find("'shape': (5,)") != std::string::npos);
}

TEST_CASE("png: an image grid decodes to the drawn pixels; a scatter marks the points", "[outputs]") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / fmt::format("dualflow-png-{}", ::getpid());
  fs::create_directories(dir);
  // Two 2x2 gray images: all -1 (black) and all +1 (white).
  Tensor imgs = cat({full({1, 1, 2, 2}, -1.0), full({1, 1, 2, 2}, 1.0)}, 0);
  std::string grid = (dir / "grid.png").string();
  save_image_grid_png(grid, imgs, 2);
  int w = 0, h = 0, c = 0;
  unsigned char* px = stbi_load(grid.c_str(), &w, &h, &c, 1);
  REQUIRE(px != nullptr);
  REQUIRE(w == 2 * (2 + 2) + 2);
  REQUIRE(h == 2 + 2 + 2);
  REQUIRE(px[2 * w + 2] == 0);    // first image, black
  REQUIRE(px[2 * w + 6] == 255);  // second image, white
  stbi_image_free(px);
  std::string scatter = (dir / "scatter.png").string();
  save_scatter_png(scatter, from_vector(std::vector<double>{0.0, 0.0, 0.0, 0.0}, {2, 2}), 1.0, 16);
  px = stbi_load(scatter.c_str(), &w, &h, &c, 1);
  REQUIRE(px != nullptr);
  REQUIRE(w == 16);
  REQUIRE(px[8 * 16 + 8] == 0);  // the centre holds both points
  REQUIRE(px[0] == 255);         // a corner holds none
  stbi_image_free(px);
  REQUIRE_THROWS_WITH(save_scatter_png(scatter, zeros({3, 3})), Catch::Contains("must be [N, 2]"));
  fs::remove_all(dir);
}

}  // namespace dualflow::testing
