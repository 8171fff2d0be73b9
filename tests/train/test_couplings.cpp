// Tests of the minibatch couplings in f64: the assignment solver against brute force (all
// permutations, and a dynamic programme over column subsets up to n = 12), against a plain
// O(n^3) Hungarian method and by its LP-duality certificate on larger and degenerate inputs, the
// exact-OT coupling against the identity pairing, Sinkhorn's marginals and its approach to the
// exact OT cost, plan sampling, the Schrödinger-bridge path's noise and velocity, and the
// factory. A hidden case ("[.couplings-bench]") times n = 256 and 1024.
#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <numeric>
#include <vector>

#include "engine/dualflow.h"
#include "tests/engine/test_util.h"
#include "train/couplings.h"

namespace dualflow::testing {
namespace {

using Catch::Matchers::Contains;

double assignment_cost(const std::vector<double>& cost, int64_t n, const std::vector<int64_t>& perm) {
  double c = 0;
  for (int64_t i = 0; i < n; ++i) c += cost[i * n + perm[i]];
  return c;
}

bool is_permutation_of_range(std::vector<int64_t> p) {
  std::sort(p.begin(), p.end());
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] != int64_t(i)) return false;
  }
  return true;
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// The optimal cost by dynamic programming over column subsets: cheapest[mask] is the least cost of
// giving rows 0 .. |mask| - 1 the columns in mask. Exact and independent of the solver; n <= 16.
double brute_force_min_cost(const std::vector<double>& cost, int64_t n) {
  std::vector<double> cheapest(size_t(1) << n, kInf);
  cheapest[0] = 0;
  for (uint32_t mask = 0; mask + 1 < (uint32_t(1) << n); ++mask) {
    const int row = std::popcount(mask);
    for (int col = 0; col < n; ++col) {
      if (mask >> col & 1) continue;
      double& next = cheapest[mask | (uint32_t(1) << col)];
      next = std::min(next, cheapest[mask] + cost[row * n + col]);
    }
  }
  return cheapest.back();
}

// The textbook Hungarian method, O(n^3): rows are added one at a time; each step grows a tree of
// columns by the least slack and shifts the potentials by it until a free column is reached.
// Kept plain and separate from the solver under test, as a second exact method.
double hungarian_min_cost(const std::vector<double>& cost, int64_t n) {
  // Column 0 is a virtual column that holds the row being added; real columns are 1 .. n.
  std::vector<double> row_potential(n + 1, 0), col_potential(n + 1, 0), slack(n + 1);
  std::vector<int64_t> row_at(n + 1, 0), reached_from(n + 1, 0);  // rows 1 .. n, 0 = none
  std::vector<char> in_tree(n + 1);
  for (int64_t new_row = 1; new_row <= n; ++new_row) {
    row_at[0] = new_row;
    std::fill(slack.begin(), slack.end(), kInf);
    std::fill(in_tree.begin(), in_tree.end(), 0);
    int64_t col = 0;
    while (row_at[col] != 0) {
      in_tree[col] = 1;
      const int64_t row = row_at[col];
      double step = kInf;
      int64_t next_col = -1;
      for (int64_t j = 1; j <= n; ++j) {
        if (in_tree[j]) continue;
        const double reduced = cost[(row - 1) * n + (j - 1)] - row_potential[row] - col_potential[j];
        if (reduced < slack[j]) {
          slack[j] = reduced;
          reached_from[j] = col;
        }
        if (slack[j] < step) {
          step = slack[j];
          next_col = j;
        }
      }
      for (int64_t j = 0; j <= n; ++j) {
        if (in_tree[j]) {
          row_potential[row_at[j]] += step;
          col_potential[j] -= step;
        } else {
          slack[j] -= step;
        }
      }
      col = next_col;
    }
    while (col != 0) {  // shift the rows back along the tree path
      const int64_t prev = reached_from[col];
      row_at[col] = row_at[prev];
      col = prev;
    }
  }
  double total = 0;
  for (int64_t j = 1; j <= n; ++j) total += cost[(row_at[j] - 1) * n + (j - 1)];
  return total;
}

// LP duality: u_i + v_j <= C_ij for every pair and = C_ij on the assigned pairs (within tol)
// prove the assignment optimal whatever produced the potentials.
void require_optimality_certificate(const std::vector<double>& cost, int64_t n, const AssignmentSolution& s,
                                    double tol) {
  REQUIRE(is_permutation_of_range(s.col_of_row));
  REQUIRE(int64_t(s.row_potential.size()) == n);
  REQUIRE(int64_t(s.col_potential.size()) == n);
  double worst_violation = 0, worst_slack_on_assigned = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      const double reduced = cost[i * n + j] - s.row_potential[i] - s.col_potential[j];
      worst_violation = std::max(worst_violation, -reduced);
      if (s.col_of_row[i] == j) worst_slack_on_assigned = std::max(worst_slack_on_assigned, std::abs(reduced));
    }
  }
  REQUIRE(worst_violation <= tol);
  REQUIRE(worst_slack_on_assigned <= tol);
}

double max_magnitude(const std::vector<double>& cost) {
  double m = 0;
  for (double c : cost) m = std::max(m, std::abs(c));
  return m;
}

// Checks solve_assignment and solve_assignment_with_potentials against a reference minimum.
void require_optimal(const std::vector<double>& cost, int64_t n, double reference_min) {
  const double scale = std::max(max_magnitude(cost), std::numeric_limits<double>::min());
  const double tol = 1e-12 * scale * double(std::max<int64_t>(n, 1));
  AssignmentSolution s = solve_assignment_with_potentials(cost, n);
  require_optimality_certificate(cost, n, s, tol);
  REQUIRE(std::abs(assignment_cost(cost, n, s.col_of_row) - reference_min) <= tol);
  REQUIRE(solve_assignment(cost, n) == s.col_of_row);
}

std::vector<double> uniform_costs(int64_t n, double lo, double hi, uint64_t seed) {
  Generator g(seed);
  return uniform({n * n}, lo, hi, g, DType::f64).to_vector<double>();
}

// Squared distances between n noise points and n points of a narrower, shifted cloud in `dim`
// dimensions: the OT-CFM case.
std::vector<double> point_costs(int64_t n, int64_t dim, uint64_t seed) {
  Generator g(seed);
  Tensor x0 = randn({n, dim}, g, DType::f64), x1 = randn({n, dim}, g, DType::f64) * 0.5 + 1.0;
  return pairwise_sq_distances(x0, x1).to_vector<double>();
}

TEST_CASE("assignment: optimal against brute force over all permutations (n <= 7)", "[couplings]") {
  for (int64_t n = 1; n <= 7; ++n) {
    for (uint64_t seed = 0; seed < 6; ++seed) {
      Generator g(100 * n + seed);
      std::vector<double> cost = uniform({n * n}, 0.0, 10.0, g, DType::f64).to_vector<double>();
      if (seed % 3 == 2) {
        for (double& c : cost) c = std::floor(c / 3);  // many ties
      }
      std::vector<int64_t> perm = solve_assignment(cost, n);
      INFO("n = " << n << ", seed " << seed);
      REQUIRE(is_permutation_of_range(perm));
      std::vector<int64_t> p(n);
      std::iota(p.begin(), p.end(), 0);
      double best = std::numeric_limits<double>::infinity();
      do best = std::min(best, assignment_cost(cost, n, p));
      while (std::next_permutation(p.begin(), p.end()));
      REQUIRE(assignment_cost(cost, n, perm) == Approx(best).margin(1e-12));
    }
  }
  REQUIRE(solve_assignment({}, 0).empty());
  REQUIRE_THROWS_WITH(solve_assignment({1, 2, 3}, 2), Contains("n * n = 4") && Contains("given 3"));
}

TEST_CASE("assignment: random sizes 1..12 against the subset programme, many seeds", "[couplings]") {
  for (int64_t n = 1; n <= 12; ++n) {
    for (uint64_t seed = 0; seed < 30; ++seed) {
      std::vector<double> cost;
      switch (seed % 5) {
        case 0: cost = uniform_costs(n, 0.0, 1.0, 1000 * n + seed); break;
        case 1: cost = uniform_costs(n, -5.0, 5.0, 1000 * n + seed); break;  // negative costs are fine
        case 2:  // integers 0..2: many ties and many optimal assignments
          cost = uniform_costs(n, 0.0, 3.0, 1000 * n + seed);
          for (double& c : cost) c = std::floor(c);
          break;
        case 3: cost = point_costs(n, 2, 1000 * n + seed); break;
        default: cost = point_costs(n, 5, 1000 * n + seed); break;
      }
      INFO("n = " << n << ", seed " << seed);
      require_optimal(cost, n, brute_force_min_cost(cost, n));
    }
  }
}

TEST_CASE("assignment: n = 0 and 1, degenerate and extreme costs", "[couplings]") {
  REQUIRE(solve_assignment({}, 0).empty());
  AssignmentSolution none = solve_assignment_with_potentials({}, 0);
  REQUIRE(none.col_of_row.empty());
  REQUIRE(none.row_potential.empty());
  REQUIRE(none.col_potential.empty());
  AssignmentSolution one = solve_assignment_with_potentials({-2.5}, 1);
  REQUIRE(one.col_of_row == std::vector<int64_t>{0});
  REQUIRE(one.row_potential[0] + one.col_potential[0] == -2.5);

  // Sizes below and above the cold-start size, odd ones included (half problems of n / 2).
  for (int64_t n : {2, 7, 12, 40, 64, 65, 97, 130, 200}) {
    INFO("n = " << n);
    auto reference = [&](const std::vector<double>& c) {
      return n <= 12 ? brute_force_min_cost(c, n) : hungarian_min_cost(c, n);
    };
    // All costs equal: every permutation is optimal.
    std::vector<double> equal(n * n, 3.0);
    require_optimal(equal, n, 3.0 * n);
    // Integer costs 0..3 at scale: the totals are exact, so they must match exactly.
    std::vector<double> ints = uniform_costs(n, 0.0, 4.0, 7 * n);
    for (double& c : ints) c = std::floor(c);
    const double best = reference(ints);
    REQUIRE(assignment_cost(ints, n, solve_assignment(ints, n)) == best);
    require_optimal(ints, n, best);
    // Repeated rows (each row twice) and repeated columns.
    std::vector<double> rows = uniform_costs(n, 0.0, 1.0, 11 * n), cols = rows;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) {
        rows[i * n + j] = rows[(i / 2) * n + j];
        cols[i * n + j] = cols[i * n + j / 2];
      }
    }
    require_optimal(rows, n, reference(rows));
    require_optimal(cols, n, reference(cols));
    // Very large and very small magnitudes, and a matrix mixing both.
    for (double scale : {1e150, 1e12, 1e-12, 1e-150}) {
      INFO("scale " << scale);
      std::vector<double> scaled = uniform_costs(n, 0.0, 1.0, 13 * n);
      for (double& c : scaled) c *= scale;
      require_optimal(scaled, n, reference(scaled));
    }
    std::vector<double> mixed = uniform_costs(n, 0.0, 1.0, 17 * n);
    for (size_t k = 0; k < mixed.size(); k += 3) mixed[k] *= 1e9;
    require_optimal(mixed, n, reference(mixed));
    // A rank-one cost C_ij = a_i b_j: the optimum pairs large a with small b (rearrangement).
    std::vector<double> factors = uniform_costs(n, 0.0, 1.0, 19 * n), product(n * n);  // a = first n, b = next n
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < n; ++j) product[i * n + j] = factors[i] * factors[n + j];
    }
    require_optimal(product, n, reference(product));
  }
  REQUIRE_THROWS_WITH(solve_assignment({1, std::nan(""), 0, 1}, 2), Contains("finite"));
  REQUIRE_THROWS_WITH(solve_assignment({1, kInf, 0, 1}, 2), Contains("finite"));
  REQUIRE_THROWS_WITH(solve_assignment({1, 1e301, 0, 1}, 2), Contains("1e+300"));
}

TEST_CASE("assignment: larger n against the Hungarian method and the duality certificate", "[couplings]") {
  for (int64_t n : {129, 200, 256, 301}) {
    for (uint64_t seed = 0; seed < 3; ++seed) {
      INFO("n = " << n << ", seed " << seed);
      std::vector<double> cost = seed == 0   ? point_costs(n, 2, 31 * n)
                                 : seed == 1 ? point_costs(n, 50, 37 * n)
                                             : uniform_costs(n, 0.0, 1.0, 41 * n);
      require_optimal(cost, n, hungarian_min_cost(cost, n));
    }
  }
}

TEST_CASE("exact OT coupling: a permutation of x1 no costlier than the identity pairing", "[couplings]") {
  Generator g(7);
  Tensor x0 = randn({64, 2, 3}, g, DType::f64), x1 = randn({64, 2, 3}, g, DType::f64) * 2.0 + 1.0;
  Tensor cost = pairwise_sq_distances(x0, x1);
  // The GEMM form against the direct definition.
  Tensor direct = sum(square(x0.reshape({64, 1, 6}) - x1.reshape({1, 64, 6})), {2});
  require_close(cost, direct, 1e-12, 1e-12, "pairwise squared distances");

  ExactOTCoupling ot;
  CoupledBatch c = ot.couple(x0, x1, g);
  REQUIRE(c.x0.same(x0));
  std::vector<int64_t> perm = ExactOTCoupling::assignment(x0, x1);
  REQUIRE(is_permutation_of_range(perm));
  require_close(c.x1, index_select(x1, 0, from_vector(perm, {64})), 0, 0, "x1 permuted");
  double paired = sum(square(c.x1 - c.x0)).item(), identity = sum(square(x1 - x0)).item();
  REQUIRE(paired <= identity);
  REQUIRE(paired == Approx(assignment_cost(cost.to_vector<double>(), 64, perm)).epsilon(1e-12));
  // Shifting one side leaves the optimal pairing unchanged (the cross term changes by a constant).
  REQUIRE(ExactOTCoupling::assignment(x0, x1 + 3.0) == perm);
  // A permuted copy is matched back exactly.
  std::vector<int64_t> shuffle(64);
  for (int64_t i = 0; i < 64; ++i) shuffle[i] = (i * 29 + 5) % 64;
  std::vector<int64_t> back = ExactOTCoupling::assignment(index_select(x0, 0, from_vector(shuffle, {64})), x0);
  REQUIRE(back == shuffle);
}

TEST_CASE("exact OT coupling: direct and Gram-matrix costs both give the optimal pairing", "[couplings]") {
  // Few coordinates are summed directly, many go through a GEMM; both must pair optimally for
  // the squared distances by definition, in f64 and from f32 batches.
  Generator g(21);
  const int64_t n = 50;
  for (int64_t dim : {1, 3, 16, 17, 40}) {
    for (DType dtype : {DType::f64, DType::f32}) {
      INFO("dim " << dim << ", " << dtype_name(dtype));
      Tensor x0 = randn({n, dim}, g, dtype), x1 = randn({n, dim}, g, dtype) * 0.5 + 1.0;
      const std::vector<double> a = x0.to_vector<double>(), b = x1.to_vector<double>();
      std::vector<double> cost(n * n, 0.0);
      for (int64_t i = 0; i < n; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          for (int64_t d = 0; d < dim; ++d)
            cost[i * n + j] += (a[i * dim + d] - b[j * dim + d]) * (a[i * dim + d] - b[j * dim + d]);
        }
      }
      std::vector<int64_t> perm = ExactOTCoupling::assignment(x0, x1);
      REQUIRE(is_permutation_of_range(perm));
      REQUIRE(assignment_cost(cost, n, perm) == Approx(hungarian_min_cost(cost, n)).epsilon(1e-12));
    }
  }
}

TEST_CASE("exact OT: n = 256 stays fast", "[couplings]") {
  Generator g(8);
  Tensor x0 = randn({256, 2}, g), x1 = randn({256, 2}, g) + 2.0;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<int64_t> perm = ExactOTCoupling::assignment(x0, x1);
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  REQUIRE(is_permutation_of_range(perm));
  REQUIRE(ms < 500);
}

TEST_CASE("exact OT: n = 256 and 1024 timing", "[.couplings-bench]") {
  for (int64_t dim : {2, 784}) {
    for (int64_t n : {256, 1024}) {
      Generator g(9);
      Tensor x0 = randn({n, dim}, g), x1 = randn({n, dim}, g) * 0.5 + 1.0;
      Tensor cost = pairwise_sq_distances(x0.to(DType::f64), x1.to(DType::f64));
      std::vector<double> c = cost.to_vector<double>();
      for (int rep = 0; rep < 3; ++rep) {
        // CPU time of this thread as well as wall time: on a shared machine the wall clock
        // includes waiting for a core.
        timespec c0{}, c1{};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        auto t0 = std::chrono::steady_clock::now();
        std::vector<int64_t> perm = solve_assignment(c, n);
        auto t1 = std::chrono::steady_clock::now();
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        const double cpu_ms = (c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) * 1e-6;
        ExactOTCoupling::assignment(x0, x1);
        auto t2 = std::chrono::steady_clock::now();
        double solver_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
        double total_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
        WARN("n " << n << ", dim " << dim << ": solver " << solver_ms << " ms wall, " << cpu_ms
                  << " ms cpu; ExactOTCoupling::assignment (cost matrix + solver) " << total_ms << " ms wall");
        REQUIRE(is_permutation_of_range(perm));
      }
    }
  }
}

TEST_CASE("sinkhorn: marginals, and the cost approaches exact OT as reg shrinks", "[couplings]") {
  Generator g(10);
  const int64_t n = 12;
  Tensor x0 = randn({n, 2}, g, DType::f64), x1 = randn({n, 2}, g, DType::f64) + 1.5;
  Tensor cost = pairwise_sq_distances(x0, x1);
  std::vector<double> c = cost.to_vector<double>();
  const double exact = assignment_cost(c, n, solve_assignment(c, n)) / n;  // the OT cost at weights 1/n
  const double scale = amax(cost).item();

  double previous_gap = std::numeric_limits<double>::infinity();
  for (double rel : {0.5, 0.1, 0.02, 0.004}) {
    INFO("reg = " << rel << " * max cost");
    Tensor plan = sinkhorn_plan(cost, rel * scale, 5000);
    // Rows converge last (each sweep ends on the columns); slower at small reg.
    require_close(sum(plan, {1}), full({n}, 1.0 / n, DType::f64), 1e-3, 0, "row marginals");
    require_close(sum(plan, {0}), full({n}, 1.0 / n, DType::f64), 1e-12, 1e-14, "column marginals");
    double transport = sum(plan * cost).item();
    double gap = transport - exact;
    REQUIRE(gap >= -1e-9);  // no coupling beats the exact OT cost
    REQUIRE(gap < previous_gap);
    previous_gap = gap;
  }
  REQUIRE(previous_gap < 1e-2 * exact);
}

TEST_CASE("sinkhorn coupling: sampling from the plan and row argmax", "[couplings]") {
  Generator g(11);
  const int64_t n = 32;
  // x0 on a unit grid and x1 a shuffled, slightly perturbed copy: a clear OT permutation whose
  // rivals cost at least 1 more, far above reg.
  std::vector<double> grid;
  for (int64_t i = 0; i < n; ++i) grid.insert(grid.end(), {double(i % 8), double(i / 8)});
  Tensor x0 = from_vector(grid, {n, 2}, DType::f64);
  std::vector<int64_t> shuffle(n);
  for (int64_t i = 0; i < n; ++i) shuffle[i] = (i * 13 + 7) % n;
  Tensor x1 = index_select(x0, 0, from_vector(shuffle, {n})) + randn({n, 2}, g, DType::f64) * 0.01;
  std::vector<int64_t> perm = ExactOTCoupling::assignment(x0, x1);
  Tensor expected = index_select(x1, 0, from_vector(perm, {n}));
  require_close(expected, x0, 0, 0.1, "the OT permutation undoes the shuffle");

  // With a small reg the plan is nearly the OT permutation, so both pairings recover it.
  const double reg = 0.02;
  SinkhornCoupling argmax_pairs(reg, 200, PlanPairing::RowArgmax);
  CoupledBatch a = argmax_pairs.couple(x0, x1, g);
  REQUIRE(a.x0.same(x0));
  require_close(a.x1, expected, 0, 0, "row argmax = OT permutation");

  SinkhornCoupling sampled(reg, 200);
  CoupledBatch s = sampled.couple(x0, x1, g);
  REQUIRE(s.x0.shape() == x0.shape());
  std::vector<double> ev = expected.to_vector<double>();
  // Every drawn pair is an OT pair: find each sampled x0 row and check its partner.
  auto sx0 = s.x0.to_vector<double>(), sx1 = s.x1.to_vector<double>(), vx0 = x0.to_vector<double>();
  for (int64_t k = 0; k < n; ++k) {
    int64_t row = -1;
    for (int64_t i = 0; i < n; ++i) {
      if (vx0[2 * i] == sx0[2 * k] && vx0[2 * i + 1] == sx0[2 * k + 1]) row = i;
    }
    REQUIRE(row >= 0);
    REQUIRE(sx1[2 * k] == ev[2 * row]);
    REQUIRE(sx1[2 * k + 1] == ev[2 * row + 1]);
  }

  // Sampled pairs follow the plan's mass: a 2 x 2 plan with known weights.
  Tensor plan = from_vector(std::vector<double>{0.1, 0.2, 0.0, 0.7}, {2, 2}, DType::f64);
  IndexPairs p = sample_plan(plan, 20000, g);
  auto rows = p.rows.to_vector<int64_t>(), cols = p.cols.to_vector<int64_t>();
  std::vector<double> freq(4, 0);
  for (size_t k = 0; k < rows.size(); ++k) freq[rows[k] * 2 + cols[k]] += 1.0 / rows.size();
  REQUIRE(freq[0] == Approx(0.1).margin(0.015));
  REQUIRE(freq[1] == Approx(0.2).margin(0.015));
  REQUIRE(freq[2] == 0.0);
  REQUIRE(freq[3] == Approx(0.7).margin(0.015));
}

TEST_CASE("schrodinger bridge: noise variance, u_t = d/dt x_t, coupling reg", "[couplings]") {
  Generator g(12);
  const double sigma = 0.5;
  SchrodingerBridgePath path(sigma, g);

  // x_t - mu_t = sigma sqrt(t (1 - t)) eps: variance sigma^2 t (1 - t) per coordinate.
  const int64_t n = 20000;
  Tensor x0 = randn({n, 2}, g, DType::f64), x1 = randn({n, 2}, g, DType::f64) + 3.0;
  for (double tv : {0.3, 0.5}) {
    Tensor t = full({n}, tv, DType::f64);
    PathSample s = path.sample(x0, x1, t);
    Tensor dev = s.x_t - (x1 * tv + x0 * (1 - tv));
    const double want = sigma * sigma * tv * (1 - tv);
    REQUIRE(mean(dev).item() == Approx(0).margin(4 * std::sqrt(want / (2 * n))));
    REQUIRE(var(dev).item() == Approx(want).epsilon(0.03));
  }

  // With the noise held fixed the path is smooth in t and u_t is its derivative.
  Tensor a = randn({6, 3}, g, DType::f64), b = randn({6, 3}, g, DType::f64), eps = randn({6, 3}, g, DType::f64);
  Tensor t = uniform({6}, 0.1, 0.9, g, DType::f64);
  PathSample s = path.sample_with_noise(a, b, t, eps);
  auto f = [&](const std::vector<Tensor>& in) {
    return std::vector<Tensor>{path.sample_with_noise(a, b, in[0], eps).x_t};
  };
  JvpResult r = jvp(f, {t}, {ones_like(t)});
  require_close(r.tangents[0], s.u_t, 1e-6, 1e-6, "jvp along t = u_t (up to the 1e-8 guard)");
  const double h = 1e-6;
  Tensor fd = (path.sample_with_noise(a, b, t + h, eps).x_t - path.sample_with_noise(a, b, t - h, eps).x_t) / (2 * h);
  require_close(fd, s.u_t, 1e-6, 1e-6, "central difference = u_t");
  // The endpoints are exact and the guard keeps u_t finite there.
  PathSample s0 = path.sample_with_noise(a, b, zeros({6}, DType::f64), eps);
  require_close(s0.x_t, a, 0, 0, "t = 0");
  require_close(s0.u_t, b - a, 0, 1e-15, "u at t = 0");

  SchrodingerBridgeCoupling sb(sigma);
  REQUIRE(sb.sigma() == sigma);
  CoupledBatch c = sb.couple(a, b, g);
  REQUIRE(c.x0.shape() == a.shape());
  REQUIRE(std::dynamic_pointer_cast<SchrodingerBridgeCoupling>(make_coupling("sb", {{"sigma", 0.3}}))->sigma() == 0.3);
}

TEST_CASE("couplings: factory and input checks", "[couplings]") {
  for (const auto& name : coupling_names()) REQUIRE(make_coupling(name)->name() == name);
  REQUIRE_THROWS_WITH(make_coupling("ot"),
                      Contains("unknown coupling 'ot'") && Contains("independent, exact_ot, sinkhorn, sb"));
  REQUIRE_THROWS_WITH(make_coupling("sinkhorn", {{"sigma", 1}}),
                      Contains("reg, iterations, argmax") && Contains("'sigma'"));
  REQUIRE_THROWS_WITH(make_coupling("sb", {{"iterations", 2.5}}), Contains("positive integer"));
  REQUIRE_THROWS_WITH(SinkhornCoupling(0.0), Contains("reg must be positive"));
  Generator g(13);
  Tensor x = zeros({4, 2}, DType::f64);
  REQUIRE_THROWS_WITH(make_coupling("exact_ot")->couple(x, zeros({5, 2}, DType::f64), g), Contains("[4,2] and [5,2]"));
  REQUIRE_THROWS_WITH(make_coupling("independent")->couple(x, zeros({4, 2}), g), Contains("share dtype"));
  // f32 batches come back f32 on their device.
  CoupledBatch c = make_coupling("exact_ot")->couple(randn({16, 2}, g), randn({16, 2}, g), g);
  REQUIRE(c.x1.dtype() == DType::f32);
}

TEST_CASE("couplings on CUDA match the CPU", "[couplings][cuda]") {
  if (!cuda_available()) return;  // run with --cuda-only "[cuda]", which reports a skip without a GPU
  Generator g(14);
  Tensor x0 = randn({64, 2}, g), x1 = randn({64, 2}, g) + 1.0;
  Device cuda = Device::cuda();
  REQUIRE(ExactOTCoupling::assignment(x0.to(cuda), x1.to(cuda)) == ExactOTCoupling::assignment(x0, x1));
  Tensor cost = pairwise_sq_distances(x0, x1);
  Tensor plan_cpu = sinkhorn_plan(cost, 0.5, 100), plan_gpu = sinkhorn_plan(cost.to(cuda), 0.5, 100);
  REQUIRE(max_abs_diff(plan_gpu.to(Device::cpu()), plan_cpu) < 1e-6);
  Generator ga(15), gb(15);
  CoupledBatch a = SinkhornCoupling(0.5, 100).couple(x0, x1, ga);
  CoupledBatch b = SinkhornCoupling(0.5, 100).couple(x0.to(cuda), x1.to(cuda), gb);
  REQUIRE(b.x1.device() == cuda);
  REQUIRE(max_abs_diff(b.x0.to(Device::cpu()), a.x0) < 1e-6);
}

}  // namespace
}  // namespace dualflow::testing
