// The pictures a run and its commands write, drawn with train/figure.h: 2-D samples as a
// density with axes beside the data (and optionally trajectories through the ODE), image grids
// with class names in the margin, and training curves read from metrics.jsonl files.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/dualflow.h"
#include "train/figure.h"

namespace dualflow {

// One square range for both axes covering `points` [N, 2] (their 0.5% to 99.5% quantiles,
// widened by 10%), so that a few far-off samples do not shrink the picture.
std::pair<AxisRange, AxisRange> plot_range(const Tensor& points);

// 2-D samples [N, 2] as a density with axes, titled `title`, beside `data` [M, 2] on the same
// axes (undefined data: the samples alone), with `trajectories` [K, T, 2] drawn over the
// samples' panel when defined.
// `source` [S, 2], when defined (a data-to-data flow), gets a panel of its own before the data.
void save_samples_png(const std::string& path, const Tensor& samples, const Tensor& data, const std::string& title,
                      const Tensor& trajectories = {}, const Tensor& source = {});

// images [N, C, H, W] with C = 1 or 3 and values in [-1, 1]: a grid of `columns` per row,
// magnified to about 56 pixels per image, with row_labels[r] in the left margin of row r.
void save_image_grid_png(const std::string& path, const Tensor& images, int columns,
                         const std::vector<std::string>& row_labels = {});

// The names of a labelled image set's classes (Fashion-MNIST's ten; "class k" otherwise).
std::vector<std::string> class_names(const std::string& dataset, int64_t classes);

// A run's training curves: for each numeric field of metrics.jsonl's step lines (loss, lr,
// grad_norm, ...), its (step, value) pairs in file order. Lines that are not step records
// (events) are skipped; `label` names the run in legends.
struct MetricsCurves {
  std::string label;
  std::map<std::string, std::vector<std::pair<double, double>>> fields;
};
// path: a metrics.jsonl file or a run folder holding one.
MetricsCurves read_metrics_curves(const std::string& path, const std::string& label = "");

// Loss, gradient norm and learning rate against step, one panel each (log y where every value
// is positive), the runs overlaid with a legend when there are several.
void save_metrics_png(const std::string& path, const std::vector<MetricsCurves>& runs);

}  // namespace dualflow
