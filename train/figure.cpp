// Panels of densities, line charts and image grids rasterised into an RGB canvas (see figure.h).
#include "train/figure.h"

#include <stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/atomic_file.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb_easy_font.h>
#pragma GCC diagnostic pop

namespace dualflow {

namespace {
constexpr Rgb kInk{30, 30, 30}, kGrid{225, 225, 225}, kMuted{110, 110, 110};
constexpr int kTitleScale = 2, kLabelScale = 1;
// Inner margins of a panel around its plotting area: room for the tick labels on the left and
// below, the title above.
constexpr int kLeft = 58, kRight = 12, kTop = 28, kBottom = 40;
}  // namespace

Rgb palette_color(size_t index) {
  static const Rgb colors[] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                               {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return colors[index % (sizeof(colors) / sizeof(colors[0]))];
}

Canvas::Canvas(int width, int height, Rgb background)
    : width_(width), height_(height), clip_x1_(width), clip_y1_(height) {
  DF_CHECK(width >= 1 && height >= 1 && int64_t(width) * height <= (int64_t(1) << 28),
           "canvas: size must be between 1x1 and 2^28 pixels, got {}x{}", width, height);
  pixels_.resize(size_t(width) * size_t(height) * 3);
  for (size_t i = 0; i < pixels_.size(); i += 3) {
    pixels_[i] = background.r;
    pixels_[i + 1] = background.g;
    pixels_[i + 2] = background.b;
  }
}

void Canvas::set_clip(int x, int y, int w, int h) {
  clip_x0_ = std::max(0, x);
  clip_y0_ = std::max(0, y);
  clip_x1_ = std::min(width_, x + w);
  clip_y1_ = std::min(height_, y + h);
}

void Canvas::clear_clip() {
  clip_x0_ = clip_y0_ = 0;
  clip_x1_ = width_;
  clip_y1_ = height_;
}

void Canvas::blend(int x, int y, Rgb color, double alpha) {
  if (x < clip_x0_ || y < clip_y0_ || x >= clip_x1_ || y >= clip_y1_) return;
  uint8_t* p = &pixels_[(size_t(y) * size_t(width_) + size_t(x)) * 3];
  const double a = std::clamp(alpha, 0.0, 1.0);
  p[0] = uint8_t(std::lround(p[0] * (1 - a) + color.r * a));
  p[1] = uint8_t(std::lround(p[1] * (1 - a) + color.g * a));
  p[2] = uint8_t(std::lround(p[2] * (1 - a) + color.b * a));
}

void Canvas::fill_rect(int x, int y, int w, int h, Rgb color) {
  for (int yy = std::max(y, clip_y0_); yy < std::min(y + h, clip_y1_); ++yy)
    for (int xx = std::max(x, clip_x0_); xx < std::min(x + w, clip_x1_); ++xx) blend(xx, yy, color, 1.0);
}

void Canvas::frame_rect(int x, int y, int w, int h, Rgb color) {
  fill_rect(x, y, w, 1, color);
  fill_rect(x, y + h - 1, w, 1, color);
  fill_rect(x, y, 1, h, color);
  fill_rect(x + w - 1, y, 1, h, color);
}

void Canvas::line(double x0, double y0, double x1, double y1, Rgb color, int thickness) {
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  // Far-off endpoints (a diverged trajectory) are pulled in first, so the step count stays small.
  const double limit = 4.0 * (width_ + height_);
  auto pull = [&](double& ax, double& ay, double bx, double by) {
    const double over = std::max(std::abs(ax), std::abs(ay)) / limit;
    if (over > 1) {
      const double s = 1 - 1 / over;
      ax += (bx - ax) * s;
      ay += (by - ay) * s;
    }
  };
  pull(x0, y0, x1, y1);
  pull(x1, y1, x0, y0);
  const double steps = std::max(1.0, std::ceil(std::max(std::abs(x1 - x0), std::abs(y1 - y0)) * 2));
  const int lo = -(thickness - 1) / 2, hi = thickness / 2;
  for (double i = 0; i <= steps; ++i) {
    const int x = int(std::lround(x0 + (x1 - x0) * i / steps)), y = int(std::lround(y0 + (y1 - y0) * i / steps));
    for (int dy = lo; dy <= hi; ++dy)
      for (int dx = lo; dx <= hi; ++dx) blend(x + dx, y + dy, color, 1.0);
  }
}

void Canvas::text(int x, int y, std::string_view s, Rgb color, int scale) {
  if (s.empty()) return;
  std::string buffer(s);
  // 4 vertices of 16 bytes per quad, a quad per segment; no glyph has more than 16 segments.
  std::vector<char> vertices(buffer.size() * 16 * 64 + 64);
  const int quads = stb_easy_font_print(0, 0, buffer.data(), nullptr, vertices.data(), int(vertices.size()));
  for (int q = 0; q < quads; ++q) {
    const float* v0 = reinterpret_cast<const float*>(vertices.data() + size_t(q) * 64);
    const float* v2 = reinterpret_cast<const float*>(vertices.data() + size_t(q) * 64 + 32);
    const int qx0 = int(std::lround(v0[0])), qy0 = int(std::lround(v0[1]));
    const int qx1 = int(std::lround(v2[0])), qy1 = int(std::lround(v2[1]));
    fill_rect(x + std::min(qx0, qx1) * scale, y + std::min(qy0, qy1) * scale, std::abs(qx1 - qx0) * scale,
              std::abs(qy1 - qy0) * scale, color);
  }
}

int Canvas::text_width(std::string_view s, int scale) {
  std::string buffer(s);
  return buffer.empty() ? 0 : stb_easy_font_width(buffer.data()) * scale;
}

int Canvas::text_height(int scale) { return 7 * scale; }

void Canvas::save_png(const std::string& path) const {
  std::string png;
  auto append = [](void* context, void* data, int size) {
    static_cast<std::string*>(context)->append(static_cast<const char*>(data), size_t(size));
  };
  DF_CHECK(stbi_write_png_to_func(append, &png, width_, height_, 3, pixels_.data(), width_ * 3) != 0,
           "save png: cannot encode {}x{} pixels for '{}'", width_, height_, path);
  write_file_atomically(path, png, "save png");
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double power = std::pow(10.0, std::floor(std::log10((hi - lo) / std::max(1, target))));
  // Of 1, 2, 5 and 10 times that power, the step whose tick count comes nearest the target
  // (the larger step on a tie).
  auto count = [&](double step) {
    return int64_t(std::floor(hi / step + 1e-9)) - int64_t(std::ceil(lo / step - 1e-9)) + 1;
  };
  double step = power;
  for (double m : {2.0, 5.0, 10.0})
    if (std::abs(count(m * power) - target) <= std::abs(count(step) - target)) step = m * power;
  std::vector<double> ticks;
  for (int64_t k = int64_t(std::ceil(lo / step - 1e-9)); double(k) * step <= hi + step * 1e-9; ++k)
    ticks.push_back(double(k) * step);
  return ticks;
}

std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> ticks;
  if (!(hi > lo) || !(lo > 0)) return ticks;
  const int first = int(std::ceil(std::log10(lo) - 1e-9)), last = int(std::floor(std::log10(hi) + 1e-9));
  const bool few = last - first < 2;
  for (int e = first - 1; e <= last; ++e)
    for (double m : few ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
      const double t = m * std::pow(10.0, e);
      if (t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9)) ticks.push_back(t);
    }
  return ticks;
}

std::string tick_label(double value, double step) {
  if (value == 0) return "0";
  const double magnitude = std::abs(value);
  if (magnitude >= 1e5 || magnitude < 1e-3) return fmt::format("{:.0e}", value);
  const int decimals = step >= 1 ? 0 : std::min(6, int(std::ceil(-std::log10(step) - 1e-9)));
  return fmt::format("{:.{}f}", value, decimals);
}

namespace {
struct PlotArea {  // the plotting rectangle inside a panel and its data ranges
  int x, y, w, h;
  AxisRange xr, yr;
  bool log_y = false;
  double px(double vx) const { return x + (vx - xr.lo) / (xr.hi - xr.lo) * (w - 1); }
  double py(double vy) const {
    if (log_y) return y + (h - 1) - (std::log10(vy) - std::log10(yr.lo)) / (std::log10(yr.hi) - std::log10(yr.lo)) * (h - 1);
    return y + (h - 1) - (vy - yr.lo) / (yr.hi - yr.lo) * (h - 1);
  }
};

PlotArea plot_area(Box box, AxisRange xr, AxisRange yr, bool square) {
  PlotArea a{box.x + kLeft, box.y + kTop, box.w - kLeft - kRight, box.h - kTop - kBottom, xr, yr};
  if (square) {  // equal scales on both axes for the 2-D panels
    const int side = std::min(a.w, a.h);
    a.x += (a.w - side) / 2;
    a.w = a.h = side;
  }
  DF_CHECK(a.w >= 16 && a.h >= 16, "figure: panel {}x{} is too small for its axes", box.w, box.h);
  return a;
}

void draw_title(Canvas& c, Box box, const std::string& title) {
  const int w = Canvas::text_width(title, kTitleScale);
  c.text(box.x + std::max(2, (box.w - w) / 2), box.y + 6, title, kInk, kTitleScale);
}

// Ticks, tick labels, light grid lines and the frame; axis labels when given.
void draw_axes(Canvas& c, const PlotArea& a, const std::string& x_label, const std::string& y_label, bool grid) {
  const auto xt = nice_ticks(a.xr.lo, a.xr.hi, std::max(2, a.w / 70));
  const double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1;
  for (double t : xt) {
    const int px = int(std::lround(a.px(t)));
    if (grid) c.fill_rect(px, a.y, 1, a.h, kGrid);
    c.fill_rect(px, a.y + a.h, 1, 4, kInk);
    const std::string s = tick_label(t, xstep);
    c.text(px - Canvas::text_width(s, kLabelScale) / 2, a.y + a.h + 7, s, kInk, kLabelScale);
  }
  std::vector<double> yt;
  double ystep = 1;
  if (a.log_y) {
    yt = log_ticks(a.yr.lo, a.yr.hi);
    ystep = 0;
  } else {
    yt = nice_ticks(a.yr.lo, a.yr.hi, std::max(2, a.h / 50));
    ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  }
  for (double t : yt) {
    const int py = int(std::lround(a.py(t)));
    if (grid) c.fill_rect(a.x, py, a.w, 1, kGrid);
    c.fill_rect(a.x - 4, py, 4, 1, kInk);
    const std::string s = a.log_y ? (std::abs(std::log10(t)) < 3 ? fmt::format("{:g}", t) : fmt::format("{:.0e}", t))
                                  : tick_label(t, ystep);
    c.text(a.x - 7 - Canvas::text_width(s, kLabelScale), py - 3, s, kInk, kLabelScale);
  }
  c.frame_rect(a.x - 1, a.y - 1, a.w + 2, a.h + 2, kInk);
  if (!x_label.empty())
    c.text(a.x + (a.w - Canvas::text_width(x_label, kLabelScale)) / 2, a.y + a.h + 22, x_label, kMuted, kLabelScale);
  if (!y_label.empty()) c.text(a.x - kLeft + 4, a.y - 12, y_label, kMuted, kLabelScale);
}

std::vector<double> to_f64(const Tensor& t) {
  return t.detach().to(Device::cpu()).to(DType::f64).contiguous().to_vector<double>();
}
}  // namespace

void draw_density_panel(Canvas& c, Box box, const DensityPanel& panel) {
  DF_CHECK(panel.points.defined() && panel.points.dim() == 2 && panel.points.shape()[1] == 2,
           "density panel '{}': points must be [N, 2], got {}", panel.title,
           panel.points.defined() ? panel.points.shape().str() : "undefined");
  DF_CHECK(panel.x_range.hi > panel.x_range.lo && panel.y_range.hi > panel.y_range.lo,
           "density panel '{}': empty axis range", panel.title);
  draw_title(c, box, panel.title);
  const PlotArea a = plot_area(box, panel.x_range, panel.y_range, true);
  // A 2-D histogram of bins about 3 pixels wide (as matplotlib's hist2d with ~100 bins), coloured
  // by log count, so a few thousand samples read as a density rather than as scattered pixels.
  const int bins = std::max(16, a.w / 3);
  const auto xy = to_f64(panel.points);
  std::vector<double> counts(size_t(bins) * size_t(bins), 0.0);
  for (size_t i = 0; i + 1 < xy.size(); i += 2) {
    const double u = (xy[i] - a.xr.lo) / (a.xr.hi - a.xr.lo), v = (a.yr.hi - xy[i + 1]) / (a.yr.hi - a.yr.lo);
    if (!(u >= 0 && u < 1 && v >= 0 && v < 1)) continue;
    counts[size_t(v * bins) * size_t(bins) + size_t(u * bins)] += 1;
  }
  const double peak = std::log1p(*std::max_element(counts.begin(), counts.end()));
  for (int y = 0; y < a.h; ++y)
    for (int x = 0; x < a.w; ++x) {
      const double n = counts[size_t(y * bins / a.h) * size_t(bins) + size_t(x * bins / a.w)];
      if (n > 0 && peak > 0) c.blend(a.x + x, a.y + y, panel.tint, 0.2 + 0.8 * std::log1p(n) / peak);
    }
  draw_axes(c, a, "", "", false);
  if (panel.trajectories.defined()) {
    DF_CHECK(panel.trajectories.dim() == 3 && panel.trajectories.shape()[2] == 2,
             "density panel '{}': trajectories must be [K, T, 2], got {}", panel.title, panel.trajectories.shape().str());
    const auto tr = to_f64(panel.trajectories);
    const int64_t k = panel.trajectories.shape()[0], steps = panel.trajectories.shape()[1];
    c.set_clip(a.x, a.y, a.w, a.h);
    for (int64_t i = 0; i < k; ++i) {
      const double* p = &tr[size_t(i * steps * 2)];
      for (int64_t s = 0; s + 1 < steps; ++s)
        c.line(a.px(p[2 * s]), a.py(p[2 * s + 1]), a.px(p[2 * s + 2]), a.py(p[2 * s + 3]), kInk, 1);
      c.fill_rect(int(std::lround(a.px(p[0]))) - 2, int(std::lround(a.py(p[1]))) - 2, 5, 5, palette_color(3));
    }
    c.clear_clip();
  }
}

namespace {
Rgb series_color(const Series& s, size_t index) { return s.color ? *s.color : palette_color(index); }
}  // namespace

void draw_line_chart(Canvas& c, Box box, const LineChart& chart) {
  draw_title(c, box, chart.title);
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  auto usable = [&](double x, double y) { return std::isfinite(x) && std::isfinite(y) && (!chart.log_y || y > 0); };
  for (const auto& s : chart.series) {
    DF_CHECK(s.x.size() == s.y.size(), "line chart '{}': series '{}' has {} x values and {} y values", chart.title,
             s.label, s.x.size(), s.y.size());
    for (size_t i = 0; i < s.x.size(); ++i)
      if (usable(s.x[i], s.y[i])) {
        xlo = std::min(xlo, s.x[i]);
        xhi = std::max(xhi, s.x[i]);
        ylo = std::min(ylo, s.y[i]);
        yhi = std::max(yhi, s.y[i]);
      }
  }
  if (!std::isfinite(xlo)) {  // nothing to draw: an empty frame that says so
    const PlotArea a = plot_area(box, {0, 1}, {0, 1}, false);
    c.frame_rect(a.x - 1, a.y - 1, a.w + 2, a.h + 2, kInk);
    c.text(a.x + 8, a.y + 8, "no data", kMuted, kLabelScale);
    return;
  }
  if (xhi == xlo) xhi = xlo + 1;
  AxisRange yr;
  if (chart.log_y) {
    if (yhi == ylo) yhi = ylo * 10;
    yr = {std::pow(10.0, std::floor(std::log10(ylo) * 4) / 4), std::pow(10.0, std::ceil(std::log10(yhi) * 4) / 4)};
  } else {
    if (yhi == ylo) {  // a constant (a fixed learning rate): centred, half its size either way
      const double d = ylo != 0 ? std::abs(ylo) * 0.5 : 1.0;
      ylo -= d;
      yhi += d;
    }
    const double pad = 0.05 * (yhi - ylo);
    yr = {ylo - pad, yhi + pad};
  }
  PlotArea a = plot_area(box, {xlo, xhi}, yr, false);
  a.log_y = chart.log_y;
  draw_axes(c, a, chart.x_label, chart.y_label, true);
  c.set_clip(a.x, a.y, a.w, a.h);
  for (size_t k = 0; k < chart.series.size(); ++k) {
    const auto& s = chart.series[k];
    bool have_last = false;
    double lx = 0, ly = 0;
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!usable(s.x[i], s.y[i])) {
        have_last = false;
        continue;
      }
      const double px = a.px(s.x[i]), py = a.py(s.y[i]);
      if (have_last) c.line(lx, ly, px, py, series_color(chart.series[k], k), 2);
      else if (s.x.size() == 1) c.fill_rect(int(px) - 2, int(py) - 2, 5, 5, series_color(chart.series[k], k));
      lx = px;
      ly = py;
      have_last = true;
    }
  }
  c.clear_clip();
  // Legend, top right inside the plot, on a white box.
  int widest = 0, labelled = 0;
  for (const auto& s : chart.series)
    if (!s.label.empty()) {
      widest = std::max(widest, Canvas::text_width(s.label, kLabelScale));
      ++labelled;
    }
  if (labelled == 0) return;
  const int row = 12, lw = widest + 30, lh = labelled * row + 6;
  const int lx = a.x + a.w - lw - 6, ly = a.y + 6;
  c.fill_rect(lx, ly, lw, lh, {255, 255, 255});
  c.frame_rect(lx, ly, lw, lh, kGrid);
  int r = 0;
  for (size_t k = 0; k < chart.series.size(); ++k) {
    if (chart.series[k].label.empty()) continue;
    const int y = ly + 4 + r * row;
    c.fill_rect(lx + 5, y + 3, 16, 2, series_color(chart.series[k], k));
    c.text(lx + 25, y, chart.series[k].label, kInk, kLabelScale);
    ++r;
  }
}

void draw_image_grid_panel(Canvas& c, Box box, const ImageGridPanel& panel) {
  const Tensor& images = panel.images;
  DF_CHECK(images.defined() && images.dim() == 4 && (images.shape()[1] == 1 || images.shape()[1] == 3),
           "image grid '{}': images must be [N, 1 or 3, H, W], got {}", panel.title,
           images.defined() ? images.shape().str() : "undefined");
  DF_CHECK(panel.columns >= 1, "image grid '{}': columns must be >= 1, got {}", panel.title, panel.columns);
  const int64_t n = images.shape()[0], ch = images.shape()[1], h = images.shape()[2], w = images.shape()[3];
  const int64_t rows = (n + panel.columns - 1) / panel.columns;
  int margin = 4;
  for (const auto& label : panel.row_labels) margin = std::max(margin, Canvas::text_width(label, kLabelScale) + 10);
  const int top = panel.title.empty() ? 4 : kTop, gap = 2;
  const int64_t avail_w = box.w - margin - 4, avail_h = box.h - top - 4;
  const int64_t zoom = std::max<int64_t>(1, std::min((avail_w / panel.columns - gap) / w, (avail_h / std::max<int64_t>(rows, 1) - gap) / h));
  if (!panel.title.empty()) draw_title(c, box, panel.title);
  const auto v = to_f64(images);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t oy = box.y + top + (i / panel.columns) * (h * zoom + gap);
    const int64_t ox = box.x + margin + (i % panel.columns) * (w * zoom + gap);
    for (int64_t y = 0; y < h * zoom; ++y)
      for (int64_t x = 0; x < w * zoom; ++x) {
        auto at = [&](int64_t k) {
          const double unit = std::clamp((v[size_t(((i * ch + k) * h + y / zoom) * w + x / zoom)] + 1) * 0.5, 0.0, 1.0);
          return uint8_t(std::lround(unit * 255));
        };
        const Rgb color = ch == 1 ? Rgb{at(0), at(0), at(0)} : Rgb{at(0), at(1), at(2)};
        c.blend(int(ox + x), int(oy + y), color, 1.0);
      }
  }
  for (size_t r = 0; r < panel.row_labels.size() && int64_t(r) < rows; ++r) {
    const int64_t cy = box.y + top + int64_t(r) * (h * zoom + gap) + (h * zoom) / 2 - 3;
    c.text(box.x + 4, int(cy), panel.row_labels[r], kInk, kLabelScale);
  }
}

}  // namespace dualflow
