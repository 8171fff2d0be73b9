// The exact linear assignment solver (see assignment.h).
#include "train/assignment.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "engine/error.h"

namespace dualflow {
//
// Shortest augmenting paths (Jonker and Volgenant's method, of the Hungarian family) with dual
// potentials u (rows) and v (columns) kept feasible throughout: every reduced cost
// C_ij - u_i - v_j is >= 0 and the assigned pairs are tight (= 0), so the partial assignment is
// optimal for its size at every step and the complete one is optimal (up to the rounding of the
// potentials, a few ulps of the costs; integer costs come out exactly optimal). Each free row is
// added by one Dijkstra search in reduced costs for the nearest free column; every row a search
// reaches costs one pass over its cost row, so the work is n times the rows the searches reach.
//
// Searches stay short only when the potentials start close to optimal, and OT minibatches are the
// hard case for a cold start: with noise on one side and data elsewhere, column reduction leaves
// most rows free and each search crosses much of the batch (2-D points, n = 1024: some 400 rows
// per search). So a level of size n > kColdStartSize starts from two half-size problems, the
// even rows with the even columns and the odd rows with the odd columns, each solved the same way.
// Each half's row potentials extend to every column by the c-transform v_j = min_a (C_aj - u_a),
// and the level starts from the average of the two extensions. A half sample over-represents some
// regions and under-represents others, which skews its potentials at large scale; the two halves
// are complementary, so their skews are opposite and the average cancels most of it. With one
// half alone, the last few dozen searches each reach nearly every row; with the average, the
// searches at n = 1024 reach about 25 rows each, and the warm start costs a few O(n^2) passes.
//
// The inner loops run over contiguous rows with the vector extensions of GCC and Clang: two
// doubles per operation everywhere (SSE2, NEON) and four where the CPU has AVX2, chosen at run
// time. Both widths do the same arithmetic in the same order and break ties by the lowest index,
// so they return the same assignment.

namespace {

// Levels up to this size start cold: column reduction, no half problems.
constexpr int64_t kColdStartSize = 64;

// Costs beyond this magnitude could overflow when a few of them are added in reduced costs.
constexpr double kMaxCostMagnitude = 1e300;

// Only code inlined into the AVX2 entry point (solve_level_avx2) is compiled for AVX2, so the
// solver's members and helpers are all forced inline.
#define DUALFLOW_ALWAYS_INLINE [[gnu::always_inline]] inline

// W doubles, and W 64-bit lane masks or indices, as one vector (unaligned, may alias the arrays).
template <int W>
struct Lanes;
template <>
struct Lanes<2> {
  typedef double F __attribute__((vector_size(16), aligned(8), may_alias));
  typedef int64_t I __attribute__((vector_size(16), aligned(8), may_alias));
};
template <>
struct Lanes<4> {
  typedef double F __attribute__((vector_size(32), aligned(8), may_alias));
  typedef int64_t I __attribute__((vector_size(32), aligned(8), may_alias));
};

template <int W>
DUALFLOW_ALWAYS_INLINE const typename Lanes<W>::F& lanes_at(const double* p) {
  return *reinterpret_cast<const typename Lanes<W>::F*>(p);
}
template <int W>
DUALFLOW_ALWAYS_INLINE typename Lanes<W>::F& lanes_at(double* p) {
  return *reinterpret_cast<typename Lanes<W>::F*>(p);
}
template <int W>
DUALFLOW_ALWAYS_INLINE typename Lanes<W>::I& lanes_at(int64_t* p) {
  return *reinterpret_cast<typename Lanes<W>::I*>(p);
}

// The half problems' row potentials that seed a level: rows 0, 2, 4, ... and rows 1, 3, 5, ...
struct HalfProblemPotentials {
  std::vector<double> even_rows, odd_rows;
};

// One level: an n x n row-major cost matrix, solved from a cold start or from its half problems.
// Every member is inlined into the one entry point per vector width, so that the AVX2 entry
// point compiles all of it for AVX2.
template <int W>
class ShortestAugmentingPaths {
  using F = typename Lanes<W>::F;
  using I = typename Lanes<W>::I;
  static constexpr double inf = std::numeric_limits<double>::infinity();

 public:
  DUALFLOW_ALWAYS_INLINE ShortestAugmentingPaths(const double* cost, int64_t n)
      : cost_(cost),
        n_(n),
        u_(n, 0.0),
        v_(n, 0.0),
        col_of_row_(n, -1),
        row_of_col_(n, -1),
        dist_(n, inf),
        v_unsettled_(n),
        settled_dist_(n),
        free_penalty_(n),
        pred_(n),
        settled_cols_(n) {}

  DUALFLOW_ALWAYS_INLINE AssignmentSolution solve(const HalfProblemPotentials* halves) {
    if (halves) {
      start_from_halves(*halves);
    } else {
      start_cold();
    }
    for (int64_t j = 0; j < n_; ++j) {
      v_unsettled_[j] = v_[j];
      free_penalty_[j] = row_of_col_[j] < 0 ? 0.0 : inf;
    }
    for (int64_t row = 0; row < n_; ++row) {
      if (col_of_row_[row] < 0) augment_from(row);
    }
    return {std::move(col_of_row_), std::move(u_), std::move(v_)};
  }

 private:
  // Column reduction: v_j = min_i C_ij with u = 0 is feasible and makes each column's cheapest
  // entry tight, so every row that is the cheapest of some column starts out assigned.
  DUALFLOW_ALWAYS_INLINE void start_cold() {
    std::vector<int64_t> argmin_row(n_, 0);
    for (int64_t j = 0; j < n_; ++j) v_[j] = inf;
    for (int64_t i = 0; i < n_; ++i) {
      const double* row = cost_ + i * n_;
      for (int64_t j = 0; j < n_; ++j) {
        if (row[j] < v_[j]) {
          v_[j] = row[j];
          argmin_row[j] = i;
        }
      }
    }
    for (int64_t j = 0; j < n_; ++j) {
      if (col_of_row_[argmin_row[j]] < 0) assign(argmin_row[j], j);
    }
    for (int64_t i = 0; i < n_; ++i) u_[i] = smallest_reduced_cost(i).value;
  }

  // v from the average of the halves' c-transforms (aligned by their mean difference, since
  // potentials are defined up to a constant), then u_i = min_j (C_ij - v_j), which makes the
  // duals feasible and each row tight on its cheapest column; a row takes that column if free.
  DUALFLOW_ALWAYS_INLINE void start_from_halves(const HalfProblemPotentials& halves) {
    std::vector<double> v_odd(n_);
    c_transform_of_rows(halves.even_rows, 0, v_.data());
    c_transform_of_rows(halves.odd_rows, 1, v_odd.data());
    double shift = 0;
    for (int64_t j = 0; j < n_; ++j) shift += v_[j] - v_odd[j];
    shift /= double(n_);
    for (int64_t j = 0; j < n_; ++j) v_[j] = 0.5 * (v_[j] + v_odd[j] + shift);
    for (int64_t i = 0; i < n_; ++i) {
      const RowMinimum m = smallest_reduced_cost(i);
      u_[i] = m.value;
      if (row_of_col_[m.col] < 0) assign(i, m.col);
    }
  }

  // v_j = min over rows first, first + 2, first + 4, ... of (C_ij - u_i), u_i read in that order.
  DUALFLOW_ALWAYS_INLINE void c_transform_of_rows(const std::vector<double>& row_potential, int64_t first,
                                                  double* v) const {
    for (int64_t j = 0; j < n_; ++j) v[j] = inf;
    for (size_t a = 0; a < row_potential.size(); ++a) {
      const double* row = cost_ + (2 * int64_t(a) + first) * n_;
      const double ua = row_potential[a];
      int64_t j = 0;
      for (; j + W <= n_; j += W) {
        const F r = lanes_at<W>(row + j) - ua;
        F& vj = lanes_at<W>(v + j);
        vj = r < vj ? r : vj;
      }
      for (; j < n_; ++j) v[j] = std::min(v[j], row[j] - ua);
    }
  }

  struct RowMinimum {
    double value;
    int64_t col;  // the lowest column attaining it
  };
  DUALFLOW_ALWAYS_INLINE RowMinimum smallest_reduced_cost(int64_t i) const {
    const double* row = cost_ + i * n_;
    const double* v = v_.data();
    F low = F{} + inf;
    I low_col = I{}, col = I{};
    for (int k = 0; k < W; ++k) col[k] = k;
    int64_t j = 0;
    for (; j + W <= n_; j += W, col += W) {
      const F r = lanes_at<W>(row + j) - lanes_at<W>(v + j);
      const auto lower = r < low;
      low = lower ? r : low;
      low_col = lower ? col : low_col;
    }
    RowMinimum m{inf, -1};
    for (int k = 0; k < W; ++k) {
      if (low[k] < m.value || (low[k] == m.value && low_col[k] < m.col)) m = {low[k], low_col[k]};
    }
    for (; j < n_; ++j) {
      if (row[j] - v[j] < m.value) m = {row[j] - v[j], j};
    }
    return m;
  }

  DUALFLOW_ALWAYS_INLINE void assign(int64_t row, int64_t col) {
    col_of_row_[row] = col;
    row_of_col_[col] = row;
  }

  // The minimum tentative distance over unsettled columns, and over free unsettled columns.
  struct Minima {
    double all, free;
  };

  // Dijkstra's relaxation through row i, reached at distance row_dist: every unsettled column j
  // gets dist_j = min(dist_j, row_dist + C_ij - u_i - v_j). Settled columns carry v = -inf in
  // v_unsettled_ and dist = +inf, so they come out as +inf and never change; free columns carry a
  // penalty of 0 and assigned ones +inf, so one pass also gives the nearest free column.
  DUALFLOW_ALWAYS_INLINE Minima relax(int64_t i, double row_dist) {
    const double* row = cost_ + i * n_;
    const double* v = v_unsettled_.data();
    const double* penalty = free_penalty_.data();
    double* dist = dist_.data();
    int64_t* pred = pred_.data();
    const double offset = row_dist - u_[i];
    const I row_index = I{} + i;
    // Two vectors per step with their own running minima, to overlap the dependency chains.
    F low0 = F{} + inf, low1 = low0, low_free0 = low0, low_free1 = low0;
    int64_t j = 0;
    for (; j + 2 * W <= n_; j += 2 * W) {
      const F r0 = offset + lanes_at<W>(row + j) - lanes_at<W>(v + j);
      const F r1 = offset + lanes_at<W>(row + j + W) - lanes_at<W>(v + j + W);
      F d0 = lanes_at<W>(dist + j), d1 = lanes_at<W>(dist + j + W);
      const auto closer0 = r0 < d0, closer1 = r1 < d1;
      d0 = closer0 ? r0 : d0;
      d1 = closer1 ? r1 : d1;
      lanes_at<W>(dist + j) = d0;
      lanes_at<W>(dist + j + W) = d1;
      lanes_at<W>(pred + j) = closer0 ? row_index : lanes_at<W>(pred + j);
      lanes_at<W>(pred + j + W) = closer1 ? row_index : lanes_at<W>(pred + j + W);
      low0 = d0 < low0 ? d0 : low0;
      low1 = d1 < low1 ? d1 : low1;
      const F e0 = d0 + lanes_at<W>(penalty + j), e1 = d1 + lanes_at<W>(penalty + j + W);
      low_free0 = e0 < low_free0 ? e0 : low_free0;
      low_free1 = e1 < low_free1 ? e1 : low_free1;
    }
    Minima m{inf, inf};
    for (int k = 0; k < W; ++k) {
      m.all = std::min({m.all, low0[k], low1[k]});
      m.free = std::min({m.free, low_free0[k], low_free1[k]});
    }
    for (; j < n_; ++j) {
      const double r = offset + row[j] - v[j];
      if (r < dist[j]) {
        dist[j] = r;
        pred[j] = i;
      }
      m.all = std::min(m.all, dist[j]);
      m.free = std::min(m.free, dist[j] + penalty[j]);
    }
    return m;
  }

  // The lowest column at distance m.all, a free one if any free column is that near (with
  // integer or repeated costs many columns tie, and taking a free one ends the search at once).
  DUALFLOW_ALWAYS_INLINE int64_t nearest_column(const Minima& m) const {
    return m.free == m.all ? first_at_distance<true>(m.all) : first_at_distance<false>(m.all);
  }

  // The first j with dist_j (+ free_penalty_j) == d, which exists; 4 W columns per test.
  template <bool free_only>
  DUALFLOW_ALWAYS_INLINE int64_t first_at_distance(double d) const {
    const double* dist = dist_.data();
    const double* penalty = free_penalty_.data();
    const F target = F{} + d;
    int64_t j = 0;
    for (; j + 4 * W <= n_; j += 4 * W) {
      F key0 = lanes_at<W>(dist + j), key1 = lanes_at<W>(dist + j + W);
      F key2 = lanes_at<W>(dist + j + 2 * W), key3 = lanes_at<W>(dist + j + 3 * W);
      if constexpr (free_only) {
        key0 += lanes_at<W>(penalty + j);
        key1 += lanes_at<W>(penalty + j + W);
        key2 += lanes_at<W>(penalty + j + 2 * W);
        key3 += lanes_at<W>(penalty + j + 3 * W);
      }
      const auto hit = (key0 == target) | (key1 == target) | (key2 == target) | (key3 == target);
      int64_t any = 0;
      for (int k = 0; k < W; ++k) any |= hit[k];
      if (any) break;
    }
    while ((free_only ? dist[j] + penalty[j] : dist[j]) != d) ++j;
    return j;
  }

  // One Dijkstra search from the free row `start` to the nearest free column in reduced costs,
  // then the potential update that keeps the duals feasible and makes the path tight, then the
  // path's assignments flipped. Columns settle in order of distance; a settled assigned column
  // leads on to its row.
  DUALFLOW_ALWAYS_INLINE void augment_from(int64_t start) {
    std::fill(dist_.begin(), dist_.end(), inf);
    int64_t num_settled = 0, row = start, sink = -1;
    double row_dist = 0, nearest = 0;
    while (sink < 0) {
      const Minima m = relax(row, row_dist);
      const int64_t col = nearest_column(m);
      nearest = m.all;
      settled_dist_[col] = nearest;
      dist_[col] = inf;
      v_unsettled_[col] = -inf;
      settled_cols_[num_settled++] = col;
      if (row_of_col_[col] < 0) {
        sink = col;
      } else {
        row = row_of_col_[col];
        row_dist = nearest;
      }
    }
    // Every settled column is nearer than the sink: lowering its v (and raising its row's u) by
    // the difference keeps all reduced costs >= 0, the assigned pairs tight, and the path tight.
    u_[start] += nearest;
    for (int64_t k = 0; k < num_settled; ++k) {
      const int64_t col = settled_cols_[k];
      const double slack = nearest - settled_dist_[col];
      v_[col] -= slack;
      v_unsettled_[col] = v_[col];
      if (row_of_col_[col] >= 0) u_[row_of_col_[col]] += slack;
    }
    free_penalty_[sink] = inf;
    for (int64_t col = sink;;) {
      const int64_t r = pred_[col];
      row_of_col_[col] = r;
      std::swap(col_of_row_[r], col);
      if (r == start) break;
    }
  }

  const double* cost_;
  int64_t n_;
  std::vector<double> u_, v_;
  std::vector<int64_t> col_of_row_, row_of_col_;
  // Per search: tentative distances of unsettled columns (+inf once settled), v with -inf on the
  // settled columns, the distance each column settled at, 0 (free) or +inf (assigned) per column,
  // the row each column was last reached from, and the settled columns in order.
  std::vector<double> dist_, v_unsettled_, settled_dist_, free_penalty_;
  std::vector<int64_t> pred_, settled_cols_;
};

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
__attribute__((target("avx2"))) AssignmentSolution solve_level_avx2(const double* cost, int64_t n,
                                                                    const HalfProblemPotentials* halves) {
  return ShortestAugmentingPaths<4>(cost, n).solve(halves);
}
#define DUALFLOW_ASSIGNMENT_AVX2 1
#endif

// One level at the widest vector width this CPU runs.
AssignmentSolution solve_level(const double* cost, int64_t n, const HalfProblemPotentials* halves) {
#ifdef DUALFLOW_ASSIGNMENT_AVX2
  if (__builtin_cpu_supports("avx2")) return solve_level_avx2(cost, n, halves);
#endif
  return ShortestAugmentingPaths<2>(cost, n).solve(halves);
}
#undef DUALFLOW_ASSIGNMENT_AVX2
#undef DUALFLOW_ALWAYS_INLINE

// A level after its two half problems (copied out of its matrix and solved the same way), or
// cold when small.
AssignmentSolution solve_from_halves(const double* cost, int64_t n) {
  if (n <= kColdStartSize) return solve_level(cost, n, nullptr);
  const int64_t m = n / 2;
  std::vector<double> half(m * m);
  HalfProblemPotentials halves;
  for (int64_t parity : {0, 1}) {
    for (int64_t a = 0; a < m; ++a) {
      const double* row = cost + (2 * a + parity) * n + parity;
      for (int64_t b = 0; b < m; ++b) half[a * m + b] = row[2 * b];
    }
    (parity == 0 ? halves.even_rows : halves.odd_rows) = solve_from_halves(half.data(), m).row_potential;
  }
  return solve_level(cost, n, &halves);
}

}  // namespace

AssignmentSolution solve_dense_assignment(const double* cost, int64_t n) {
  for (int64_t k = 0; k < n * n; ++k) {
    DF_CHECK(std::abs(cost[k]) <= kMaxCostMagnitude,
             "solve_assignment: costs must be finite and at most {} in magnitude, given {}", kMaxCostMagnitude,
             cost[k]);
  }
  return solve_from_halves(cost, n);
}

AssignmentSolution solve_assignment_with_potentials(const std::vector<double>& cost, int64_t n) {
  DF_CHECK(n >= 0 && int64_t(cost.size()) == n * n, "solve_assignment: cost must hold n * n = {} values, given {}",
           n * n, cost.size());
  return solve_dense_assignment(cost.data(), n);
}

std::vector<int64_t> solve_assignment(const std::vector<double>& cost, int64_t n) {
  return solve_assignment_with_potentials(cost, n).col_of_row;
}

}  // namespace dualflow
