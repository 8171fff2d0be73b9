// The op-test harness: for every case of op_cases.cpp, in f64 on the CPU,
//   - VJP against central finite differences of <w, f(x)> (every input element),
//   - JVP against the central difference (f(x + hv) - f(x - hv)) / 2h,
//   - the identity <w, J v> = <J^T w, v>,
//   - second order: jvp-of-grad against finite differences of the gradient, and
//     grad-of-grad against jvp-of-grad,
//   - K directions at once (jvp_batched, whichever way the op's rule meets them) against K
//     single JVPs, alone and under reverse mode,
// and, where a GPU answers, the forward and gradients on CUDA against the CPU (f64 and f32).
#include "op_cases.h"
#include "test_util.h"

namespace dualflow::testing {
namespace {

constexpr double kH = 1e-6;

struct Prepared {
  std::vector<Tensor> xs, vs;
  Tensor w;
};

Prepared prepare(const OpCase& c, uint64_t seed) {
  Prepared p;
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    p.xs.push_back(uniform_f64(c.inputs[i].shape, c.inputs[i].lo, c.inputs[i].hi, seed + 17 * i));
    p.vs.push_back(uniform_f64(c.inputs[i].shape, -1, 1, seed + 1000 + 13 * i));
  }
  Tensor out = c.f(p.xs);
  p.w = uniform_f64(out.shape(), -1, 1, seed + 5000);
  return p;
}

// <w, f(xs)> as a double, with autodiff off.
double loss_value(const OpCase& c, const std::vector<Tensor>& xs, const Tensor& w) {
  NoGradGuard ng;
  return sum(c.f(xs) * w).item();
}

std::vector<Tensor> vjp_of(const OpCase& c, const std::vector<Tensor>& xs, const Tensor& w) {
  return grad([&](const std::vector<Tensor>& x) { return sum(c.f(x) * w); }, xs);
}

std::vector<Tensor> shifted(const std::vector<Tensor>& xs, const std::vector<Tensor>& vs, double h) {
  std::vector<Tensor> r;
  for (size_t i = 0; i < xs.size(); ++i) r.push_back(xs[i] + vs[i] * h);
  return r;
}

}  // namespace

TEST_CASE("every op: VJP and JVP against finite differences in f64", "[ops]") {
  for (const OpCase& c : all_op_cases()) {
    SECTION(c.name) {
      Prepared p = prepare(c, 42);
      // VJP vs elementwise central differences.
      std::vector<Tensor> g = vjp_of(c, p.xs, p.w);
      REQUIRE(g.size() == p.xs.size());
      for (size_t i = 0; i < p.xs.size(); ++i) {
        REQUIRE(g[i].shape() == p.xs[i].shape());
        std::vector<double> base = p.xs[i].to_vector<double>();
        std::vector<double> fd(base.size());
        for (size_t j = 0; j < base.size(); ++j) {
          auto plus = base, minus = base;
          plus[j] += kH;
          minus[j] -= kH;
          std::vector<Tensor> xp = p.xs, xm = p.xs;
          xp[i] = from_vector(plus, p.xs[i].shape(), DType::f64);
          xm[i] = from_vector(minus, p.xs[i].shape(), DType::f64);
          fd[j] = (loss_value(c, xp, p.w) - loss_value(c, xm, p.w)) / (2 * kH);
        }
        require_close(g[i], from_vector(fd, p.xs[i].shape(), DType::f64), 1e-5, 1e-6,
                      c.name + ": VJP of input " + std::to_string(i) + " vs finite differences");
      }
      // JVP vs directional central difference.
      JvpResult j = jvp([&](const std::vector<Tensor>& x) { return std::vector<Tensor>{c.f(x)}; }, p.xs, p.vs);
      Tensor fd_dir;
      {
        NoGradGuard ng;
        fd_dir = (c.f(shifted(p.xs, p.vs, kH)) - c.f(shifted(p.xs, p.vs, -kH))) * (1.0 / (2 * kH));
      }
      require_close(j.tangents[0], fd_dir, 1e-5, 1e-6, c.name + ": JVP vs finite differences");
      require_close(j.outputs[0], c.f(p.xs), 0, 0, c.name + ": jvp's primal output equals f(x)");
      // <w, J v> = <J^T w, v>.
      double lhs = dot(p.w, j.tangents[0]);
      double rhs = 0;
      for (size_t i = 0; i < p.xs.size(); ++i) rhs += dot(g[i], p.vs[i]);
      INFO(c.name << ": <w, Jv> = " << lhs << ", <J^T w, v> = " << rhs);
      REQUIRE(std::abs(lhs - rhs) <= 1e-10 * (1 + std::abs(lhs)));
    }
  }
}

TEST_CASE("every op: jvp_batched equals one jvp per direction, and differentiates as they do", "[ops][batched]") {
  constexpr int64_t kDirections = 3;
  for (const OpCase& c : all_op_cases()) {
    SECTION(c.name) {
      Prepared p = prepare(c, 11);
      auto f = [&](const std::vector<Tensor>& x) { return std::vector<Tensor>{c.f(x)}; };
      // All inputs moving, then only the first (the others' tangents undefined = zero).
      for (size_t moving : {p.xs.size(), size_t(1)}) {
        std::vector<Tensor> batch;
        for (size_t i = 0; i < p.xs.size(); ++i) {
          batch.push_back(i < moving ? uniform_f64(p.xs[i].shape().with_leading(kDirections), -1, 1, 300 + 7 * i)
                                     : Tensor());
        }
        JvpResult all = jvp_batched(f, p.xs, batch);
        require_close(all.outputs[0], c.f(p.xs), 0, 0, c.name + ": jvp_batched's primal output equals f(x)");
        REQUIRE(all.tangents[0].shape() == all.outputs[0].shape().with_leading(kDirections));
        for (int64_t k = 0; k < kDirections; ++k) {
          std::vector<Tensor> one;
          for (const Tensor& b : batch) one.push_back(b.defined() ? b.select(0, k).contiguous() : Tensor());
          JvpResult single = jvp(f, p.xs, one);
          require_close(all.tangents[0].select(0, k), single.tangents[0], 1e-12, 1e-12,
                        c.name + ": direction " + std::to_string(k) + " of " + std::to_string(moving) +
                            " moving inputs vs a single jvp");
        }
      }
      // Reverse over the batch: d/dx of <W, J V> equals the sum over directions of d/dx <W_k, J v_k>.
      std::vector<Tensor> batch;
      for (size_t i = 0; i < p.xs.size(); ++i) {
        batch.push_back(uniform_f64(p.xs[i].shape().with_leading(kDirections), -1, 1, 400 + 7 * i));
      }
      Tensor wk = uniform_f64(p.w.shape().with_leading(kDirections), -1, 1, 77);
      std::vector<Tensor> g_all =
          grad([&](const std::vector<Tensor>& x) { return sum(jvp_batched(f, x, batch).tangents[0] * wk); }, p.xs);
      for (int64_t k = 0; k < kDirections; ++k) {
        std::vector<Tensor> one;
        for (const Tensor& b : batch) one.push_back(b.select(0, k).contiguous());
        std::vector<Tensor> g_k =
            grad([&](const std::vector<Tensor>& x) { return sum(jvp(f, x, one).tangents[0] * wk.select(0, k)); }, p.xs);
        for (size_t i = 0; i < g_all.size(); ++i) g_all[i] = g_all[i] - g_k[i];
      }
      for (size_t i = 0; i < g_all.size(); ++i) REQUIRE(max_abs(g_all[i]) <= 1e-10 * (1 + max_abs(p.xs[i])));
    }
  }
}

TEST_CASE("every op: second derivatives (jvp-of-grad, grad-of-grad) in f64", "[ops][second-order]") {
  for (const OpCase& c : all_op_cases()) {
    if (!c.smooth) continue;
    SECTION(c.name) {
      Prepared p = prepare(c, 7);
      auto gradient = [&](const std::vector<Tensor>& x) { return vjp_of(c, x, p.w); };
      // Forward-over-reverse: H v.
      JvpResult hv = jvp(gradient, p.xs, p.vs);
      std::vector<Tensor> gp, gm;
      {
        gp = gradient(shifted(p.xs, p.vs, kH));
        gm = gradient(shifted(p.xs, p.vs, -kH));
      }
      for (size_t i = 0; i < p.xs.size(); ++i) {
        Tensor fd = (gp[i] - gm[i]) * (1.0 / (2 * kH));
        require_close(hv.tangents[i], fd, 1e-4, 1e-5,
                      c.name + ": jvp-of-grad (H v) vs finite differences, input " + std::to_string(i));
      }
      // Reverse-over-reverse: grad of <grad L(x), v> equals H v (H symmetric).
      std::vector<Tensor> hv2 = grad(
          [&](const std::vector<Tensor>& x) {
            std::vector<Tensor> gx = gradient(x);
            Tensor s = zeros(Shape{}, DType::f64);
            for (size_t i = 0; i < gx.size(); ++i) s = s + sum(gx[i] * p.vs[i]);
            return s;
          },
          p.xs);
      for (size_t i = 0; i < p.xs.size(); ++i)
        require_close(hv2[i], hv.tangents[i], 1e-8, 1e-10,
                      c.name + ": grad-of-grad vs jvp-of-grad, input " + std::to_string(i));
    }
  }
}

TEST_CASE("every op on CUDA matches the CPU (forward and gradients, f64 and f32)", "[cuda]") {
  REQUIRE(cuda_available());
  for (const OpCase& c : all_op_cases()) {
    for (DType t : {DType::f64, DType::f32}) {
      SECTION(c.name + " " + std::string(dtype_name(t))) {
        Prepared p = prepare(c, 99);
        std::vector<Tensor> xc, xg;
        for (const Tensor& x : p.xs) {
          xc.push_back(x.to(t));
          xg.push_back(x.to(t).to(Device::cuda()));
        }
        Tensor wc = p.w.to(t), wg = p.w.to(t).to(Device::cuda());
        double tol = t == DType::f64 ? 1e-10 : 2e-5;
        require_close(c.f(xg).to(Device::cpu()), c.f(xc), tol, tol, c.name + ": CUDA forward vs CPU");
        auto gc = vjp_of(c, xc, wc);
        auto gg = vjp_of(c, xg, wg);
        for (size_t i = 0; i < gc.size(); ++i)
          require_close(gg[i].to(Device::cpu()), gc[i], tol * 10, tol * 10, c.name + ": CUDA gradient vs CPU");
      }
    }
  }
}

TEST_CASE("index_add and scatter_add on CUDA: repeated indices sum in the CPU's order, bit for bit", "[cuda]") {
  // Training on CUDA resumes exactly only if these (an embedding's gradient) repeat exactly;
  // atomics would sum in a different order each run.
  REQUIRE(cuda_available());
  Generator g(17);
  for (DType t : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    INFO(dtype_name(t));
    const int64_t n_out = 11, n_idx = 4099, inner = 37;
    Tensor base = randn({3, n_out, inner}, g).to(t), src = (randn({3, n_idx, inner}, g) * 100.0).to(t);
    std::vector<int64_t> rows(n_idx);
    for (int64_t j = 0; j < n_idx; ++j) rows[size_t(j)] = (j * 7 + j / 13) % n_out;
    Tensor index = from_vector(rows, Shape{n_idx}), index_g = index.to(Device::cuda());
    Tensor cpu = index_add(base, 1, index, src);
    Tensor gpu1 = index_add(base.to(Device::cuda()), 1, index_g, src.to(Device::cuda())).to(Device::cpu());
    Tensor gpu2 = index_add(base.to(Device::cuda()), 1, index_g, src.to(Device::cuda())).to(Device::cpu());
    REQUIRE(max_abs_diff(gpu1.to(DType::f64), cpu.to(DType::f64)) == 0.0);
    REQUIRE(max_abs_diff(gpu2.to(DType::f64), gpu1.to(DType::f64)) == 0.0);

    // scatter_add along dim 1 with a different index per column.
    std::vector<int64_t> cols(size_t(3 * n_idx * inner));
    for (size_t p = 0; p < cols.size(); ++p) cols[p] = int64_t((p * 2654435761u) % uint64_t(n_out));
    Tensor sindex = from_vector(cols, Shape{3, n_idx, inner});
    Tensor scpu = scatter_add(base, 1, sindex, src);
    Tensor sgpu = scatter_add(base.to(Device::cuda()), 1, sindex.to(Device::cuda()), src.to(Device::cuda()));
    REQUIRE(max_abs_diff(sgpu.to(Device::cpu()).to(DType::f64), scpu.to(DType::f64)) == 0.0);
  }
}

}  // namespace dualflow::testing
