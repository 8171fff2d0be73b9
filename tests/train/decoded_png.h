// A PNG file decoded to RGB for the picture tests (stb_image): its size, its pixels, and how
// many of them in a rectangle are not white (a panel with something drawn in it).
#pragma once
#include <catch2/catch.hpp>
#include <stb_image.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dualflow::testing {

struct DecodedPng {
  int w = 0, h = 0;
  std::vector<unsigned char> rgb;
  const unsigned char* at(int x, int y) const { return &rgb[(size_t(y) * size_t(w) + size_t(x)) * 3]; }
  bool white(int x, int y) const { return at(x, y)[0] == 255 && at(x, y)[1] == 255 && at(x, y)[2] == 255; }
  // Pixels that are not white inside [x0, x1) x [y0, y1).
  int64_t ink(int x0, int y0, int x1, int y1) const {
    int64_t n = 0;
    for (int y = y0; y < y1; ++y)
      for (int x = x0; x < x1; ++x) n += !white(x, y);
    return n;
  }
};

inline DecodedPng load_png(const std::string& path) {
  INFO(path);
  DecodedPng p;
  int c = 0;
  unsigned char* px = stbi_load(path.c_str(), &p.w, &p.h, &c, 3);
  REQUIRE(px != nullptr);
  p.rgb.assign(px, px + size_t(p.w) * size_t(p.h) * 3);
  stbi_image_free(px);
  return p;
}

}  // namespace dualflow::testing
