// Sample densities beside the data, image grids and training curves as PNG files (see plots.h).
#include "train/plots.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace dualflow {

namespace {
constexpr int kPanelWidth = 380, kPanelHeight = 390;
}

std::pair<AxisRange, AxisRange> plot_range(const Tensor& points) {
  DF_CHECK(points.defined() && points.dim() == 2 && points.shape()[1] == 2, "plot_range: points must be [N, 2], got {}",
           points.defined() ? points.shape().str() : "undefined");
  auto xy = points.detach().to(Device::cpu()).to(DType::f64).contiguous().to_vector<double>();
  std::vector<double> xs, ys;
  for (size_t i = 0; i + 1 < xy.size(); i += 2)
    if (std::isfinite(xy[i]) && std::isfinite(xy[i + 1])) {
      xs.push_back(xy[i]);
      ys.push_back(xy[i + 1]);
    }
  if (xs.empty()) return {{-1, 1}, {-1, 1}};
  auto quantile = [](std::vector<double>& v, double q) {
    const size_t k = std::min(v.size() - 1, size_t(q * double(v.size() - 1) + 0.5));
    std::nth_element(v.begin(), v.begin() + std::ptrdiff_t(k), v.end());
    return v[k];
  };
  const double x0 = quantile(xs, 0.005), x1 = quantile(xs, 0.995), y0 = quantile(ys, 0.005), y1 = quantile(ys, 0.995);
  const double half = std::max({(x1 - x0) / 2, (y1 - y0) / 2, 1e-3}) * 1.1;
  const double cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  return {{cx - half, cx + half}, {cy - half, cy + half}};
}

void save_samples_png(const std::string& path, const Tensor& samples, const Tensor& data, const std::string& title,
                      const Tensor& trajectories, const Tensor& source) {
  // One range for every panel: the data's, widened to the source's for a data-to-data flow
  // (a square around both, so the axes keep equal scales).
  auto [xr, yr] = plot_range(data.defined() ? data : samples);
  if (source.defined()) {
    const auto [sx, sy] = plot_range(source);
    const double x0 = std::min(xr.lo, sx.lo), x1 = std::max(xr.hi, sx.hi);
    const double y0 = std::min(yr.lo, sy.lo), y1 = std::max(yr.hi, sy.hi);
    const double half = std::max(x1 - x0, y1 - y0) / 2;
    xr = {(x0 + x1) / 2 - half, (x0 + x1) / 2 + half};
    yr = {(y0 + y1) / 2 - half, (y0 + y1) / 2 + half};
  }
  const int panels = (data.defined() ? 2 : 1) + (source.defined() ? 1 : 0);
  Canvas canvas(kPanelWidth * panels, kPanelHeight);
  int x = 0;
  if (source.defined()) {
    draw_density_panel(canvas, {0, 0, kPanelWidth, kPanelHeight},
                       {fmt::format("source ({})", source.shape()[0]), source, xr, yr, {70, 70, 70}, {}});
    x = kPanelWidth;
  }
  if (data.defined()) {
    draw_density_panel(canvas, {x, 0, kPanelWidth, kPanelHeight},
                       {fmt::format("data ({})", data.shape()[0]), data, xr, yr, {70, 70, 70}, {}});
    x += kPanelWidth;
  }
  draw_density_panel(canvas, {x, 0, kPanelWidth, kPanelHeight},
                     {title, samples, xr, yr, palette_color(0), trajectories});
  canvas.save_png(path);
}

void save_image_grid_png(const std::string& path, const Tensor& images, int columns,
                         const std::vector<std::string>& row_labels) {
  DF_CHECK(images.defined() && images.dim() == 4 && (images.shape()[1] == 1 || images.shape()[1] == 3),
           "save_image_grid_png: images must be [N, 1 or 3, H, W], got {}",
           images.defined() ? images.shape().str() : "undefined");
  DF_CHECK(columns >= 1, "save_image_grid_png: columns must be >= 1, got {}", columns);
  const int64_t n = images.shape()[0], h = images.shape()[2], w = images.shape()[3];
  const int64_t rows = std::max<int64_t>(1, (n + columns - 1) / columns), gap = 2;
  const int64_t zoom = std::clamp<int64_t>(56 / std::max(h, w), 1, 4);
  // The panel's layout (draw_image_grid_panel): a left margin for the labels, 4 pixels above.
  int margin = 4;
  for (const auto& label : row_labels) margin = std::max(margin, Canvas::text_width(label) + 10);
  const int64_t width = margin + columns * (w * zoom + gap) + 4, height = 4 + rows * (h * zoom + gap) + 4;
  Canvas canvas{static_cast<int>(width), static_cast<int>(height)};
  draw_image_grid_panel(canvas, {0, 0, int(width), int(height)}, {"", images, columns, row_labels});
  canvas.save_png(path);
}

std::vector<std::string> class_names(const std::string& dataset, int64_t classes) {
  static const std::vector<std::string> fashion = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  std::vector<std::string> names;
  for (int64_t k = 0; k < classes; ++k)
    names.push_back(dataset.find("fashion") != std::string::npos && k < 10 ? fashion[size_t(k)]
                                                                          : fmt::format("class {}", k));
  return names;
}

MetricsCurves read_metrics_curves(const std::string& path, const std::string& label) {
  namespace fs = std::filesystem;
  fs::path file = path;
  if (fs::is_directory(file)) file /= "metrics.jsonl";
  std::ifstream in(file);
  DF_CHECK(in.good(), "metrics: cannot read '{}' (expected a metrics.jsonl file or a run folder holding one)",
           file.string());
  MetricsCurves curves;
  curves.label = label.empty() ? (fs::is_directory(path) ? fs::path(path).lexically_normal().filename().string()
                                                         : file.parent_path().filename().string())
                               : label;
  if (curves.label.empty()) curves.label = file.filename().string();
  std::string line;
  int64_t number = 0, usable = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    // A line cut short by a kill is skipped, as on resume; anything else that is not JSON is an error.
    nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
    if (record.is_discarded() || !record.is_object() || !record.contains("step") || !record["step"].is_number() ||
        record.contains("event"))
      continue;
    const double step = record["step"].get<double>();
    for (auto it = record.begin(); it != record.end(); ++it)
      if (it.key() != "step" && it.value().is_number()) curves.fields[it.key()].push_back({step, it.value().get<double>()});
    ++usable;
  }
  DF_CHECK(usable > 0, "metrics: '{}' holds no step records ({} lines)", file.string(), number);
  return curves;
}

void save_metrics_png(const std::string& path, const std::vector<MetricsCurves>& runs) {
  DF_CHECK(!runs.empty(), "save_metrics_png: no runs to plot");
  struct Panel {
    const char* field;
    const char* title;
  };
  const Panel panels[] = {{"loss", "loss"}, {"grad_norm", "gradient norm"}, {"lr", "learning rate"}};
  const int width = 460, height = 330;
  Canvas canvas(width * 3, height);
  for (int p = 0; p < 3; ++p) {
    LineChart chart;
    chart.title = panels[p].title;
    chart.x_label = "step";
    bool positive = true;
    for (const auto& run : runs) {
      Series s;
      s.label = runs.size() > 1 ? run.label : "";
      auto it = run.fields.find(panels[p].field);
      if (it != run.fields.end())
        for (const auto& [step, value] : it->second) {
          s.x.push_back(step);
          s.y.push_back(value);
          positive = positive && value > 0;
        }
      chart.series.push_back(std::move(s));
    }
    chart.log_y = positive && std::string(panels[p].field) != "lr";
    draw_line_chart(canvas, {p * width, 0, width, height}, chart);
  }
  canvas.save_png(path);
}

}  // namespace dualflow
