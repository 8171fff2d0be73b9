// Probability paths of Flow Matching: x_0 ~ N(0, I) noise, x_1 data, t from 0 to 1.
// Affine paths x_t = alpha_t x_1 + sigma_t x_0 over a scheduler (CondOT, VP, VE, cosine,
// polynomial) with the conditional velocity u_t = d_alpha_t x_1 + d_sigma_t x_0 and the
// conversions between velocity, x_1- and epsilon-(x_0-)prediction; a curved 2-D path as the
// example of a user-defined path; a factory from config names.
// Everything is written with engine ops, so it runs on either device and is differentiable
// (in particular along t, which the tests use: u_t is checked against jvp of x_t).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/random.h"
#include "engine/tensor.h"

namespace dualflow {

// ---- schedulers -----------------------------------------------------------------------------

struct SchedulerValues {
  Tensor alpha, sigma, d_alpha, d_sigma;  // each shaped like t
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // (alpha_t, sigma_t) and their time derivatives, elementwise over a time tensor of any shape.
  virtual SchedulerValues operator()(const Tensor& t) const = 0;
  virtual std::string name() const = 0;
};

// Lipman et al.: mu_t = t x_1, sigma_t = 1 - (1 - sigma_min) t.
class CondOTScheduler final : public Scheduler {
 public:
  explicit CondOTScheduler(double sigma_min = 0.0);
  SchedulerValues operator()(const Tensor& t) const override;
  std::string name() const override { return "condot"; }
  double sigma_min() const { return sigma_min_; }

 private:
  double sigma_min_;
};

// The Flow Matching paper's variance-preserving path: alpha_t = exp(-T(1 - t) / 2),
// sigma_t = sqrt(1 - alpha_t^2), T(s) = s beta_min + s^2 / 2 (beta_max - beta_min).
// alpha_0 = exp(-T(1)/2) is small but not zero (about 6.6e-3 with the defaults).
class VPScheduler final : public Scheduler {
 public:
  explicit VPScheduler(double beta_min = 0.1, double beta_max = 20.0);
  SchedulerValues operator()(const Tensor& t) const override;
  std::string name() const override { return "vp"; }

 private:
  double beta_min_, beta_max_;
};

// The paper's variance-exploding path: alpha_t = 1, sigma_t = sigma_{1-t} with the geometric
// noise levels sigma_s = sigma_min (sigma_max / sigma_min)^s. So x_0 enters scaled by sigma_max
// at t = 0 (the source is N(x_1, sigma_max^2 I), not N(0, I)) and x_t -> x_1 + sigma_min x_0.
class VEScheduler final : public Scheduler {
 public:
  explicit VEScheduler(double sigma_min = 0.01, double sigma_max = 50.0);
  SchedulerValues operator()(const Tensor& t) const override;
  std::string name() const override { return "ve"; }

 private:
  double sigma_min_, sigma_max_;
};

// alpha_t = sin(pi t / 2), sigma_t = cos(pi t / 2).
class CosineScheduler final : public Scheduler {
 public:
  SchedulerValues operator()(const Tensor& t) const override;
  std::string name() const override { return "cosine"; }
};

// alpha_t = t^n, sigma_t = 1 - t^n (n = 1 is CondOT without sigma_min).
class PolynomialScheduler final : public Scheduler {
 public:
  explicit PolynomialScheduler(double n = 2.0);
  SchedulerValues operator()(const Tensor& t) const override;
  std::string name() const override { return "polynomial"; }

 private:
  double n_;
};

// Builds a scheduler from its config name and parameters: "condot" {sigma_min},
// "vp" {beta_min, beta_max}, "ve" {sigma_min, sigma_max}, "cosine" {}, "polynomial" {n}.
// Unknown names or parameters are refused with the accepted ones listed.
using PathParams = std::map<std::string, double>;
std::shared_ptr<Scheduler> make_scheduler(const std::string& name, const PathParams& params = {});
std::vector<std::string> scheduler_names();

// ---- paths ----------------------------------------------------------------------------------

struct PathSample {
  Tensor x_t;  // the point on the conditional path
  Tensor u_t;  // its conditional velocity d/dt x_t (the regression target)
};

// What a training loop needs of a path. Subclass it to add a path of your own (see CurvedPath2D).
class ProbabilityPath {
 public:
  virtual ~ProbabilityPath() = default;
  // x0, x1: [N, ...] of one dtype and device; t: [N] of that dtype and device, broadcast over
  // the sample dims.
  virtual PathSample sample(const Tensor& x0, const Tensor& x1, const Tensor& t) const = 0;
  virtual std::string name() const = 0;
};

// A per-sample scalar s [N] reshaped to [N, 1, ..., 1] with as many dims as `like` [N, ...], so
// that it broadcasts over each sample's entries.
Tensor per_sample(const Tensor& s, const Tensor& like);

// Samples [start, start + count) of a batch tensor [N, ...]; an undefined tensor (an absent
// optional input such as labels) stays undefined.
Tensor sample_rows(const Tensor& batch, int64_t start, int64_t count);

// Checks that (x0, x1, t) fit the path interface and returns t reshaped to [N, 1, ..., 1] so
// that it broadcasts against x0. `who` names the caller in errors.
Tensor broadcast_time(const char* who, const Tensor& x0, const Tensor& x1, const Tensor& t);

class AffinePath final : public ProbabilityPath {
 public:
  explicit AffinePath(std::shared_ptr<const Scheduler> scheduler);
  PathSample sample(const Tensor& x0, const Tensor& x1, const Tensor& t) const override;
  std::string name() const override { return "affine(" + scheduler_->name() + ")"; }
  const Scheduler& scheduler() const { return *scheduler_; }

  // Conversions between what a network may predict at (x_t, t): the velocity, the data point
  // x_1 ("target") or the noise x_0 ("epsilon"). Each solves x_t = alpha x_1 + sigma x_0 and
  // u = d_alpha x_1 + d_sigma x_0 for the missing one, so each divides by alpha, sigma or
  // (sigma d_alpha - alpha d_sigma) and is singular where that vanishes (e.g. sigma at t = 1
  // without sigma_min). t: [N] as in sample().
  Tensor target_to_velocity(const Tensor& x1, const Tensor& x_t, const Tensor& t) const;
  Tensor epsilon_to_velocity(const Tensor& eps, const Tensor& x_t, const Tensor& t) const;
  Tensor velocity_to_target(const Tensor& velocity, const Tensor& x_t, const Tensor& t) const;
  Tensor velocity_to_epsilon(const Tensor& velocity, const Tensor& x_t, const Tensor& t) const;
  Tensor target_to_epsilon(const Tensor& x1, const Tensor& x_t, const Tensor& t) const;
  Tensor epsilon_to_target(const Tensor& eps, const Tensor& x_t, const Tensor& t) const;

 private:
  SchedulerValues values_like(const char* who, const Tensor& x, const Tensor& t) const;
  std::shared_ptr<const Scheduler> scheduler_;
};

// Affine path from a scheduler config name (see make_scheduler).
std::shared_ptr<AffinePath> make_affine_path(const std::string& scheduler, const PathParams& params = {});

// The user-defined-path example: a curved 2-D path that bends sideways by up to a / 4,
//   x_t = (1 - t) x_0 + t x_1 + a t (1 - t) n,  n = R_{+90} (x_1 - x_0) / |x_1 - x_0|,
//   u_t = x_1 - x_0 + a (1 - 2t) n.
// Same endpoints as CondOT; n is constant along the path, which is why u_t is that simple.
// x0, x1: [N, 2]. Where x_1 = x_0 the direction is undefined and the bend is dropped.
class CurvedPath2D final : public ProbabilityPath {
 public:
  explicit CurvedPath2D(double a = 1.0) : a_(a) {}
  PathSample sample(const Tensor& x0, const Tensor& x1, const Tensor& t) const override;
  std::string name() const override { return "curved2d"; }

 private:
  double a_;
};

// The Brownian-bridge path of Schrödinger-bridge CFM (Tong et al.):
//   x_t = t x_1 + (1 - t) x_0 + sigma sqrt(t (1 - t)) eps,  eps ~ N(0, I),
//   u_t = x_1 - x_0 + (1 - 2t) / (2 t (1 - t)) (x_t - (t x_1 + (1 - t) x_0)).
// For fixed eps, u_t is exactly d/dt x_t. The denominator carries a 1e-8 guard (as torchcfm's)
// so that t = 0 and t = 1 give u_t = x_1 - x_0 instead of 0 / 0.
class SchrodingerBridgePath final : public ProbabilityPath {
 public:
  // eps is drawn from `gen`, which must outlive the path.
  SchrodingerBridgePath(double sigma, Generator& gen);
  PathSample sample(const Tensor& x0, const Tensor& x1, const Tensor& t) const override;
  // The same with the noise given: what tests and reproducible callers use.
  PathSample sample_with_noise(const Tensor& x0, const Tensor& x1, const Tensor& t, const Tensor& eps) const;
  std::string name() const override { return "schrodinger_bridge"; }
  double sigma() const { return sigma_; }

 private:
  double sigma_;
  Generator* gen_;
};

}  // namespace dualflow
