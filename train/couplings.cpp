// Minibatch couplings: the assignment solver, log-domain Sinkhorn, plan sampling, the
// Schrödinger-bridge path and the coupling factory (see couplings.h).
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
  DF_CHECK(af.size(1) == bf.size(1), "pairwise_sq_distances: rows must have one size, given {} and {}",
           a.shape().str(), b.shape().str());
  Tensor aa = sum(square(af), {1}, true);               // [N, 1]
  Tensor bb = sum(square(bf), {1}, true).t();           // [1, M]
  Tensor d = aa + bb - matmul(af, bf.t()) * 2.0;
  // Cancellation can leave tiny negatives for near-identical rows; a distance is never below 0.
  return maximum(d, zeros_like(d));
}

std::vector<int64_t> solve_assignment(const std::vector<double>& cost, int64_t n) {
  DF_CHECK(n >= 0 && int64_t(cost.size()) == n * n, "solve_assignment: cost must hold n * n = {} values, given {}",
           n * n, cost.size());
  for (double c : cost) DF_CHECK(std::isfinite(c), "solve_assignment: costs must be finite, given {}", c);
  const double inf = std::numeric_limits<double>::infinity();
  // Dual potentials u (rows), v (columns) keep every reduced cost C_ij - u_i - v_j >= 0, with
  // equality on assigned pairs; each free row is added by one Dijkstra search for the cheapest
  // augmenting path in reduced costs, so the partial assignment stays optimal throughout.
  std::vector<double> u(n, 0.0), v(n, inf), final_dist(n);
  std::vector<int64_t> col_of_row(n, -1), row_of_col(n, -1), prev_row(n), scanned_rows, scanned_cols;

  // Column reduction: v_j = min_i C_ij is feasible with u = 0 and makes each column's cheapest
  // entry tight, so every row that is the cheapest of some column starts out assigned.
  std::vector<int64_t> argmin_row(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    const double* row = cost.data() + i * n;
    for (int64_t j = 0; j < n; ++j) {
      if (row[j] < v[j]) {
        v[j] = row[j];
        argmin_row[j] = i;
      }
    }
  }
  for (int64_t j = 0; j < n; ++j) {
    const int64_t i = argmin_row[j];
    if (col_of_row[i] < 0) {
      col_of_row[i] = j;
      row_of_col[j] = i;
    }
  }

  // Augmenting row reduction (Jonker and Volgenant), twice over the free rows: a free row takes
  // the column of its smallest reduced cost C_ij - v_j and lowers that column's v by the gap to
  // its second smallest, evicting the previous owner, which tries again. v only ever falls, and
  // only on the column a row just took, so every assigned row keeps its column at the minimum
  // of C_ij - v_j: the duals stay feasible and the search below may start from here. Most rows
  // settle in this cheap O(n) step; a cap on the steps bounds the cost on degenerate inputs.
  {
    std::vector<int64_t> free_rows;
    for (int64_t i = 0; i < n; ++i) {
      if (col_of_row[i] < 0) free_rows.push_back(i);
    }
    int64_t steps = 0;
    const int64_t max_steps = 8 * n + 16;
    for (int pass = 0; pass < 2 && !free_rows.empty() && steps < max_steps; ++pass) {
      std::vector<int64_t> next_free;
      size_t k = 0;
      while (k < free_rows.size() && steps < max_steps) {
        ++steps;
        const int64_t i = free_rows[k++];
        const double* row = cost.data() + i * n;
        double h1 = inf, h2 = inf;
        int64_t j1 = -1, j2 = -1;
        for (int64_t j = 0; j < n; ++j) {
          const double h = row[j] - v[j];
          if (h < h2) {
            if (h < h1) {
              h2 = h1;
              j2 = j1;
              h1 = h;
              j1 = j;
            } else {
              h2 = h;
              j2 = j;
            }
          }
        }
        int64_t owner = row_of_col[j1];
        if (h1 < h2) {
          v[j1] -= h2 - h1;
        } else if (owner >= 0 && j2 >= 0) {
          // A tie: take the second column instead when the first is owned, lowering nothing.
          j1 = j2;
          owner = row_of_col[j2];
        }
        if (owner >= 0) {
          col_of_row[owner] = -1;
          if (h1 < h2) {
            free_rows[--k] = owner;  // retry the evicted row at once, against the lowered v
          } else {
            next_free.push_back(owner);
          }
        }
        col_of_row[i] = j1;
        row_of_col[j1] = i;
      }
      for (; k < free_rows.size(); ++k) next_free.push_back(free_rows[k]);
      free_rows.swap(next_free);
    }
  }
  // Row potentials tight on the assigned pairs (and feasible for the free rows).
  for (int64_t i = 0; i < n; ++i) {
    const double* row = cost.data() + i * n;
    double m = inf;
    for (int64_t j = 0; j < n; ++j) m = std::min(m, row[j] - v[j]);
    u[i] = m;
  }

  // The unscanned columns of one search, packed at the front of these arrays (position k holds
  // column col[k], its tentative distance dist[k], predecessor row pred[k] and potential vc[k])
  // so that the inner loop reads them contiguously and only the cost row is gathered.
  std::vector<int64_t> col(n), pred(n);
  std::vector<double> dist(n), vc(n);
  for (int64_t start = 0; start < n; ++start) {
    if (col_of_row[start] >= 0) continue;
    for (int64_t k = 0; k < n; ++k) {
      col[k] = k;
      dist[k] = inf;
      vc[k] = v[k];
    }
    scanned_rows.clear();
    scanned_cols.clear();
    int64_t num_remaining = n, i = start, sink = -1;
    double min_dist = 0.0;
    while (sink < 0) {
      scanned_rows.push_back(i);
      const double* row = cost.data() + i * n;
      const double offset = min_dist - u[i];
      double lowest = inf;
      int64_t best = 0;
      for (int64_t k = 0; k < num_remaining; ++k) {
        const double r = offset + row[col[k]] - vc[k];
        if (r < dist[k]) {
          dist[k] = r;
          pred[k] = i;
        }
        if (dist[k] < lowest) {
          lowest = dist[k];
          best = k;
        }
      }
      min_dist = lowest;
      const int64_t j = col[best];
      final_dist[j] = dist[best];
      prev_row[j] = pred[best];
      scanned_cols.push_back(j);
      --num_remaining;
      std::swap(col[best], col[num_remaining]);
      std::swap(dist[best], dist[num_remaining]);
      std::swap(pred[best], pred[num_remaining]);
      std::swap(vc[best], vc[num_remaining]);
      if (row_of_col[j] < 0) {
        sink = j;
      } else {
        i = row_of_col[j];
      }
    }

    // Update the potentials so that reduced costs stay non-negative and the path is tight.
    u[start] += min_dist;
    for (int64_t r : scanned_rows) {
      if (r != start) u[r] += min_dist - final_dist[col_of_row[r]];
    }
    for (int64_t j : scanned_cols) v[j] -= min_dist - final_dist[j];
    // Flip the augmenting path.
    for (int64_t j = sink;;) {
      const int64_t r = prev_row[j];
      row_of_col[j] = r;
      std::swap(col_of_row[r], j);
      if (r == start) break;
    }
  }
  return col_of_row;
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

std::vector<int64_t> ExactOTCoupling::assignment(const Tensor& x0, const Tensor& x1) {
  check_batch("ExactOTCoupling", x0, x1);
  // f64 costs: an f32 cost matrix can tie or misorder pairs that differ in the last bits.
  Tensor cost = pairwise_sq_distances(x0.detach().to(DType::f64), x1.detach().to(DType::f64));
  return solve_assignment(cost.to(Device::cpu()).to_vector<double>(), x0.size(0));
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

SchrodingerBridgePath::SchrodingerBridgePath(double sigma, Generator& gen) : sigma_(sigma), gen_(&gen) {
  DF_CHECK(sigma > 0, "SchrodingerBridgePath: sigma must be positive, given {}", sigma);
}

PathSample SchrodingerBridgePath::sample(const Tensor& x0, const Tensor& x1, const Tensor& t) const {
  return sample_with_noise(x0, x1, t, randn(x0.shape(), *gen_, x0.options()));
}

PathSample SchrodingerBridgePath::sample_with_noise(const Tensor& x0, const Tensor& x1, const Tensor& t,
                                                    const Tensor& eps) const {
  Tensor tb = broadcast_time("SchrodingerBridgePath::sample", x0, x1, t);
  DF_CHECK(eps.defined() && eps.shape() == x0.shape(), "SchrodingerBridgePath::sample: eps must be {}, given {}",
           x0.shape().str(), eps.defined() ? eps.shape().str() : std::string("undefined"));
  Tensor var = tb * (1.0 - tb);
  Tensor mu = tb * x1 + (1.0 - tb) * x0;
  Tensor x_t = mu + (sqrt(var) * sigma_) * eps;
  Tensor u_t = (x1 - x0) + ((1.0 - 2.0 * tb) / (var * 2.0 + 1e-8)) * (x_t - mu);
  return {x_t, u_t};
}

SchrodingerBridgeCoupling::SchrodingerBridgeCoupling(double sigma, int64_t iterations)
    : sigma_(sigma), sinkhorn_(2 * sigma * sigma, iterations, PlanPairing::SampleFromPlan) {
  DF_CHECK(sigma > 0, "SchrodingerBridgeCoupling: sigma must be positive, given {}", sigma);
}

CoupledBatch SchrodingerBridgeCoupling::couple(const Tensor& x0, const Tensor& x1, Generator& gen) const {
  return sinkhorn_.couple(x0, x1, gen);
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
