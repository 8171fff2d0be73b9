// `dualflow eval`: how good a trained image model is, measured with the engine's own
// Fashion-MNIST classifier (train/classifier_run.h). For n class-balanced samples it reports the
// Fréchet distance (FD) of the classifier's penultimate features to as many test images, beside
// the floor of real data (the same n test images against n train images), and the class
// accuracy (the share of samples the classifier assigns to the class they were drawn for);
// optionally the model's bits per dimension on test images (Hutchinson divergence). Without
// --checkpoint it reports the floor alone. One JSON line per run goes to --out.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>

#include "engine/atomic_file.h"
#include "engine/threads.h"
#include "train/classifier_run.h"
#include "train/cli/commands.h"
#include "train/cli/progress_line.h"
#include "train/flow_run.h"
#include "train/json_text.h"
#include "train/likelihood.h"
#include "train/parallel/data_parallel.h"
#include "train/plots.h"

namespace dualflow::cli {
namespace {

struct EvalArgs {
  std::string classifier, checkpoint, out, grid;
  int64_t n = 1000, bpd = 0, bpd_steps = 0, threads = 0;
  std::string bpd_solver = "dopri5";
  uint64_t seed = 0;
  SampleChoices sampling;  // --method, --solver, --steps, --rtol, --atol, --cfg; unset keeps the run's
};

// Test images moved into the model's continuous space by uniform dequantisation: pixel k of
// 0..255 (stored as k / 127.5 - 1) becomes (k + u) * 2 / 256 - 1, u ~ U[0, 1).
Tensor dequantized(const Tensor& images, Generator& gen) {
  Tensor pixels = (images + 1.0) * 127.5;  // k up to f32 rounding (about 1e-5), far below a bin
  return (pixels + rand(images.shape(), gen, images.options())) * (2.0 / 256.0) - 1.0;
}

// The samples eval draws: n of them (rank 0's count of reference images), chunks of 250.
SampleChoices eval_sample_choices(const EvalArgs& a, int64_t n) {
  SampleChoices choices = a.sampling;
  choices.n = n;
  choices.seed = a.seed + 1;
  choices.chunk = 250;
  return choices;
}

// A process other than rank 0: its share of the samples, sent to rank 0.
void draw_share(const EvalArgs& a, ProcessGroup& group) {
  LoadedModel lm = load_model_from_checkpoint(a.checkpoint);
  lm.model.module->to(rank_device(model_device(lm.model), group));
  int64_t n = 0;
  group.broadcast(&n, sizeof(n), 0);
  draw_samples(lm.model, sample_request(lm.spec, lm.model, eval_sample_choices(a, n)), group);
}

void run_eval(const EvalArgs& a) {
  using clock = std::chrono::steady_clock;
  if (a.threads > 0) set_cpu_threads(int(a.threads));
  DF_CHECK(a.n >= 2 && a.n <= 10000,
           "eval: --n must be 2 to 10000 (FD needs a covariance; the test split holds 10000), got {}", a.n);
  // Outputs are checked before minutes of sampling, not after.
  if (!a.out.empty()) check_output_file(a.out, "eval --out");
  if (!a.grid.empty()) check_output_file(a.grid, "eval --grid");
  // Under mpirun the processes draw a share of the samples each; rank 0 does the rest.
  const std::shared_ptr<ProcessGroup> group = ProcessGroup::join();
  if (group->rank() != 0) {
    if (!a.checkpoint.empty()) draw_share(a, *group);
    return;
  }
  LoadedClassifier clf = load_classifier(a.classifier);
  // The reference: the first n test images, and the floor of n train images against them.
  ClassifierEvaluation ref = evaluate_classifier(clf, "", a.seed, 500, a.n);
  fmt::print("classifier {}: test accuracy {:.2f}% ({} images)\n", a.classifier, 100 * ref.test.accuracy,
             ref.test.images);
  fmt::print("real data: FD(test, train) = {:.3f} over {} images each (the floor)\n", ref.fd_floor, ref.floor_images);
  std::string json = fmt::format(R"({{"classifier":{},"n":{},"fd_floor":{:.6g})", json_string(a.classifier),
                                 ref.floor_images, ref.fd_floor);
  if (!a.checkpoint.empty()) {
    LoadedModel lm = load_model_from_checkpoint(a.checkpoint);
    DF_CHECK(lm.spec.data.kind == DataKind::Images,
             "eval: {} holds a model of {} data; eval measures image models (data.name fashion_mnist or mnist)",
             a.checkpoint, lm.spec.data.name);
    DF_CHECK(lm.spec.data.name == clf.data_name, "eval: the model was trained on {} but the classifier on {}",
             lm.spec.data.name, clf.data_name);
    int64_t n = ref.floor_images;
    group->broadcast(&n, sizeof(n), 0);
    const SampleRequest request = sample_request(lm.spec, lm.model, eval_sample_choices(a, n));
    const auto t0 = clock::now();
    DrawnSamples s;
    ClassifierOutput outputs;
    if (group->distributed()) {
      s = draw_samples(lm.model, request, *group);
      // Samples leave [-1, 1] a little; the classifier sees them as the data's range allows.
      outputs = classifier_outputs(*clf.model, clamp(s.x, -1.0, 1.0));
    } else {
      // A piece (a chunk of the request) at a time: drawn, classified, then only its features,
      // logits and labels kept (and the first 100 images for the grid), so memory does not grow
      // with the images.
      ProgressLine progress("sampled and classified", request.n);
      std::vector<Tensor> features, logits, labels, first;
      for (int64_t begin = 0; begin < request.n; begin += request.chunk) {
        const int64_t end = std::min(request.n, begin + request.chunk);
        DrawnSamples part = draw_samples(lm.model, request, begin, end);
        ClassifierOutput o = classifier_outputs(*clf.model, clamp(part.x, -1.0, 1.0));
        features.push_back(o.features);
        logits.push_back(o.logits);
        if (part.labels.defined()) labels.push_back(part.labels.to(Device::cpu()));
        if (begin < 100) first.push_back(part.x.narrow(0, 0, std::min<int64_t>(end, 100) - begin));
        s.nfe = std::max(s.nfe, part.nfe);
        s.how = part.how;
        progress.update(end);
      }
      outputs = {cat(features, 0), cat(logits, 0)};
      s.x = cat(first, 0);
      if (!labels.empty()) s.labels = cat(labels, 0);
    }
    const double sample_seconds = std::chrono::duration<double>(clock::now() - t0).count();
    if (!a.grid.empty()) save_samples_picture(a.grid, lm.spec, lm.model, s);
    const double fd = frechet_distance(gaussian_stats(outputs.features), ref.test_stats);
    json += fmt::format(R"(,"checkpoint":{},"step":{},"sampler":{},"nfe":{},"sample_seconds":{:.3f},"fd":{:.6g})",
                        json_string(a.checkpoint), lm.step, json_string(s.how), s.nfe, sample_seconds, fd);
    fmt::print("{} samples of step {} by {} ({} NFE, {:.1f} s): FD {:.3f} (floor {:.3f})", request.n, lm.step, s.how,
               s.nfe, sample_seconds, fd, ref.fd_floor);
    if (s.labels.defined()) {
      Tensor predicted = argmax(outputs.logits, 1);
      const double accuracy = mean(eq(predicted, s.labels.to(Device::cpu())).to(DType::f64)).item();
      json += fmt::format(R"(,"class_accuracy":{:.6g})", accuracy);
      fmt::print(", class accuracy {:.2f}%", 100 * accuracy);
    }
    fmt::print("\n");
    if (a.bpd > 0) {
      // Bits per dimension of the model's unconditional density (the null class for a
      // class-conditional model) on the first --bpd test images.
      ImageDataset test = load_image_dataset(clf.data_path, ImageSplit::Test, a.bpd);
      const Device dev = model_device(lm.model);
      Generator gen(a.seed + 2);
      Tensor x = dequantized(test.images, gen).to(dev);
      LikelihoodOptions o;
      o.ode.method = parse_ode_method(a.bpd_solver);
      o.ode.steps = a.bpd_steps > 0 ? a.bpd_steps : 20;
      o.ode.rtol = request.ode.rtol;
      o.ode.atol = request.ode.atol;
      o.divergence = DivergenceMethod::Hutchinson;
      o.t_data = lm.model.t_end;
      o.prior_std = lm.model.source_std;
      GuidanceOptions unconditional;
      if (lm.model.num_classes > 0)
        unconditional.labels = full({x.size(0)}, double(lm.model.num_classes), TensorOptions(DType::i64, dev));
      NoGradGuard ng;
      const auto t1 = clock::now();
      LikelihoodResult r = cnf_log_likelihood(velocity_field(lm.model.net, unconditional), x, o, gen);
      const int64_t dims = x.numel() / x.size(0);
      std::vector<double> bpd = bits_per_dim(r.log_likelihood, dims, 2.0).to(DType::f64).to_vector<double>();
      double m = 0, sq = 0;
      for (double v : bpd) m += v / double(bpd.size());
      for (double v : bpd) sq += (v - m) * (v - m);
      const double se = bpd.size() > 1 ? std::sqrt(sq / double(bpd.size() - 1) / double(bpd.size())) : 0.0;
      const double secs = std::chrono::duration<double>(clock::now() - t1).count();
      json += fmt::format(R"(,"bpd":{:.6g},"bpd_stderr":{:.6g},"bpd_images":{},"bpd_solver":{},"bpd_nfe":{})", m, se,
                          bpd.size(), json_string(ode_method_name(o.ode.method)), r.nfe);
      fmt::print("bits per dimension on {} test images: {:.4f} ± {:.4f} (Hutchinson, {}, {} NFE, {:.1f} s)\n",
                 bpd.size(), m, se, ode_method_name(o.ode.method), r.nfe, secs);
    }
  }
  json += "}";
  if (!a.out.empty()) {
    // One line appended to the results of earlier runs; the file is rewritten whole and
    // atomically, so a crash never leaves a half line or loses the earlier ones.
    std::string lines;
    if (std::ifstream old(a.out, std::ios::binary); old) {
      lines.assign(std::istreambuf_iterator<char>(old), std::istreambuf_iterator<char>());
      DF_CHECK(!old.bad(), "eval: cannot read '{}' to append to it", a.out);
      if (!lines.empty() && lines.back() != '\n') lines += '\n';
    }
    write_file_atomically(a.out, lines + json + "\n", "eval");
  }
}

}  // namespace

void add_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* eval = app.add_subcommand(
      "eval", "FD and class accuracy of an image model's samples (and its bits/dim), with the engine's classifier");
  eval->add_option("--classifier", a->classifier, "checkpoint of `dualflow train-classifier`")
      ->required()
      ->check(CLI::ExistingFile);
  eval->add_option("--checkpoint", a->checkpoint, "image model to evaluate; without it only the real-data floor")
      ->check(CLI::ExistingFile);
  eval->add_option("--n", a->n, "samples (and test / train images of the floor), 2 to 10000")
      ->capture_default_str()
      ->check(positive_integer());
  eval->add_option("--method", a->sampling.sampler,
                   "a sampler of the model's method: ode, or its own (meanflow or imf, the default for those models)");
  eval->add_option("--solver", a->sampling.solver, "ODE solver (default: the run's sample.solver)");
  eval->add_option("--steps", a->sampling.steps, "fixed-step solver steps, or MeanFlow steps")
      ->check(positive_integer());
  eval->add_option("--rtol", a->sampling.rtol, "dopri5 relative tolerance")->check(positive_number());
  eval->add_option("--atol", a->sampling.atol, "dopri5 absolute tolerance")->check(positive_number());
  eval->add_option("--cfg", a->sampling.cfg,
                   "guidance scale of a class-conditional flow (default: the run's sample.cfg_scale)")
      ->check(non_negative_number());
  eval->add_option("--cfg-interval", a->sampling.cfg_interval,
                   "T_MIN T_MAX: iMF's guidance interval (t = 1 is noise; default: the run's sample.cfg_t_min/max)")
      ->expected(2)
      ->check(CLI::Range(0.0, 1.0));
  eval->add_option("--bpd", a->bpd, "also the bits per dimension on this many test images (0: skip)")
      ->check(non_negative_integer());
  eval->add_option("--bpd-solver", a->bpd_solver, "solver of the likelihood")->capture_default_str();
  eval->add_option("--bpd-steps", a->bpd_steps, "steps of a fixed-step likelihood solver (default 20)")
      ->check(positive_integer());
  eval->add_option("--seed", a->seed, "seed of the samples, the train subset and the dequantisation")
      ->check(non_negative_integer())
      ->capture_default_str();
  eval->add_option("--grid", a->grid, "also write the first 100 samples as a 10x10 PNG grid");
  eval->add_option("--threads", a->threads, "CPU worker threads (default: all cores)")->check(positive_integer());
  eval->add_option("--out", a->out, "append the results as one JSON line to this file");
  eval->callback([a] { run_eval(*a); });
}

}  // namespace dualflow::cli
