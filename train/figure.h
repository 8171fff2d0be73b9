// Figures drawn by the engine itself, as a researcher would otherwise make them in matplotlib:
// a canvas of panels, each a 2-D density with axes (optionally with sample trajectories over
// it), a line chart (linear or log y, several series with a legend) or an image grid with
// labels in the margin, written as one RGB PNG. Text is stb_easy_font's built-in vector font,
// so no font file is needed.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/dualflow.h"

namespace dualflow {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

// The series colours (matplotlib's "tab10" order: blue, orange, green, red, purple, ...).
Rgb palette_color(size_t index);

class Canvas {
 public:
  Canvas(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return width_; }
  int height() const { return height_; }
  const std::vector<uint8_t>& pixels() const { return pixels_; }  // RGB, row-major

  void fill_rect(int x, int y, int w, int h, Rgb color);
  void frame_rect(int x, int y, int w, int h, Rgb color);  // 1-pixel outline
  // A straight line of the given thickness; endpoints in pixels (fractions allowed). Pixels
  // outside `clip` (x, y, w, h; default the canvas) are left alone.
  void line(double x0, double y0, double x1, double y1, Rgb color, int thickness = 1);
  void set_clip(int x, int y, int w, int h);
  void clear_clip();
  // Text with its top-left corner at (x, y); `scale` magnifies the font (1: about 7 pixels tall).
  void text(int x, int y, std::string_view s, Rgb color, int scale = 1);
  static int text_width(std::string_view s, int scale = 1);
  static int text_height(int scale = 1);
  void blend(int x, int y, Rgb color, double alpha);  // alpha in [0, 1]
  void save_png(const std::string& path) const;       // written atomically

 private:
  int width_, height_;
  int clip_x0_ = 0, clip_y0_ = 0, clip_x1_, clip_y1_;
  std::vector<uint8_t> pixels_;
};

struct Box {  // a panel's whole area on the canvas, pixels
  int x = 0, y = 0, w = 0, h = 0;
};

struct AxisRange {
  double lo = 0, hi = 1;
};

// 2-D points [N, 2] as a density image (log-scaled counts, white to `tint`) over x_range x
// y_range, with axes, ticks and a title. `trajectories` [K, T, 2] (optional) are drawn over it
// as polylines, each start marked by a dot.
struct DensityPanel {
  std::string title;
  Tensor points;
  AxisRange x_range{-4, 4}, y_range{-4, 4};
  Rgb tint{31, 119, 180};
  Tensor trajectories;
};
void draw_density_panel(Canvas& canvas, Box box, const DensityPanel& panel);

struct Series {
  std::string label;
  std::vector<double> x, y;  // non-finite points, and y <= 0 on a log axis, are skipped
  std::optional<Rgb> color;  // default: palette_color of the series' index
};
struct LineChart {
  std::string title, x_label, y_label;
  bool log_y = false;
  std::vector<Series> series;  // a legend when any has a label
};
void draw_line_chart(Canvas& canvas, Box box, const LineChart& chart);

// images [N, C, H, W] (C = 1 or 3, values in [-1, 1]) in rows of `columns`, magnified by an
// integer factor to fit, with row_labels[r] (if given) in the left margin of row r.
struct ImageGridPanel {
  std::string title;
  Tensor images;
  int columns = 10;
  std::vector<std::string> row_labels;
};
void draw_image_grid_panel(Canvas& canvas, Box box, const ImageGridPanel& panel);

// "Nice" tick positions (1, 2 or 5 times a power of ten) covering [lo, hi], about `target` of
// them; on a log axis the powers of ten inside the range (with 2 and 5 when there are few).
std::vector<double> nice_ticks(double lo, double hi, int target = 5);
std::vector<double> log_ticks(double lo, double hi);
std::string tick_label(double value, double step);

}  // namespace dualflow
