// `dualflow bench kernels`: times GEMM, elementwise, reductions, softmax, layer_norm, the
// U-Net's 3x3 convolutions and GroupNorm (forward, and with their gradients), and the
// dispatch cost of a tiny op through the engine, each beside the device's own reference
// (OpenBLAS sgemm / memcpy on CPU, device-to-device copy on CUDA) measured in the same run, and
// the exact-OT assignment that OT-CFM runs on every batch.
#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <tuple>
#include <vector>

#include "engine/dualflow.h"
#include "engine/threads.h"
#include "kernels/common/backend.h"  // the memory-bandwidth row times the backend's own copy kernel
#include "train/cli/bench_timing.h"
#include "train/cli/commands.h"
#include "train/cli/json_lines_file.h"
#include "train/couplings.h"

namespace dualflow::cli {
namespace {

struct BenchOptions {
  std::string device = "cpu";
  int threads = 0;
  std::string json;
  bool quick = false;
};

struct Row {
  std::string kernel, dtype, shape;
  double ms = 0, gflops = 0, gbps = 0;
  std::string note;
};

class Report {
 public:
  Report(const BenchOptions& o, Device d) : dev_(d), json_(o.json, "bench kernels --json") {
    fmt::print("{:<22} {:<5} {:<16} {:>11} {:>10} {:>9}  {}\n", "kernel", "dtype", "shape", "median_ms", "GFLOP/s",
               "GB/s", "note");
  }
  void add(const Row& r) {
    fmt::print("{:<22} {:<5} {:<16} {:>11.4f} {:>10} {:>9}  {}\n", r.kernel, r.dtype, r.shape, r.ms,
               r.gflops > 0 ? fmt::format("{:.1f}", r.gflops) : "", r.gbps > 0 ? fmt::format("{:.2f}", r.gbps) : "",
               r.note);
    std::fflush(stdout);
    if (json_)
      json_
          << fmt::format(
                 R"({{"kernel":"{}","device":"{}","dtype":"{}","shape":"{}","median_ms":{:.6f},"gflops":{:.3f},"gbps":{:.3f}}})",
                 r.kernel, dev_.str(), r.dtype, r.shape, r.ms, r.gflops, r.gbps)
          << "\n";
  }
  void finish() const { json_.commit(); }

 private:
  Device dev_;
  JsonLinesFile json_;
};

std::string human(int64_t n) {
  if (n >= (1 << 20) && n % (1 << 20) == 0) return fmt::format("{}M", n >> 20);
  if (n >= 1024 && n % 1024 == 0) return fmt::format("{}K", n >> 10);
  return std::to_string(n);
}

// Two timings taken alternately, three rounds of each, so that both see the same machine
// state; returns the middle of each one's three (the second 0 where it is not given).
std::pair<double, double> alternated_ms(const std::function<double()>& time_first,
                                        const std::function<double()>& time_second) {
  std::vector<double> first, second;
  for (int round = 0; round < 3; ++round) {
    first.push_back(time_first());
    if (time_second) second.push_back(time_second());
  }
  std::sort(first.begin(), first.end());
  std::sort(second.begin(), second.end());
  return {first[1], second.empty() ? 0.0 : second[1]};
}

// The DiT block's fused passes against the ops they replace, at DiT-S/4's activation size (64
// images x 49 tokens x 384), alternated so both see the same machine state: the gated residual
// x + gate * y (addcmul) and the adaLN-modulated LayerNorm, forward and all gradients.
void run_dit_fusions(Report& rep, const BenchOptions& o, const Device& dev, Generator& gen) {
  const int64_t n = o.quick ? 8 : 64, l = 49, d = 384;
  const TensorOptions f32(DType::f32, dev);
  const std::string shape = fmt::format("{}x{}x{}", n, l, d);
  const double bytes = double(n * l * d) * 4;
  auto alternate = [&](const std::function<void()>& fused, const std::function<void()>& composed) {
    return alternated_ms([&] { return median_ms(fused, dev, 9); }, [&] { return median_ms(composed, dev, 9); });
  };
  Tensor x = randn(Shape{n, l, d}, gen, f32).set_requires_grad(), y = randn(Shape{n, l, d}, gen, f32);
  Tensor shift = randn(Shape{n, d}, gen, f32).set_requires_grad(), scale = randn(Shape{n, d}, gen, f32);
  scale = (scale * 0.1).set_requires_grad();
  Tensor dy = randn(Shape{n, l, d}, gen, f32);
  Tensor gate = shift.detach().unsqueeze(1);
  {
    NoGradGuard ng;
    auto [fused, composed] = alternate([&] { addcmul(x, gate, y); }, [&] { add(x, mul(gate, y)); });
    rep.add(Row{"addcmul (gated residual)", "f32", shape, fused, 0, 3 * bytes / fused / 1e6,
                fmt::format("x + gate * y {:.3f} ms; composed/fused = {:.2f}", composed, composed / fused)});
  }
  {
    GradModeGuard on(true);  // the rules run untaped, as in a training step's backward
    auto modulated = [&] { return layer_norm(x, d, scale.unsqueeze(1) + 1.0, shift.unsqueeze(1), 1e-6); };
    auto composed_form = [&] {
      return layer_norm(x, d, Tensor(), Tensor(), 1e-6) * (scale.unsqueeze(1) + 1.0) + shift.unsqueeze(1);
    };
    auto [fused, composed] = alternate(
        [&] {
          grad({modulated()}, {x, shift, scale}, {dy});
        },
        [&] {
          grad({composed_form()}, {x, shift, scale}, {dy});
        });
    rep.add(Row{"layer_norm modulated +grads", "f32", shape, fused, 0, 0,
                fmt::format("norm, then * (1 + scale) + shift {:.3f} ms; composed/fused = {:.2f}", composed,
                            composed / fused)});
  }
}

void run_kernels(const BenchOptions& o) {
  Device dev = Device::parse(o.device);
  check_device(dev);  // clear error when the device is missing
  if (o.threads > 0) set_cpu_threads(o.threads);
  fmt::print("device {}, {} CPU thread(s)\n", dev.str(), cpu_threads());
  Report rep(o, dev);
  Generator gen(1);
  const TensorOptions f32(DType::f32, dev);
  NoGradGuard ng;

  // ---- GEMM ----
  std::vector<int64_t> sizes =
      dev.is_cpu() ? std::vector<int64_t>{64, 128, 256, 512, 1024, 2048} : std::vector<int64_t>{1024, 2048, 4096, 8192};
  if (o.quick) sizes.resize(std::min<size_t>(sizes.size(), 3));
  for (int64_t n : sizes) {
    Tensor a = randn(Shape{n, n}, gen, f32), b = randn(Shape{n, n}, gen, f32);
    int samples = n >= 1024 ? 5 : 15;
    int inner = n <= 128 ? 20 : 1;
    double ms = median_ms([&] { matmul(a, b); }, dev, samples, inner);
    double flop = 2.0 * double(n) * double(n) * double(n);
    Row r{"matmul", "f32", fmt::format("{}x{}x{}", n, n, n), ms, flop / ms / 1e6, 0, ""};
    if (dev.is_cpu()) {
      Tensor c = Tensor::empty(Shape{n, n}, f32);
      // The reference is OpenBLAS with its own threads (the engine runs it single-threaded per chunk).
      openblas_set_num_threads(cpu_threads());
      double ref = median_ms(
          [&] {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(n), int(n), 1.f, a.data<float>(), int(n),
                        b.data<float>(), int(n), 0.f, c.data<float>(), int(n));
          },
          dev, samples, inner);
      openblas_set_num_threads(1);
      r.note = fmt::format("openblas sgemm {:.1f} GFLOP/s; engine/openblas = {:.2f}", flop / ref / 1e6, ref / ms);
    }
    rep.add(r);
  }

  // ---- skinny GEMMs: the toy2d network's 2-wide output layer at batch 1024 and its two gradients ----
  // Each is a pass over the [1024, 256] operand; the bandwidth column counts it and the output.
  {
    const int64_t rows = 1024, wide = 256, narrow = 2;
    Tensor x = randn(Shape{rows, wide}, gen, f32), w = randn(Shape{narrow, wide}, gen, f32);
    Tensor b = randn(Shape{narrow}, gen, f32), g = randn(Shape{rows, narrow}, gen, f32);
    struct Skinny {
      const char* name;
      std::string shape;
      std::function<void()> engine;
      CBLAS_TRANSPOSE ta, tb;
      int m, n, k;
      const Tensor *a, *b;
      int lda, ldb;
    };
    const std::vector<Skinny> cases{
        {"linear (2 outputs)", fmt::format("{}x{}>{}", rows, wide, narrow), [&] { linear(x, w, b); }, CblasNoTrans,
         CblasTrans, int(rows), int(narrow), int(wide), &x, &w, int(wide), int(wide)},
        {"matmul (k = 2)", fmt::format("{}x{}x{}", rows, narrow, wide), [&] { matmul(g, w); }, CblasNoTrans,
         CblasNoTrans, int(rows), int(wide), int(narrow), &g, &w, int(narrow), int(wide)},
        {"matmul (2 rows, A^T)", fmt::format("{}x{}x{}", narrow, rows, wide), [&] { matmul(g.t(), x); }, CblasTrans,
         CblasNoTrans, int(narrow), int(wide), int(rows), &g, &x, int(narrow), int(wide)},
    };
    for (const Skinny& sk : cases) {
      const double flop = 2.0 * double(rows) * double(wide) * double(narrow);
      const double bytes = 4.0 * double(rows) * double(wide + narrow);
      const int samples = 21, inner = 10;
      Tensor c = Tensor::empty(Shape{sk.m, sk.n}, f32);
      std::function<double()> time_openblas;
      if (dev.is_cpu())
        time_openblas = [&] {
          openblas_set_num_threads(cpu_threads());
          const double ms = median_ms(
              [&] {
                cblas_sgemm(CblasRowMajor, sk.ta, sk.tb, sk.m, sk.n, sk.k, 1.f, sk.a->data<float>(), sk.lda,
                            sk.b->data<float>(), sk.ldb, 0.f, c.data<float>(), sk.n);
              },
              dev, samples, inner);
          openblas_set_num_threads(1);
          return ms;
        };
      const auto [ms, ref] = alternated_ms([&] { return median_ms(sk.engine, dev, samples, inner); }, time_openblas);
      rep.add(Row{sk.name, "f32", sk.shape, ms, flop / ms / 1e6, bytes / ms / 1e6,
                  dev.is_cpu() ? fmt::format("openblas sgemm {:.4f} ms; openblas/engine = {:.2f}", ref, ref / ms)
                               : std::string()});
    }
  }

  // ---- linear: the bias added by the GEMM as it stores the product, against matmul then add ----
  // Shapes of the toy2d network's hidden layer (batch 1024 and the 2 x 1,000 rows of the exact
  // likelihood's tangents) and of DiT-S's MLP (64 images x 49 tokens).
  for (auto [rows, in, out] :
       {std::tuple<int64_t, int64_t, int64_t>{1024, 256, 256}, {2000, 256, 256}, {3136, 384, 1536}}) {
    if (o.quick && rows > 1024) continue;
    Tensor x = randn(Shape{rows, in}, gen, f32), w = randn(Shape{out, in}, gen, f32), b = randn(Shape{out}, gen, f32);
    const int samples = 21;
    const double flop = 2.0 * double(rows) * double(in) * double(out);
    const auto [fused, composed] = alternated_ms([&] { return median_ms([&] { linear(x, w, b); }, dev, samples); },
                                                 [&] { return median_ms([&] { add(matmul(x, w.t()), b); }, dev, samples); });
    rep.add(Row{"linear (bias in GEMM)", "f32", fmt::format("{}x{}>{}", rows, in, out), fused, flop / fused / 1e6, 0,
                fmt::format("matmul + add {:.3f} ms; composed/fused = {:.2f}", composed, composed / fused)});

    // linear_activation (the activation applied by the GEMM, its derivative kept when
    // differentiated) against linear then the activation op: the forward pass alone, and the
    // forward pass with the gradient of all three inputs. SiLU for the toy2d shapes, GELU (tanh)
    // for the DiT's MLP.
    const bool gelu_layer = out > 256;
    const UnaryOp act = gelu_layer ? UnaryOp::GeluTanh : UnaryOp::Silu;
    const char* act_name = gelu_layer ? "gelu_tanh" : "silu";
    auto composed_act = [&](const Tensor& xi, const Tensor& wi, const Tensor& bi) {
      return gelu_layer ? gelu(linear(xi, wi, bi), GeluApprox::Tanh) : silu(linear(xi, wi, bi));
    };
    Tensor xg = x.detach(), wg = w.detach(), bg = b.detach(), g = randn(Shape{rows, out}, gen, f32);
    for (const Tensor* t : {&xg, &wg, &bg}) t->set_requires_grad();
    auto with_grad = [&](bool fuse) {
      return [&, fuse] {
        GradModeGuard on(true);  // the kernels' section runs without a tape
        Tensor y = fuse ? linear_activation(xg, wg, bg, act) : composed_act(xg, wg, bg);
        grad({y}, {xg, wg, bg}, {g});
      };
    };
    for (bool backward : {false, true}) {
      const std::function<void()> fused_pass =
          backward ? std::function<void()>(with_grad(true)) : [&] { linear_activation(x, w, b, act); };
      const std::function<void()> composed_pass =
          backward ? std::function<void()>(with_grad(false)) : [&] { composed_act(x, w, b); };
      const auto [f, c] = alternated_ms([&] { return median_ms(fused_pass, dev, samples); },
                                        [&] { return median_ms(composed_pass, dev, samples); });
      const double work = backward ? 3 * flop : flop;
      rep.add(Row{fmt::format("linear_activation {}{}", act_name, backward ? " +grad" : ""), "f32",
                  fmt::format("{}x{}>{}", rows, in, out), f, work / f / 1e6, 0,
                  fmt::format("linear then {} {:.3f} ms; composed/fused = {:.2f}", act_name, c, c / f)});
    }
    // The forward-mode pass with x's tangent alone (MeanFlow's JVP, the likelihood's
    // divergence): fused, the tangent's GEMM multiplies by the saved derivative as it stores.
    {
      Tensor tx = randn(Shape{rows, in}, gen, f32);
      auto tangent_pass = [&](bool fuse) {
        return [&, fuse] {
          jvp(
              [&](const std::vector<Tensor>& in) {
                return std::vector<Tensor>{fuse ? linear_activation(in[0], w, b, act) : composed_act(in[0], w, b)};
              },
              {x}, {tx}, JvpOptions{.differentiable_tangents = false});
        };
      };
      const auto [f, c] = alternated_ms([&] { return median_ms(tangent_pass(true), dev, samples); },
                                        [&] { return median_ms(tangent_pass(false), dev, samples); });
      rep.add(Row{fmt::format("linear_activation {} +tangent", act_name), "f32", fmt::format("{}x{}>{}", rows, in, out),
                  f, 2 * flop / f / 1e6, 0,
                  fmt::format("linear then {} {:.3f} ms; composed/fused = {:.2f}", act_name, c, c / f)});
    }
  }
  // linear_parts: the toy2d networks' first layer over [z, embedding(t), embedding(h)] with
  // tangents in z alone, two directions at once (the exact divergence in 2-D), against the
  // concatenation then linear_activation, whose tangent GEMM multiplies the embeddings' zeros.
  {
    const int64_t rows = 1000;
    const std::vector<Tensor> parts{randn(Shape{rows, 2}, gen, f32), randn(Shape{rows, 64}, gen, f32),
                                    randn(Shape{rows, 64}, gen, f32)};
    Tensor w = randn(Shape{256, 130}, gen, f32), b = randn(Shape{256}, gen, f32);
    Tensor tz = randn(Shape{2, rows, 2}, gen, f32);
    auto pass = [&](bool fuse) {
      return [&, fuse] {
        jvp_batched(
            [&](const std::vector<Tensor>& in) {
              const std::vector<Tensor> ps{in[0], parts[1], parts[2]};
              return std::vector<Tensor>{fuse ? linear_parts(ps, w, b, UnaryOp::Silu)
                                              : linear_activation(cat(ps, -1), w, b, UnaryOp::Silu)};
            },
            {parts[0]}, {tz}, JvpOptions{.differentiable_tangents = false});
      };
    };
    const auto [f, c] =
        alternated_ms([&] { return median_ms(pass(true), dev, 21); }, [&] { return median_ms(pass(false), dev, 21); });
    rep.add(Row{"linear_parts silu +2 tangents in z", "f32", fmt::format("{}x(2+64+64)>256", rows), f, 0, 0,
                fmt::format("cat then linear_activation {:.3f} ms; composed/fused = {:.2f}", c, c / f)});
  }

  // ---- bandwidth reference ----
  const int64_t big = o.quick ? (int64_t(1) << 22) : (int64_t(1) << 26);
  double peak_gbps = 0;
  {
    Tensor src = randn(Shape{big}, gen, f32), dst = Tensor::empty(Shape{big}, f32);
    const size_t bytes = size_t(big) * 4;
    double ms;
    if (dev.is_cpu()) {
      char* d = static_cast<char*>(dst.raw_data());
      const char* s = static_cast<const char*>(src.raw_data());
      ms = median_ms(
          [&] {
            parallel_chunks(int64_t(bytes), 1 << 20,
                            [&](int64_t b0, int64_t e0) { std::memcpy(d + b0, s + b0, size_t(e0 - b0)); });
          },
          dev, 9);
    } else {
      const Backend& be = backend_for(dev);
      ms = median_ms([&] { be.copy_same_device(dev.index, dst.raw_data(), src.raw_data(), bytes); }, dev, 9);
    }
    peak_gbps = 2.0 * double(bytes) / ms / 1e6;
    rep.add(Row{dev.is_cpu() ? "memcpy (reference)" : "d2d copy (reference)", "f32", human(big), ms, 0, peak_gbps, ""});
  }

  // ---- elementwise ----
  std::vector<int64_t> counts = {1 << 10, 1 << 14, 1 << 18, 1 << 22, 1 << 26};
  if (o.quick) counts = {1 << 10, 1 << 18, 1 << 22};
  for (int64_t n : counts) {
    Tensor a = randn(Shape{n}, gen, f32), b = randn(Shape{n}, gen, f32);
    int samples = n >= (1 << 22) ? 9 : 21;
    int inner = n <= (1 << 14) ? 200 : 1;
    double ms = median_ms([&] { add(a, b); }, dev, samples, inner);
    double gbps = 3.0 * double(n) * 4 / ms / 1e6;
    rep.add(Row{"add", "f32", human(n), ms, 0, gbps, fmt::format("{:.0f}% of copy bandwidth", 100 * gbps / peak_gbps)});
    ms = median_ms([&] { silu(a); }, dev, samples, inner);
    gbps = 2.0 * double(n) * 4 / ms / 1e6;
    rep.add(
        Row{"silu", "f32", human(n), ms, 0, gbps, fmt::format("{:.0f}% of copy bandwidth", 100 * gbps / peak_gbps)});
    // sin of time-embedding-sized arguments (|x| up to ~400), against the library's sinf per element.
    Tensor angles = a * 100.0;
    ms = median_ms([&] { sin(angles); }, dev, samples, inner);
    gbps = 2.0 * double(n) * 4 / ms / 1e6;
    std::string note = fmt::format("{:.0f}% of copy bandwidth", 100 * gbps / peak_gbps);
    if (dev.is_cpu()) {
      const Tensor host = angles.contiguous();
      std::vector<float> out(static_cast<size_t>(n), 0.0f);
      const double lib = median_ms(
          [&] {
            const float* in = host.data<float>();
            for (int64_t i = 0; i < n; ++i) out[size_t(i)] = std::sin(in[i]);
          },
          dev, samples, inner);
      note += fmt::format("; library sinf loop (1 thread) {:.4f} ms", lib);
    }
    rep.add(Row{"sin", "f32", human(n), ms, 0, gbps, note});
  }

  // ---- rows: sum over the last dim, softmax, layer_norm (rows of 1024) ----
  for (int64_t rows : o.quick ? std::vector<int64_t>{256} : std::vector<int64_t>{256, 16384}) {
    const int64_t cols = 1024;
    Tensor x = randn(Shape{rows, cols}, gen, f32);
    Tensor w = randn(Shape{cols}, gen, f32), bias = randn(Shape{cols}, gen, f32);
    std::string shape = fmt::format("{}x{}", rows, cols);
    double bytes = double(rows * cols) * 4;
    double ms = median_ms([&] { sum(x, {-1}); }, dev, 15, rows <= 256 ? 20 : 1);
    rep.add(Row{"sum(dim=-1)", "f32", shape, ms, 0, bytes / ms / 1e6, ""});
    ms = median_ms([&] { softmax(x, -1); }, dev, 15, rows <= 256 ? 20 : 1);
    rep.add(Row{"softmax", "f32", shape, ms, 0, 2 * bytes / ms / 1e6, ""});
    ms = median_ms([&] { layer_norm(x, cols, w, bias); }, dev, 15, rows <= 256 ? 20 : 1);
    rep.add(Row{"layer_norm", "f32", shape, ms, 0, 2 * bytes / ms / 1e6, ""});
  }

  run_dit_fusions(rep, o, dev, gen);

  // ---- the U-Net's layers: 3x3 convolutions (forward; forward + input, weight and bias
  // gradients) and GroupNorm, batch 64 ----
  {
    struct ConvLayer {
      int64_t c, o, size;
    };
    std::vector<ConvLayer> layers = {{32, 32, 28}, {64, 64, 14}, {64, 64, 7}};
    if (o.quick) layers = {{32, 32, 14}};
    const int64_t n = o.quick ? 8 : 64;
    for (const ConvLayer& l : layers) {
      Tensor x = randn(Shape{n, l.c, l.size, l.size}, gen, f32).set_requires_grad();
      Tensor w = (randn(Shape{l.o, l.c, 3, 3}, gen, f32) * 0.05).set_requires_grad();
      Tensor b = randn(Shape{l.o}, gen, f32).set_requires_grad();
      Tensor dy = randn(Shape{n, l.o, l.size, l.size}, gen, f32);
      const std::string shape = fmt::format("{}x{}x{}x{}>{}", n, l.c, l.size, l.size, l.o);
      const double flop = 2.0 * double(n * l.o * l.c * 9 * l.size * l.size);
      double ms;
      {
        GradModeGuard off(false);
        ms = median_ms([&] { conv2d(x, w, b, {1, 1}, {1, 1}); }, dev, 9);
      }
      rep.add(Row{"conv2d 3x3", "f32", shape, ms, flop / ms / 1e6, 0, "forward"});
      {
        GradModeGuard on(true);  // the rest of the kernels run untaped
        ms = median_ms([&] { grad({conv2d(x, w, b, {1, 1}, {1, 1})}, {x, w, b}, {dy}); }, dev, 9);
      }
      rep.add(Row{"conv2d 3x3 +grads", "f32", shape, ms, 3 * flop / ms / 1e6, 0, "forward, then dx, dw, db"});
      {
        // The weight gradient alone: the same forward and backward with only w asking for
        // its gradient, less the forward.
        GradModeGuard on(true);
        Tensor xc = x.detach();
        const double with_dw = median_ms([&] { grad({conv2d(xc, w, Tensor(), {1, 1}, {1, 1})}, {w}, {dy}); }, dev, 9);
        GradModeGuard off(false);
        const double forward = median_ms([&] { conv2d(xc, w, Tensor(), {1, 1}, {1, 1}); }, dev, 9);
        ms = std::max(with_dw - forward, 1e-6);
      }
      rep.add(Row{"conv2d 3x3 dw", "f32", shape, ms, flop / ms / 1e6, 0, "weight gradient alone"});
    }
    Tensor x = randn(Shape{n, 32, 28, 28}, gen, f32).set_requires_grad();
    Tensor w = randn(Shape{32}, gen, f32).set_requires_grad(), b = randn(Shape{32}, gen, f32).set_requires_grad();
    Tensor dy = randn(Shape{n, 32, 28, 28}, gen, f32);
    const std::string shape = fmt::format("{}x32x28x28", n);
    const double bytes = double(x.numel()) * 4;
    double ms;
    {
      GradModeGuard off(false);
      ms = median_ms([&] { group_norm(x, 8, w, b); }, dev, 15);
    }
    rep.add(Row{"group_norm (8)", "f32", shape, ms, 0, 2 * bytes / ms / 1e6, "forward"});
    {
      GradModeGuard on(true);
      ms = median_ms([&] { grad({group_norm(x, 8, w, b)}, {x, w, b}, {dy}); }, dev, 15);
    }
    rep.add(Row{"group_norm (8) +grads", "f32", shape, ms, 0, 5 * bytes / ms / 1e6, "forward, then dx, dw, db"});
    {
      // The U-Net block's norm and activation as one op, against the two ops, alternated.
      GradModeGuard on(true);
      const auto [fused, composed] = alternated_ms(
          [&] { return median_ms([&] { grad({group_norm_silu(x, 8, w, b)}, {x, w, b}, {dy}); }, dev, 9); },
          [&] { return median_ms([&] { grad({silu(group_norm(x, 8, w, b))}, {x, w, b}, {dy}); }, dev, 9); });
      rep.add(Row{"group_norm_silu (8) +grads", "f32", shape, fused, 0, 5 * bytes / fused / 1e6,
                  fmt::format("silu(group_norm) {:.3f} ms; composed/fused = {:.2f}", composed, composed / fused)});
    }
  }

  // ---- dispatch cost of a tiny op ----
  {
    Tensor a = randn(Shape{256}, gen, f32), b = randn(Shape{256}, gen, f32);
    GradModeGuard off(false);
    double ms = median_ms([&] { add(a, b); }, dev, 21, 20000);
    rep.add(Row{"add (dispatch)", "f32", "256", ms, 0, 0, fmt::format("{:.3f} us per op, autodiff off", ms * 1000)});
  }

  // ---- exact-OT coupling: the assignment solver (CPU, one thread) and the whole coupling ----
  for (int64_t n : o.quick ? std::vector<int64_t>{256} : std::vector<int64_t>{256, 1024}) {
    // Noise against a narrower, shifted cloud, as noise against data in OT-CFM's 2-D runs.
    Tensor x0 = randn(Shape{n, 2}, gen, f32), x1 = randn(Shape{n, 2}, gen, f32) * 0.5 + 1.0;
    const std::vector<double> cost = pairwise_sq_distances(x0.to(DType::f64), x1.to(DType::f64)).to_vector<double>();
    const int samples = n >= 1024 ? 7 : 15;
    double ms = median_ms([&] { solve_assignment(cost, n); }, Device::cpu(), samples);
    rep.add(Row{"assignment (exact OT)", "f64", fmt::format("{}x{}", n, n), ms, 0, 0,
                "solve_assignment on 2-D squared distances"});
    ExactOTCoupling exact_ot;
    ms = median_ms([&] { exact_ot.couple(x0, x1, gen); }, dev, samples);
    rep.add(Row{"exact_ot coupling", "f32", fmt::format("{}x2", n), ms, 0, 0, "cost matrix + assignment + gather"});
  }
  rep.finish();
}

}  // namespace

void add_bench(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks: kernels, model steps and the 2-D flow workloads");
  bench->require_subcommand(1);
  auto opts = std::make_shared<BenchOptions>();
  auto* kernels = bench->add_subcommand(
      "kernels", "Time GEMM, elementwise, reductions, softmax, layer_norm, op dispatch and the exact-OT assignment");
  kernels->add_option("--device", opts->device, "cpu, cuda or cuda:N")->capture_default_str();
  kernels->add_option("--threads", opts->threads, "CPU threads (default: all cores)")->check(positive_integer());
  kernels->add_option("--json", opts->json, "Also write one JSON object per row to this file");
  kernels->add_flag("--quick", opts->quick, "Smaller sizes (a smoke run)");
  kernels->callback([opts] { run_kernels(*opts); });
  add_bench_models(bench);
  add_bench_flow(bench);
}

}  // namespace dualflow::cli
