// Sample outputs: the .npy layout NumPy expects and PNG pictures that decode to what was drawn.
#include <catch2/catch.hpp>

#include <stb_image.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "tests/engine/test_util.h"
#include "tests/train/decoded_png.h"
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

using Png = DecodedPng;

TEST_CASE("png: an image grid decodes to the drawn pixels, magnified, with row labels in its margin", "[outputs]") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / fmt::format("dualflow-png-{}", ::getpid());
  fs::create_directories(dir);
  // Two 2x2 gray images: all -1 (black) and all +1 (white); magnified 4x (to about 56 pixels, at most 4x).
  Tensor imgs = cat({full({1, 1, 2, 2}, -1.0), full({1, 1, 2, 2}, 1.0)}, 0);
  std::string grid = (dir / "grid.png").string();
  save_image_grid_png(grid, imgs, 2);
  Png p = load_png(grid);
  REQUIRE(p.w == 4 + 2 * (8 + 2) + 4);
  REQUIRE(p.h == 4 + (8 + 2) + 4);
  REQUIRE(p.at(4 + 3, 4 + 3)[0] == 0);         // first image, black
  REQUIRE(p.at(4 + 10 + 3, 4 + 3)[0] == 255);  // second image, white
  // With labels the margin widens and holds their text; the images move right.
  save_image_grid_png(grid, imgs, 1, {"Trouser", "Bag"});
  Png q = load_png(grid);
  const int margin = Canvas::text_width("Trouser") + 10;
  REQUIRE(q.w == margin + (8 + 2) + 4);
  REQUIRE(q.ink(0, 0, margin, q.h) > 20);  // text in the margin
  REQUIRE(q.at(margin + 3, 4 + 3)[0] == 0);
  REQUIRE(class_names("fashion_mnist", 10)[9] == "Ankle boot");
  REQUIRE(class_names("mnist", 2)[1] == "class 1");
  REQUIRE_THROWS_WITH(save_image_grid_png(grid, zeros({3, 3}), 2), Catch::Contains("must be [N, 1 or 3, H, W]"));
  fs::remove_all(dir);
}

TEST_CASE("png: 2-D samples beside the data, each a density panel with axes; trajectories drawn over", "[outputs]") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / fmt::format("dualflow-density-{}", ::getpid());
  fs::create_directories(dir);
  Generator gen(3);
  Tensor data = randn({2000, 2}, gen), samples = randn({2000, 2}, gen) * 0.5 + 1.0;
  const std::string path = (dir / "samples.png").string();
  save_samples_png(path, samples, data, "euler, 100 steps (100 NFE)");
  Png p = load_png(path);
  REQUIRE(p.w == 2 * 380);
  REQUIRE(p.h == 390);
  // Both panels hold ink inside their plotting areas (a density, not a blank frame), and the
  // samples' panel is tinted blue where the density is.
  const int64_t left = p.ink(70, 40, 370, 340), right = p.ink(380 + 70, 40, 380 + 370, 340);
  REQUIRE(left > 5000);
  REQUIRE(right > 2000);
  bool blue = false;
  for (int y = 40; y < 340 && !blue; ++y)
    for (int x = 380 + 70; x < 380 + 370 && !blue; ++x) blue = p.at(x, y)[2] > p.at(x, y)[0] + 60;
  REQUIRE(blue);
  // The range covers the data's bulk on both axes alike: the data's panel is roughly symmetric.
  const auto [xr, yr] = plot_range(data);
  REQUIRE(xr.hi - xr.lo == Approx(yr.hi - yr.lo));
  REQUIRE(xr.lo < -2.0);
  REQUIRE(xr.hi > 2.0);
  // Trajectories add dark line pixels to the samples' panel.
  std::vector<double> xy;
  for (int k = 0; k < 3; ++k)
    for (int s = 0; s < 5; ++s) {
      xy.push_back(-2.0 + s);
      xy.push_back(-1.0 + k);
    }
  Tensor path_points = from_vector(xy, {3, 5, 2});
  const std::string with_paths = (dir / "paths.png").string();
  save_samples_png(with_paths, samples, data, "with paths", path_points);
  if (const char* keep = std::getenv("DUALFLOW_KEEP_PNG2")) save_samples_png(keep, samples, data, "with paths", path_points);
  Png t = load_png(with_paths);
  int64_t dark_before = 0, dark_after = 0;
  for (int y = 40; y < 340; ++y)
    for (int x = 380 + 70; x < 380 + 370; ++x) {
      dark_before += p.at(x, y)[0] < 60 && p.at(x, y)[2] < 60;
      dark_after += t.at(x, y)[0] < 60 && t.at(x, y)[2] < 60;
    }
  REQUIRE(dark_after > dark_before + 300);
  REQUIRE_THROWS_WITH(save_samples_png(path, zeros({3, 3}), data, "x"), Catch::Contains("must be [N, 2]"));
  fs::remove_all(dir);
}

TEST_CASE("png: training curves from metrics.jsonl, one panel per field, runs overlaid", "[outputs]") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / fmt::format("dualflow-curves-{}", ::getpid());
  fs::create_directories(dir / "run_a");
  {
    std::ofstream m(dir / "run_a" / "metrics.jsonl");
    for (int step = 100; step <= 1000; step += 100)
      m << fmt::format(R"({{"step":{},"loss":{},"lr":0.001,"grad_norm":{},"it_per_s":50}})", step, 2.0 / step,
                       1.0 + step / 1000.0)
        << "\n";
    m << R"({"step":500,"event":"resume"})" << "\n";
    m << R"({"step":1100,"loss":0.00)";  // cut short by a kill
  }
  MetricsCurves a = read_metrics_curves((dir / "run_a").string());
  REQUIRE(a.label == "run_a");
  REQUIRE(a.fields.at("loss").size() == 10);
  REQUIRE(a.fields.at("loss")[0] == std::make_pair(100.0, 0.02));
  REQUIRE(a.fields.at("grad_norm").size() == 10);
  MetricsCurves b = a;
  b.label = "run_b";
  for (auto& [step, v] : b.fields["loss"]) v *= 3;
  const std::string png = (dir / "metrics.png").string();
  save_metrics_png(png, {a, b});
  if (const char* keep = std::getenv("DUALFLOW_KEEP_PNG")) save_metrics_png(keep, {a, b});
  Png p = load_png(png);
  REQUIRE(p.w == 3 * 460);
  REQUIRE(p.h == 330);
  // Each of the three panels has its curve: palette blue (run a) and orange (run b) in the loss panel.
  auto count_color = [&](int x0, int x1, int r, int g, int bl) {
    int64_t n = 0;
    for (int y = 0; y < p.h; ++y)
      for (int x = x0; x < x1; ++x) n += p.at(x, y)[0] == r && p.at(x, y)[1] == g && p.at(x, y)[2] == bl;
    return n;
  };
  REQUIRE(count_color(0, 460, 31, 119, 180) > 100);
  REQUIRE(count_color(0, 460, 255, 127, 14) > 100);
  // The other two fields are equal in both runs: run b's orange covers run a's blue.
  REQUIRE(count_color(460, 920, 255, 127, 14) > 100);
  REQUIRE(count_color(920, 1380, 255, 127, 14) > 100);
  REQUIRE_THROWS_WITH(read_metrics_curves((dir / "nowhere").string()), Catch::Contains("cannot read"));
  std::ofstream(dir / "empty.jsonl") << R"({"step":0,"event":"start"})" << "\n";
  REQUIRE_THROWS_WITH(read_metrics_curves((dir / "empty.jsonl").string()), Catch::Contains("holds no step records"));
  fs::remove_all(dir);
}

TEST_CASE("figure: nice ticks, log ticks and their labels", "[outputs]") {
  auto same = [](const std::vector<double>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(want[i]).margin(1e-12));
  };
  same(nice_ticks(0, 1, 5), {0, 0.2, 0.4, 0.6, 0.8, 1.0});
  same(nice_ticks(-3.3, 3.3, 4), {-2, 0, 2});
  same(nice_ticks(-3.3, 3.3, 7), {-3, -2, -1, 0, 1, 2, 3});
  same(nice_ticks(100, 1000, 4), {200, 400, 600, 800, 1000});
  same(nice_ticks(100, 1000, 8), {100, 200, 300, 400, 500, 600, 700, 800, 900, 1000});
  same(nice_ticks(-4.4, 4.4, 4), {-4, -2, 0, 2, 4});
  same(log_ticks(0.003, 20), {0.01, 0.1, 1, 10});
  REQUIRE(log_ticks(0.5, 3).size() == 3);  // 0.5, 1, 2: less than two decades add 2 and 5
  REQUIRE(tick_label(0.2, 0.2) == "0.2");
  REQUIRE(tick_label(1500, 500) == "1500");
  REQUIRE(tick_label(0, 1) == "0");
}


TEST_CASE("npy: an array streamed in pieces is the same file as written whole; a short or long one is refused",
          "[outputs]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / fmt::format("dualflow-npy-{}", ::getpid());
  fs::create_directories(dir);
  const Tensor t = arange(0, 24, 1, DType::f64).reshape({6, 2, 2});
  const std::string path = (dir / "x.npy").string();
  {
    NpyF32Writer w(path, t.shape());
    w.append(t.narrow(0, 0, 4));
    w.append(t.narrow(0, 4, 2).to(DType::f32));
    REQUIRE(w.rows_written() == 6);
    REQUIRE_FALSE(fs::exists(path));  // nothing visible before the commit
    w.commit();
  }
  std::ifstream f(path, std::ios::binary);
  REQUIRE(std::string((std::istreambuf_iterator<char>(f)), {}) == npy_f32_bytes(t));
  {
    NpyF32Writer w((dir / "short.npy").string(), t.shape());
    w.append(t.narrow(0, 0, 5));
    REQUIRE_THROWS_WITH(w.commit(), Catch::Contains("5 of the array's 6 rows were written"));
    REQUIRE_THROWS_WITH(w.append(t.narrow(0, 0, 2)), Catch::Contains("1 rows more than the array's 6"));
    REQUIRE_THROWS_WITH(w.append(zeros({1, 3, 2})), Catch::Contains("rows of shape [1,3,2] for an array of [6,2,2]"));
  }
  REQUIRE_FALSE(fs::exists(dir / "short.npy"));  // an uncommitted writer leaves no file
  fs::remove_all(dir);
}

}  // namespace dualflow::testing
