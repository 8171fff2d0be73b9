// The 2-D toy datasets (see data2d.h). Each draws whole tensors of uniforms or normals from the
// generator (one Philox stream per quantity, so the stream layout does not depend on n's
// parity), computes the points in f64 and converts once to the requested dtype and device.
#include "train/data2d.h"

#include <fmt/format.h>

#include <cmath>
#include <numbers>

namespace dualflow {

namespace {

using Vec = std::vector<double>;

void check_count(const char* who, int64_t n) {
  DF_CHECK(n >= 0, "{}: the number of points must be non-negative, given {}", who, n);
}

Vec uniforms(int64_t n, Generator& gen) { return rand({n}, gen, DType::f64).to_vector<double>(); }
Vec normals(int64_t n, Generator& gen) { return randn({n}, gen, DType::f64).to_vector<double>(); }

Tensor finish(const Vec& xy, int64_t n, TensorOptions opts) {
  return from_vector(xy, {n, 2}, DType::f64).to(opts.dtype).to(opts.device);
}

}  // namespace

Tensor checkerboard(int64_t n, Generator& gen, TensorOptions opts) {
  check_count("checkerboard", n);
  Vec x1 = uniforms(n, gen), u = uniforms(n, gen), b = uniforms(n, gen);
  Vec xy(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    const double a = 4 * x1[i] - 2;                                             // U[-2, 2)
    const double parity = std::fmod(std::fmod(std::floor(a), 2.0) + 2.0, 2.0);  // Python's mod
    const double bern = b[i] < 0.5 ? 1.0 : 0.0;
    xy[2 * i] = 2 * a;
    xy[2 * i + 1] = 2 * (u[i] - 2 * bern + parity);
  }
  return finish(xy, n, opts);
}

Tensor two_moons(int64_t n, Generator& gen, TensorOptions opts) {
  check_count("two_moons", n);
  Vec angle = uniforms(n, gen), which = uniforms(n, gen), noise = normals(2 * n, gen);
  Vec xy(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    const double a = std::numbers::pi * angle[i];
    double x, y;
    if (which[i] < 0.5) {
      x = std::cos(a);
      y = std::sin(a);
    } else {
      x = 1 - std::cos(a);
      y = 0.5 - std::sin(a);
    }
    xy[2 * i] = 2 * (x + 0.1 * noise[2 * i]) - 1;
    xy[2 * i + 1] = 2 * (y + 0.1 * noise[2 * i + 1]) - 0.2;
  }
  return finish(xy, n, opts);
}

Tensor eight_gaussians(int64_t n, Generator& gen, TensorOptions opts) {
  check_count("eight_gaussians", n);
  Vec pick = uniforms(n, gen), noise = normals(2 * n, gen);
  Vec xy(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    const int k = std::min(int(pick[i] * 8), 7);
    const double angle = k * std::numbers::pi / 4;  // the 8 unit directions, 45 degrees apart
    xy[2 * i] = (4 * std::cos(angle) + 0.5 * noise[2 * i]) / 1.414;
    xy[2 * i + 1] = (4 * std::sin(angle) + 0.5 * noise[2 * i + 1]) / 1.414;
  }
  return finish(xy, n, opts);
}

Tensor circles(int64_t n, Generator& gen, TensorOptions opts) {
  check_count("circles", n);
  Vec angle = uniforms(n, gen), which = uniforms(n, gen), noise = normals(2 * n, gen);
  Vec xy(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    const double a = 2 * std::numbers::pi * angle[i];
    const double r = which[i] < 0.5 ? 1.0 : 0.5;
    xy[2 * i] = 3 * (r * std::cos(a) + 0.08 * noise[2 * i]);
    xy[2 * i + 1] = 3 * (r * std::sin(a) + 0.08 * noise[2 * i + 1]);
  }
  return finish(xy, n, opts);
}

Tensor spirals(int64_t n, Generator& gen, TensorOptions opts) {
  check_count("spirals", n);
  Vec radius = uniforms(n, gen), jitter = uniforms(2 * n, gen), which = uniforms(n, gen), noise = normals(2 * n, gen);
  Vec xy(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    const double r = std::sqrt(radius[i]) * 3 * std::numbers::pi;  // 540 degrees of arm
    double x = -std::cos(r) * r + 0.5 * jitter[2 * i];
    double y = std::sin(r) * r + 0.5 * jitter[2 * i + 1];
    if (which[i] >= 0.5) {  // the second arm is the first reflected through the origin
      x = -x;
      y = -y;
    }
    xy[2 * i] = x / 3 + 0.1 * noise[2 * i];
    xy[2 * i + 1] = y / 3 + 0.1 * noise[2 * i + 1];
  }
  return finish(xy, n, opts);
}

Tensor pinwheel(int64_t n, Generator& gen, TensorOptions opts) {
  check_count("pinwheel", n);
  const int arms = 5;
  const double radial_std = 0.3, tangential_std = 0.1, rate = 0.25;
  Vec pick = uniforms(n, gen), noise = normals(2 * n, gen);
  Vec xy(2 * n);
  for (int64_t i = 0; i < n; ++i) {
    const int k = std::min(int(pick[i] * arms), arms - 1);
    const double f0 = 1 + radial_std * noise[2 * i], f1 = tangential_std * noise[2 * i + 1];
    // Farther points turn more: that twist is what makes the arms curve.
    const double angle = 2 * std::numbers::pi * k / arms + rate * std::exp(f0);
    const double c = std::cos(angle), s = std::sin(angle);
    xy[2 * i] = 2 * (f0 * c - f1 * s);
    xy[2 * i + 1] = 2 * (f0 * s + f1 * c);
  }
  return finish(xy, n, opts);
}

std::vector<std::string> dataset_2d_names() {
  return {"checkerboard", "moons", "8gaussians", "circles", "spirals", "pinwheel"};
}

Tensor sample_2d(const std::string& name, int64_t n, Generator& gen, TensorOptions opts) {
  if (name == "checkerboard") return checkerboard(n, gen, opts);
  if (name == "moons") return two_moons(n, gen, opts);
  if (name == "8gaussians") return eight_gaussians(n, gen, opts);
  if (name == "circles") return circles(n, gen, opts);
  if (name == "spirals") return spirals(n, gen, opts);
  if (name == "pinwheel") return pinwheel(n, gen, opts);
  fail("sample_2d: unknown dataset '{}'; known: {}", name, fmt::join(dataset_2d_names(), ", "));
}

}  // namespace dualflow
