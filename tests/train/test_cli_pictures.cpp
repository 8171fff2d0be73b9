// The pictures the `dualflow` program writes, run as a child process: demo.png, a run's
// samples.png and metrics.png, and `dualflow plot` over several runs. Each is checked as a
// decoded PNG: its size, and ink (non-white pixels) in every panel.
#include <catch2/catch.hpp>
#include <stb_image.h>

#include "tests/train/cli_runner.h"
#include "tests/train/decoded_png.h"
#include "train/figure.h"

namespace dualflow::testing {
using Picture = DecodedPng;

inline Picture decode(const fs::path& path) {
  REQUIRE(fs::exists(path));
  return load_png(path.string());
}

TEST_CASE("dualflow demo: demo.png holds the data, three samplers and two loss curves", "[cli_pictures]") {
  Scratch s("demo");
  Outcome o = run_dualflow(s, {"demo", "--out", "d", "--cfm-steps", "40", "--meanflow-steps", "40", "--n", "600",
                               "--threads", "1"});
  REQUIRE_SUCCEEDED(o);
  REQUIRE_THAT(o.out, Catch::Contains("OT-CFM, Euler      100 NFE   energy distance ratio") &&
                          Catch::Contains("MeanFlow, 1 step     1 NFE   energy distance ratio") &&
                          Catch::Contains("demo.png"));
  Picture p = decode(s.work / "d" / "demo.png");
  REQUIRE(p.w == 4 * 380);
  REQUIRE(p.h == 390 + 330);
  // Each density panel's plotting area holds a density; each loss chart a curve.
  for (int panel = 0; panel < 4; ++panel) {
    INFO("panel " << panel);
    REQUIRE(p.ink(panel * 380 + 70, 40, panel * 380 + 360, 330) > 3000);
  }
  REQUIRE(p.ink(70, 390 + 40, 740, 390 + 280) > 1000);
  REQUIRE(p.ink(760 + 70, 390 + 40, 1500, 390 + 280) > 1000);
  // Both runs are ordinary runs: checkpoints that `dualflow sample` reads.
  REQUIRE(fs::exists(s.work / "d" / "cfm" / "checkpoint.safetensors"));
  REQUIRE(fs::exists(s.work / "d" / "meanflow" / "metrics.jsonl"));
}

TEST_CASE("dualflow train, sample and plot: samples beside the data, curves at each checkpoint, runs overlaid",
          "[cli_pictures]") {
  Scratch s("plots");
  train_tiny(s);
  // samples.png: the data's panel and the samples' panel (16 points each: a 3-pixel bin a point);
  // metrics.png: three charts.
  Picture samples = decode(s.work / "run" / "samples.png");
  REQUIRE(samples.w == 2 * 380);
  REQUIRE(samples.h == 390);
  REQUIRE(samples.ink(70, 40, 360, 330) > 16 * 6);
  REQUIRE(samples.ink(380 + 70, 40, 380 + 360, 330) > 16 * 6);
  Picture metrics = decode(s.work / "run" / "metrics.png");
  REQUIRE(metrics.w == 3 * 460);
  REQUIRE(metrics.h == 330);
  for (int chart = 0; chart < 3; ++chart) REQUIRE(metrics.ink(chart * 460 + 60, 30, chart * 460 + 440, 290) > 500);

  Outcome o = run_dualflow(s, {"sample", "--checkpoint", "run/checkpoint.safetensors", "--out", "x.npy", "--n", "300"});
  REQUIRE_SUCCEEDED(o);
  REQUIRE(decode(s.work / "x.png").w == 2 * 380);
  // An output no disk holds is refused before sampling, with the bytes it needs (8 TB here).
  Outcome huge = run_dualflow(s, {"sample", "--checkpoint", "run/checkpoint.safetensors", "--out", "huge.npy", "--n",
                                  "1000000000000"});
  REQUIRE(huge.status > 0);
  REQUIRE(huge.status < 128);
  REQUIRE_THAT(huge.err, Catch::Contains("sample: --n 1000000000000 writes 7450.6 GiB to 'huge.npy', but its folder "
                                         "has") &&
                             Catch::Contains("free"));
  REQUIRE_FALSE(fs::exists(s.work / "huge.npy"));

  // A second run, then both overlaid.
  Outcome t = run_dualflow(s, {"train", "tiny.toml", "--out", "run2", "--set", "optim.lr=3e-3"});
  REQUIRE(t.status == 0);
  Outcome p = run_dualflow(s, {"plot", "run", "run2/metrics.jsonl", "--label", "lr 1e-3", "--label", "lr 3e-3",
                               "--out", "both.png"});
  INFO(p.err);
  REQUIRE(p.status == 0);
  REQUIRE_THAT(p.out, Catch::Contains("lr 1e-3: 2 logged steps") && Catch::Contains("lr 3e-3: 2 logged steps"));
  REQUIRE(decode(s.work / "both.png").w == 3 * 460);
  // One run: its own folder by default.
  fs::remove(s.work / "run" / "metrics.png");
  REQUIRE(run_dualflow(s, {"plot", "run"}).status == 0);
  REQUIRE(fs::exists(s.work / "run" / "metrics.png"));
  // Refusals name what was expected.
  Outcome missing = run_dualflow(s, {"plot", "nowhere"});
  REQUIRE(missing.status > 0);
  REQUIRE_THAT(missing.err, Catch::Contains("cannot read 'nowhere' (expected a metrics.jsonl file or a run folder"));
  Outcome two = run_dualflow(s, {"plot", "run", "run2"});
  REQUIRE(two.status > 0);
  REQUIRE_THAT(two.err, Catch::Contains("--out FILE is required with several runs"));
  Outcome labels = run_dualflow(s, {"plot", "run", "run2", "--label", "a", "--out", "x.png"});
  REQUIRE(labels.status > 0);
  REQUIRE_THAT(labels.err, Catch::Contains("--label given 1 times for 2 runs"));
}


TEST_CASE("dualflow eval: samples drawn and classified piece by piece, the grid's rows named by class",
          "[cli_pictures]") {
  const fs::path data = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(data / "t10k-images-idx3-ubyte.gz")) {
    WARN("Fashion-MNIST is not installed (tools/setup.sh installs dataset-fashion-mnist): eval not run");
    return;
  }
  Scratch s("eval");
  s.write("steps.toml", "[train]\nsteps = 3\nbatch = 16\n");
  Outcome clf = run_dualflow(s, {"train-classifier", "steps.toml", "--out", "clf", "--set", "model.widths=[8,16]",
                                 "--set", "optim.warmup_steps=1", "--set", "train.steps=5"});
  INFO(clf.err);
  REQUIRE(clf.status == 0);
  Outcome model = run_dualflow(
      s, {"train", "steps.toml", "--out", "m", "--set", "data.name=\"fashion_mnist\"", "--set", "data.limit=64",
          "--set", "model.kind=\"dit\"", "--set", "model.classes=10", "--set", "model.dit_hidden=32", "--set",
          "model.dit_depth=1", "--set", "model.dit_heads=2", "--set", "method.name=\"meanflow\""});
  INFO(model.err);
  REQUIRE(model.status == 0);
  // 600 samples: three pieces of 250, 250 and 100.
  // Trajectories are drawn over 2-D samples only.
  Outcome paths = run_dualflow(s, {"sample", "--checkpoint", "m/checkpoint.safetensors", "--out", "p.npy", "--n", "4",
                                   "--trajectories", "2"});
  REQUIRE(paths.status > 0);
  REQUIRE_THAT(paths.err, Catch::Contains("sample: --trajectories draws paths over 2-D samples; this checkpoint's data "
                                          "(fashion_mnist) are images"));
  Outcome e = run_dualflow(s, {"eval", "--classifier", "clf/checkpoint.safetensors", "--checkpoint",
                               "m/checkpoint.safetensors", "--n", "600", "--grid", "g.png", "--out", "e.jsonl"});
  INFO(e.err);
  INFO(e.out);
  REQUIRE(e.status == 0);
  REQUIRE_THAT(e.out, Catch::Contains("sampled and classified 600/600 (100%)") &&
                          Catch::Contains("600 samples of step 3 by MeanFlow, 1 step") &&
                          Catch::Contains("class accuracy"));
  REQUIRE_THAT(s.read("e.jsonl"), Catch::Contains(R"("n":600)") && Catch::Contains(R"("class_accuracy":)"));
  Picture g = decode(s.work / "g.png");
  // 10 rows of 10 images magnified 2x (58 pixels a cell), a label margin on the left.
  const int margin = Canvas::text_width("T-shirt/top") + 10;
  REQUIRE(g.w == margin + 10 * (56 + 2) + 4);
  REQUIRE(g.h == 4 + 10 * (56 + 2) + 4);
  REQUIRE(g.ink(0, 0, margin - 4, g.h) > 200);  // the class names
}

}  // namespace dualflow::testing
