// `dualflow demo`: the methods themselves in about a minute on a laptop. Trains OT-CFM and
// MeanFlow on the checkerboard with small budgets through the same run as `dualflow train`,
// samples both (CFM by Euler with 100 steps and with 1, MeanFlow in 1 step), prints each
// sampler's energy distance to the data over the data's own two-draw distance, and draws
// demo.png: the data and the three samplers as densities with axes, and both loss curves.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "engine/threads.h"
#include "train/cli/commands.h"
#include "train/data2d.h"
#include "train/flow_run.h"
#include "train/plots.h"
#include "train/sample_distance.h"
#include "train/sampling.h"
#include "train/training_loop.h"

namespace dualflow::cli {
namespace {

struct DemoOptions {
  std::string out = "demo";
  int64_t cfm_steps = 4000, meanflow_steps = 5000;
  int64_t n = 5000;  // samples per panel
  uint64_t seed = 0;
  int threads = 0;
};

// Both runs: the toy2d network at a third of its depth budget, small batches and a short EMA,
// so that each trains in seconds. MeanFlow keeps configs/toy2d_meanflow.toml's method settings
// (that file says why they differ from the paper's).
std::vector<std::string> common_settings(const DemoOptions& o, int64_t steps) {
  return {"data.name=\"checkerboard\"",
          "model.width=128",
          "model.depth=3",
          "train.batch=256",
          fmt::format("train.steps={}", steps),
          fmt::format("train.log_every={}", std::max<int64_t>(1, steps / 50)),
          "train.checkpoint_every=0",
          "optim.lr=2e-3",
          "optim.ema_decay=0.995",
          "sample.n=2000",
          fmt::format("run.seed={}", o.seed)};
}

struct DemoRun {
  std::string name;
  LoadedModel model;
  MetricsCurves curves;
  double seconds = 0;
};

DemoRun train_demo_run(const std::string& name, const std::string& title, const std::vector<std::string>& sets,
                       int64_t steps, const DemoOptions& o) {
  namespace fs = std::filesystem;
  TrainRunOptions run;
  run.out_dir = (fs::path(o.out) / name).string();
  run.quiet = true;
  fs::remove_all(run.out_dir);
  fmt::print("training {} ({} steps) ...\n", title, steps);
  std::fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  const TrainRunResult r = train_flow_matching(parse_config_text("", "<demo>", sets, flow_matching_schema()), run);
  DemoRun d{name, load_model_from_checkpoint((fs::path(run.out_dir) / "checkpoint.safetensors").string()),
            read_metrics_curves(run.out_dir, title), 0};
  d.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("  {} steps in {:.1f} s, final loss {:.4f}\n", r.steps_done, d.seconds, r.last_loss);
  return d;
}

struct DemoPanel {
  std::string title;
  Tensor points;
  double ratio = 0;
};

DemoPanel sample_panel(const LoadedModel& lm, const std::string& label, const SampleChoices& choices,
                       const DemoOptions& o) {
  const SampleRequest request = sample_request(lm.spec, lm.model, choices);
  const DrawnSamples drawn = draw_samples(lm.model, request);
  // 2000 points a draw (a quarter of `dualflow sample`'s cost): the ratio's noise is a few percent.
  const DistanceToData d = distance_to_data(lm.spec.data.name, drawn.x, o.seed + 5, 6, 2000);
  fmt::print("  {:<18} {:>3} NFE   energy distance ratio {:6.2f}\n", label, drawn.nfe, d.ratio);
  return {fmt::format("{}, {} NFE", label, drawn.nfe), drawn.x, d.ratio};
}

void run_demo(const DemoOptions& o) {
  namespace fs = std::filesystem;
  if (o.threads > 0) set_cpu_threads(o.threads);
  const auto t0 = std::chrono::steady_clock::now();
  fs::create_directories(o.out);
  std::vector<std::string> cfm = common_settings(o, o.cfm_steps), meanflow = common_settings(o, o.meanflow_steps);
  for (const char* s : {"method.name=\"cfm\"", "method.path=\"condot\"", "method.coupling=\"exact_ot\""})
    cfm.push_back(s);
  for (const char* s : {"method.name=\"meanflow\"", "model.time_scale=10", "meanflow.time_distribution=\"uniform\"",
                        "meanflow.ratio_r_neq_t=0.25", "meanflow.adaptive_p=0", "meanflow.sample_steps=1"})
    meanflow.push_back(s);
  fmt::print("dualflow demo: OT-CFM and MeanFlow on the checkerboard, {} CPU thread(s); output in {}/\n",
             cpu_threads(), o.out);
  const DemoRun cfm_run = train_demo_run("cfm", "OT-CFM", cfm, o.cfm_steps, o);
  const DemoRun meanflow_run = train_demo_run("meanflow", "MeanFlow", meanflow, o.meanflow_steps, o);

  fmt::print("sampling {} points each (ratio: energy distance to the data over the data's own; 1 is the floor)\n",
             o.n);
  SampleChoices euler100, euler1, one_jump;
  euler100.n = euler1.n = one_jump.n = o.n;
  euler100.seed = euler1.seed = one_jump.seed = o.seed + 3;
  euler100.solver = euler1.solver = "euler";
  euler100.steps = 100;
  euler1.steps = 1;
  one_jump.steps = 1;
  Generator data_gen(o.seed + 11);
  const Tensor data = sample_2d("checkerboard", o.n, data_gen, DType::f32);
  const DemoPanel panels[] = {
      sample_panel(cfm_run.model, "OT-CFM, Euler", euler100, o),
      sample_panel(cfm_run.model, "OT-CFM, Euler", euler1, o),
      sample_panel(meanflow_run.model, "MeanFlow, 1 step", one_jump, o),
  };

  const int pw = 380, ph = 390;
  Canvas canvas(4 * pw, ph + 330);
  const auto [xr, yr] = plot_range(data);
  draw_density_panel(canvas, {0, 0, pw, ph}, {"data", data, xr, yr, {70, 70, 70}, {}});
  for (int i = 0; i < 3; ++i)
    draw_density_panel(canvas, {(i + 1) * pw, 0, pw, ph},
                       {panels[i].title, panels[i].points, xr, yr, palette_color(size_t(i == 2 ? 1 : 0)), {}});
  // The two objectives are on different scales: a chart each.
  for (int i = 0; i < 2; ++i) {
    const DemoRun& run = i == 0 ? cfm_run : meanflow_run;
    LineChart chart;
    chart.title = fmt::format("{} training loss", run.curves.label);
    chart.x_label = "step";
    Series s;
    for (const auto& [step, value] : run.curves.fields.at("loss")) {
      s.x.push_back(step);
      s.y.push_back(value);
    }
    chart.log_y = std::all_of(s.y.begin(), s.y.end(), [](double v) { return v > 0; });
    s.color = palette_color(size_t(i));  // each curve in its samples' colour: CFM blue, MeanFlow orange
    chart.series.push_back(std::move(s));
    draw_line_chart(canvas, {i * 2 * pw, ph, 2 * pw, 330}, chart);
  }
  const std::string png = (fs::path(o.out) / "demo.png").string();
  canvas.save_png(png);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("wrote {} in {:.1f} s (the runs: {}/cfm and {}/meanflow; sample them with `dualflow sample`)\n", png,
             seconds, o.out, o.out);
}

}  // namespace

void add_demo(CLI::App& app) {
  auto opts = std::make_shared<DemoOptions>();
  auto* cmd = app.add_subcommand(
      "demo", "Train OT-CFM and MeanFlow on the checkerboard in about a minute and draw demo.png (samples, losses)");
  cmd->add_option("--out", opts->out, "output folder (demo.png and the two runs)")->capture_default_str();
  cmd->add_option("--cfm-steps", opts->cfm_steps, "OT-CFM training steps")
      ->check(positive_integer())
      ->capture_default_str();
  cmd->add_option("--meanflow-steps", opts->meanflow_steps, "MeanFlow training steps")
      ->check(positive_integer())
      ->capture_default_str();
  cmd->add_option("--n", opts->n, "samples per panel")->check(positive_integer())->capture_default_str();
  cmd->add_option("--seed", opts->seed, "random seed")->capture_default_str()->check(non_negative_integer());
  cmd->add_option("--threads", opts->threads, "CPU threads (default: all cores)")->check(positive_integer());
  cmd->callback([opts] { run_demo(*opts); });
}

}  // namespace dualflow::cli
