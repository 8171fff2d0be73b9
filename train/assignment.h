// The exact linear assignment problem: for a square cost matrix, the permutation of least total
// cost, with the dual potentials that certify it. A CPU algorithm over plain arrays; the
// exact-OT coupling (couplings.h) calls it on the squared distances of a minibatch.
#pragma once
#include <cstdint>
#include <vector>

namespace dualflow {

// The exact linear assignment: for a row-major n x n cost matrix, the column of each row that
// minimises the total cost. Shortest augmenting paths with row/column potentials (the
// Jonker-Volgenant / Hungarian family), O(n^3) worst case, warm-started from two half-size
// problems (see assignment.cpp), single-threaded; about n^2 / 3 doubles of extra memory. Costs
// must be finite, at most 1e300 in magnitude.
std::vector<int64_t> solve_assignment(const std::vector<double>& cost, int64_t n);

// The same with the dual potentials that certify it: row_potential u and col_potential v with
// C_ij - u_i - v_j >= 0 for every pair and = 0 on the assigned pairs (up to rounding), so the
// assignment's cost equals sum(u) + sum(v), a lower bound on the cost of every assignment.
struct AssignmentSolution {
  std::vector<int64_t> col_of_row;
  std::vector<double> row_potential, col_potential;
};
AssignmentSolution solve_assignment_with_potentials(const std::vector<double>& cost, int64_t n);
// The same over a row-major n x n array (no copy into a vector).
AssignmentSolution solve_dense_assignment(const double* cost, int64_t n);

}  // namespace dualflow
