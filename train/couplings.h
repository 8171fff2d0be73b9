// Minibatch couplings for Flow Matching: given noise x0 [N, ...] and data x1 [N, ...], re-pair
// them before sampling the path. Independent (as drawn), exact OT on the squared Euclidean cost
// (the assignment solver of assignment.h, on the CPU), entropic OT by log-domain Sinkhorn
// (engine ops, either device), and Schrödinger-bridge CFM (Sinkhorn with reg = 2 sigma^2, whose
// Brownian-bridge path is in paths.h), with a factory by name.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"
#include "train/assignment.h"
#include "train/paths.h"

namespace dualflow {

// ---- building blocks ------------------------------------------------------------------------

// ||a_i - b_j||^2 over rows flattened to vectors: a [N, ...], b [M, ...] -> [N, M], computed as
// ||a||^2 + ||b||^2 - 2 a b^T (one GEMM) in the inputs' dtype and device, clamped at 0 against
// rounding.
Tensor pairwise_sq_distances(const Tensor& a, const Tensor& b);

// Entropic OT plan between uniform weights (1/N rows, 1/M columns) for cost [N, M]:
// P = exp((f_i + g_j - C_ij) / reg), with the potentials from `iterations` log-domain Sinkhorn
// sweeps (each a logsumexp over rows, then over columns). Fixed sweeps, no convergence test,
// so the loop never waits on the device. After the last sweep the column sums are exact and the
// row sums converge with the iterations. Small reg needs more sweeps (convergence slows roughly
// like 1 / reg).
Tensor sinkhorn_plan(const Tensor& cost, double reg, int64_t iterations);

// `count` (row, column) pairs drawn with replacement from the normalised plan [N, M] as a joint
// distribution (the plan is read on the CPU; the i64 index tensors come back on its device).
struct IndexPairs {
  Tensor rows, cols;  // i64 [count]
};
IndexPairs sample_plan(const Tensor& plan, int64_t count, Generator& gen);

// ---- couplings ------------------------------------------------------------------------------

struct CoupledBatch {
  Tensor x0, x1;
};

class Coupling {
 public:
  virtual ~Coupling() = default;
  // x0, x1: [N, ...] of one shape, dtype and device. Returns N re-paired rows of each.
  virtual CoupledBatch couple(const Tensor& x0, const Tensor& x1, Generator& gen) const = 0;
  virtual std::string name() const = 0;
  // Whether the first argument comes back in its order, row for row (labels riding with it
  // stay with their rows).
  virtual bool keeps_first_in_order() const { return false; }
  // The probability path this coupling's pairs are trained on when the coupling defines one
  // (the Schrödinger bridge draws its noise from `noise`, which must outlive the path); null:
  // the run's own path.
  virtual std::shared_ptr<ProbabilityPath> own_path(Generator& noise) const;
  virtual bool has_own_path() const { return false; }
};

class IndependentCoupling final : public Coupling {
 public:
  CoupledBatch couple(const Tensor& x0, const Tensor& x1, Generator& gen) const override;
  std::string name() const override { return "independent"; }
  bool keeps_first_in_order() const override { return true; }
};

// The minibatch OT coupling: x0 stays in order and x1 is permuted by the exact assignment, so
// the pairing is a bijection and no sample is dropped or repeated.
class ExactOTCoupling final : public Coupling {
 public:
  CoupledBatch couple(const Tensor& x0, const Tensor& x1, Generator& gen) const override;
  std::string name() const override { return "exact_ot"; }
  bool keeps_first_in_order() const override { return true; }
  // The permutation it applies: x1 row perm[i] goes with x0 row i.
  static std::vector<int64_t> assignment(const Tensor& x0, const Tensor& x1);
};

// Entropic OT. SampleFromPlan draws N pairs from the plan with replacement (what torchcfm's
// OTPlanSampler does, so a row of either side may repeat or drop out); RowArgmax keeps every x0
// row and pairs it with the most likely x1 row (no randomness, stays on the device, but two x0
// rows may share an x1 row).
enum class PlanPairing { SampleFromPlan, RowArgmax };

class SinkhornCoupling final : public Coupling {
 public:
  explicit SinkhornCoupling(double reg = 0.05, int64_t iterations = 200,
                            PlanPairing pairing = PlanPairing::SampleFromPlan);
  CoupledBatch couple(const Tensor& x0, const Tensor& x1, Generator& gen) const override;
  std::string name() const override { return "sinkhorn"; }
  double reg() const { return reg_; }

 private:
  double reg_;
  int64_t iterations_;
  PlanPairing pairing_;
};

// SB-CFM's coupling: entropic OT with reg = 2 sigma^2, pairs sampled from the plan.
class SchrodingerBridgeCoupling final : public Coupling {
 public:
  explicit SchrodingerBridgeCoupling(double sigma = 1.0, int64_t iterations = 200);
  CoupledBatch couple(const Tensor& x0, const Tensor& x1, Generator& gen) const override;
  std::string name() const override { return "sb"; }
  std::shared_ptr<ProbabilityPath> own_path(Generator& noise) const override;
  bool has_own_path() const override { return true; }
  double sigma() const { return sigma_; }

 private:
  double sigma_;
  SinkhornCoupling sinkhorn_;
};

// By name: "independent" {}, "exact_ot" {}, "sinkhorn" {reg, iterations, argmax (0 or 1)},
// "sb" {sigma, iterations}. Unknown names or parameters are refused with the accepted ones.
using CouplingParams = std::map<std::string, double>;
std::shared_ptr<Coupling> make_coupling(const std::string& name, const CouplingParams& params = {});
std::vector<std::string> coupling_names();

}  // namespace dualflow
