// Minibatch couplings: log-domain Sinkhorn, plan sampling, the couplings and their factory
// (see couplings.h).
#include "train/couplings.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "engine/ops.h"

namespace dualflow {

namespace {

void check_batch(const char* who, const Tensor& x0, const Tensor& x1) {
  DF_CHECK(x0.defined() && x1.defined(), "{}: x0 and x1 must be defined", who);
  DF_CHECK(x0.dim() >= 1 && x0.shape() == x1.shape(), "{}: x0 and x1 must be [N, ...] of one shape, given {} and {}",
           who, x0.shape().str(), x1.shape().str());
  DF_CHECK(x0.dtype() == x1.dtype() && x0.device() == x1.device(),
           "{}: x0 and x1 must share dtype and device, given {} on {} and {} on {}", who, dtype_name(x0.dtype()),
           x0.device().str(), dtype_name(x1.dtype()), x1.device().str());
}

Tensor index_tensor(const std::vector<int64_t>& idx, Device device) {
  return from_vector(idx, {int64_t(idx.size())}).to(device);
}

void check_params(const std::string& coupling, const CouplingParams& params, const std::vector<std::string>& known) {
  for (const auto& [key, value] : params) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      fail("make_coupling: '{}' takes parameters [{}], given unknown parameter '{}'", coupling, fmt::join(known, ", "),
           key);
    }
  }
}

double param_or(const CouplingParams& params, const char* key, double fallback) {
  auto it = params.find(key);
  return it == params.end() ? fallback : it->second;
}

int64_t iterations_param(const CouplingParams& params) {
  double it = param_or(params, "iterations", 200);
  DF_CHECK(it >= 1 && it == std::floor(it), "make_coupling: iterations must be a positive integer, given {}", it);
  return int64_t(it);
}

}  // namespace

// ---- building blocks ------------------------------------------------------------------------

Tensor pairwise_sq_distances(const Tensor& a, const Tensor& b) {
  DF_CHECK(a.defined() && b.defined() && a.dim() >= 1 && b.dim() >= 1,
           "pairwise_sq_distances: a and b must be [N, ...] and [M, ...]");
  Tensor af = a.reshape({a.size(0), -1}), bf = b.reshape({b.size(0), -1});
  DF_CHECK(af.size(1) == bf.size(1), "pairwise_sq_distances: rows must have one size, given {} and {}", a.shape().str(),
           b.shape().str());
  Tensor aa = sum(square(af), {1}, true);      // [N, 1]
  Tensor bb = sum(square(bf), {1}, true).t();  // [1, M]
  Tensor d = aa + bb - matmul(af, bf.t()) * 2.0;
  // Cancellation can leave tiny negatives for near-identical rows; a distance is never below 0.
  return maximum(d, zeros_like(d));
}

Tensor sinkhorn_plan(const Tensor& cost, double reg, int64_t iterations) {
  DF_CHECK(cost.defined() && cost.dim() == 2, "sinkhorn_plan: cost must be [N, M], given {}",
           cost.defined() ? cost.shape().str() : std::string("undefined"));
  DF_CHECK(reg > 0, "sinkhorn_plan: reg must be positive, given {}", reg);
  DF_CHECK(iterations >= 1, "sinkhorn_plan: iterations must be at least 1, given {}", iterations);
  const int64_t n = cost.size(0), m = cost.size(1);
  Tensor log_k = cost * (-1.0 / reg);
  // Both sweeps reduce along rows of a contiguous matrix: the transpose is laid out once.
  Tensor log_k_t = log_k.t().contiguous();
  const double log_a = -std::log(double(n)), log_b = -std::log(double(m));
  Tensor f = zeros({n}, cost.options()), g = zeros({m}, cost.options());
  for (int64_t it = 0; it < iterations; ++it) {
    f = log_a - logsumexp(log_k + g.unsqueeze(0), 1);
    g = log_b - logsumexp(log_k_t + f.unsqueeze(0), 1);
  }
  return exp(log_k + f.unsqueeze(1) + g.unsqueeze(0));
}

IndexPairs sample_plan(const Tensor& plan, int64_t count, Generator& gen) {
  DF_CHECK(plan.defined() && plan.dim() == 2, "sample_plan: plan must be [N, M], given {}",
           plan.defined() ? plan.shape().str() : std::string("undefined"));
  DF_CHECK(count >= 0, "sample_plan: count must be non-negative, given {}", count);
  const int64_t m = plan.size(1);
  std::vector<double> cdf = plan.to(Device::cpu()).to_vector<double>();
  double total = 0;
  for (double& p : cdf) {
    DF_CHECK(p >= 0 && std::isfinite(p), "sample_plan: plan entries must be finite and non-negative, given {}", p);
    total += p;
    p = total;
  }
  DF_CHECK(total > 0, "sample_plan: the plan sums to {}, nothing to sample", total);
  std::vector<double> draws = rand({count}, gen, DType::f64).to_vector<double>();
  std::vector<int64_t> rows(count), cols(count);
  for (int64_t k = 0; k < count; ++k) {
    // First cell whose cumulative mass exceeds the draw; zero-mass cells are never chosen.
    auto it = std::upper_bound(cdf.begin(), cdf.end(), draws[k] * total);
    int64_t cell = std::min<int64_t>(it - cdf.begin(), int64_t(cdf.size()) - 1);
    rows[k] = cell / m;
    cols[k] = cell % m;
  }
  return {index_tensor(rows, plan.device()), index_tensor(cols, plan.device())};
}

// ---- couplings ------------------------------------------------------------------------------

CoupledBatch IndependentCoupling::couple(const Tensor& x0, const Tensor& x1, Generator&) const {
  check_batch("IndependentCoupling", x0, x1);
  return {x0, x1};
}

namespace {

// Up to this many coordinates per row, exact OT sums its costs directly on the CPU: for 2-D
// batches that is a few n^2 operations instead of a GEMM, the elementwise ops around it and
// the copies of an n x n tensor, and it has no cancellation between ||a||^2 + ||b||^2 and 2 a.b.
constexpr int64_t kDirectCostMaxDims = 16;

// ||a_i - b_j||^2 for a and b of n rows of dim values each (row-major).
std::vector<double> direct_sq_distances(const std::vector<double>& a, const std::vector<double>& b, int64_t n,
                                        int64_t dim) {
  std::vector<double> b_by_coordinate(dim * n);  // b transposed: the inner loop runs over columns
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t d = 0; d < dim; ++d) b_by_coordinate[d * n + j] = b[j * dim + d];
  }
  std::vector<double> cost(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i) {
    double* row = cost.data() + i * n;
    for (int64_t d = 0; d < dim; ++d) {
      const double ad = a[i * dim + d];
      const double* bd = b_by_coordinate.data() + d * n;
      for (int64_t j = 0; j < n; ++j) {
        const double diff = ad - bd[j];
        row[j] += diff * diff;
      }
    }
  }
  return cost;
}

// The same for a and b [n, dim] with many coordinates, as pairwise_sq_distances computes it but
// with one n x n buffer: the Gram matrix a b^T by one f64 GEMM on the inputs' device, brought to
// the CPU, then ||a_i||^2 + ||b_j||^2 - 2 <a_i, b_j> clamped at 0 written over it.
Tensor sq_distances_from_gram(const Tensor& a, const Tensor& b) {
  const Tensor a64 = a.to(DType::f64), b64 = b.to(DType::f64);
  Tensor cost = matmul(a64, b64.t()).to(Device::cpu()).contiguous();
  const std::vector<double> a_sq = sum(square(a64), {1}).to_vector<double>();
  const std::vector<double> b_sq = sum(square(b64), {1}).to_vector<double>();
  const int64_t n = a_sq.size(), m = b_sq.size();
  double* c = cost.data<double>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < m; ++j) c[i * m + j] = std::max(0.0, a_sq[i] + b_sq[j] - c[i * m + j] * 2.0);
  }
  return cost;
}

}  // namespace

std::vector<int64_t> ExactOTCoupling::assignment(const Tensor& x0, const Tensor& x1) {
  check_batch("ExactOTCoupling", x0, x1);
  const int64_t n = x0.size(0), dim = n > 0 ? x0.numel() / n : 0;
  // f64 costs: an f32 cost matrix can tie or misorder pairs that differ in the last bits.
  if (dim <= kDirectCostMaxDims) {
    const std::vector<double> cost = direct_sq_distances(x0.to_vector<double>(), x1.to_vector<double>(), n, dim);
    return solve_dense_assignment(cost.data(), n).col_of_row;
  }
  const Tensor cost = sq_distances_from_gram(x0.detach().reshape({n, dim}), x1.detach().reshape({n, dim}));
  return solve_dense_assignment(cost.data<double>(), n).col_of_row;
}

CoupledBatch ExactOTCoupling::couple(const Tensor& x0, const Tensor& x1, Generator&) const {
  std::vector<int64_t> perm = assignment(x0, x1);
  return {x0, index_select(x1, 0, index_tensor(perm, x1.device()))};
}

SinkhornCoupling::SinkhornCoupling(double reg, int64_t iterations, PlanPairing pairing)
    : reg_(reg), iterations_(iterations), pairing_(pairing) {
  DF_CHECK(reg > 0, "SinkhornCoupling: reg must be positive, given {}", reg);
  DF_CHECK(iterations >= 1, "SinkhornCoupling: iterations must be at least 1, given {}", iterations);
}

CoupledBatch SinkhornCoupling::couple(const Tensor& x0, const Tensor& x1, Generator& gen) const {
  check_batch("SinkhornCoupling", x0, x1);
  Tensor plan = sinkhorn_plan(pairwise_sq_distances(x0.detach(), x1.detach()), reg_, iterations_);
  if (pairing_ == PlanPairing::RowArgmax) return {x0, index_select(x1, 0, argmax(plan, 1))};
  IndexPairs p = sample_plan(plan, x0.size(0), gen);
  return {index_select(x0, 0, p.rows), index_select(x1, 0, p.cols)};
}

SchrodingerBridgeCoupling::SchrodingerBridgeCoupling(double sigma, int64_t iterations)
    : sigma_(sigma), sinkhorn_(2 * sigma * sigma, iterations, PlanPairing::SampleFromPlan) {
  DF_CHECK(sigma > 0, "SchrodingerBridgeCoupling: sigma must be positive, given {}", sigma);
}

CoupledBatch SchrodingerBridgeCoupling::couple(const Tensor& x0, const Tensor& x1, Generator& gen) const {
  return sinkhorn_.couple(x0, x1, gen);
}

std::shared_ptr<ProbabilityPath> Coupling::own_path(Generator&) const { return nullptr; }

std::shared_ptr<ProbabilityPath> SchrodingerBridgeCoupling::own_path(Generator& noise) const {
  return std::make_shared<SchrodingerBridgePath>(sigma_, noise);
}

std::vector<std::string> coupling_names() { return {"independent", "exact_ot", "sinkhorn", "sb"}; }

std::shared_ptr<Coupling> make_coupling(const std::string& name, const CouplingParams& params) {
  if (name == "independent") {
    check_params(name, params, {});
    return std::make_shared<IndependentCoupling>();
  }
  if (name == "exact_ot") {
    check_params(name, params, {});
    return std::make_shared<ExactOTCoupling>();
  }
  if (name == "sinkhorn") {
    check_params(name, params, {"reg", "iterations", "argmax"});
    const double argmax_flag = param_or(params, "argmax", 0);
    DF_CHECK(argmax_flag == 0 || argmax_flag == 1, "make_coupling: argmax must be 0 or 1, given {}", argmax_flag);
    return std::make_shared<SinkhornCoupling>(param_or(params, "reg", 0.05), iterations_param(params),
                                              argmax_flag == 1 ? PlanPairing::RowArgmax : PlanPairing::SampleFromPlan);
  }
  if (name == "sb") {
    check_params(name, params, {"sigma", "iterations"});
    return std::make_shared<SchrodingerBridgeCoupling>(param_or(params, "sigma", 1.0), iterations_param(params));
  }
  fail("make_coupling: unknown coupling '{}'; known: {}", name, fmt::join(coupling_names(), ", "));
}

}  // namespace dualflow
