// Drawing samples from a velocity model: a request (which of the method's samplers, the ODE
// options, guidance, seed, chunking), the one place a request is defaulted from a run spec
// and a command line's choices, and the chunked draw itself.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "train/run_spec.h"
#include "train/solvers.h"

namespace dualflow {

struct VelocityModel;

// The sampler every method offers: integrate the model's velocity ODE.
inline constexpr const char* kOdeSampler = "ode";

// What to draw: `n` samples from fresh noise of `seed` by one of the model's samplers ("ode",
// or a method's own such as "meanflow"). A class-conditional model gets balanced labels
// (grid_labels with 10 columns: row k of a 10-wide grid is class k) and, on the ODE,
// classifier-free guidance of scale `cfg_scale` (1: the conditional model alone).
struct SampleRequest {
  int64_t n = 100;
  std::string sampler = kOdeSampler;
  OdeOptions ode;
  int64_t steps = 0;  // steps of a method's few-step sampler; 0: the method's configured default
  double cfg_scale = 1.0;
  // The times (in the method's own time) where guidance applies, for samplers that take an
  // interval (iMF); [0, 1] for the others.
  double cfg_t_min = 0.0, cfg_t_max = 1.0;
  uint64_t seed = 0;
  int64_t chunk = 0;  // draw at most this many at once (bounds memory); 0: all at once
};

// A command line's choices: empty strings, zeros and a negative cfg keep the run's settings.
struct SampleChoices {
  std::string sampler, solver;
  int64_t n = 0, steps = 0, chunk = 0;
  double rtol = 0, atol = 0, cfg = -1;
  std::vector<double> cfg_interval;  // {t_min, t_max}, or empty
  uint64_t seed = 0;
};
// The request a run's settings and the choices make: the method's default sampler, the run's
// sample.* ODE options, --steps for both the ODE and a few-step sampler, and the run's guidance
// scale (and interval) for class-conditional models sampled by a sampler that takes guidance.
SampleRequest sample_request(const FlowRunSpec& spec, const VelocityModel& model, const SampleChoices& choices);

struct SampledChunk {
  Tensor x;
  int64_t nfe = 0;  // network evaluations per sample (guidance's two branches count once)
};

struct DrawnSamples {
  Tensor x;       // [n, sample_shape...] on the model's device
  Tensor labels;  // i64 [n], undefined for unconditional models
  int64_t nfe = 0;
  std::string how;  // "euler, 50 steps", "MeanFlow, 1 step", ...
};
DrawnSamples draw_samples(const VelocityModel& model, const SampleRequest& request);
// Samples [begin, end) of the request's n only, with the noise and labels they get in the whole
// draw, so that pieces drawn apart (by the processes of a run) make up the one draw.
DrawnSamples draw_samples(const VelocityModel& model, const SampleRequest& request, int64_t begin, int64_t end);
// The request's samples split across the group's processes in contiguous ranges (whole chunks
// when the request has chunks), gathered on rank 0 in order (x on the model's device, the whole
// draw); the other ranks' x and labels stay undefined. nfe is the largest over the processes.
// A group of one draws alone. Without chunks, dopri5's step control spans each rank's share.
DrawnSamples draw_samples(const VelocityModel& model, const SampleRequest& request, class ProcessGroup& group);

// The request drawn `piece` samples at a time into a float32 .npy at `path`, [n, sample
// shape...], so memory is bounded by a piece however large n is; the file appears whole at the
// end (atomically). Each sample gets the noise and label it gets in the whole draw, so the file
// holds what draw_samples(model, request) returns (bit for bit where the solver's steps do not
// depend on the batch: every fixed-step solver). `progress(done, n)` is called after each
// piece. Returns the first `keep` samples with how they were drawn and the NFE.
DrawnSamples draw_samples_to_npy(const VelocityModel& model, const SampleRequest& request, int64_t piece,
                                 const std::string& path, int64_t keep,
                                 const std::function<void(int64_t done, int64_t n)>& progress = {});

// Paths of the request's first k samples (the same noise and, for the ODE sampler, the same
// solver as in the whole draw), as [k, points, sample shape...]: through the model's velocity
// ODE, read at `points` evenly spaced times (a fixed-step solver's states are exact at its grid
// and linear in between); for a method's own few-step sampler (MeanFlow's jumps), the straight
// line from each noise point to its sample. chord_msd: the mean squared distance of the path
// points from the chord between each path's ends (0 for straight paths; what OT couplings and
// reflow shrink).
struct SampleTrajectories {
  Tensor paths;
  double chord_msd = 0;
  std::string how;
};
SampleTrajectories sample_trajectories(const VelocityModel& model, const SampleRequest& request, int64_t k,
                                       int64_t points = 41);

// The picture of a draw: 2-D samples as a density beside as many fresh data points (at most
// 20,000), titled with how they were drawn and their NFE, with `trajectories` [K, T, 2] over
// them when defined; images as a grid of the first 100, 10 a row, each row of a
// class-conditional draw labelled with its class's name.
void save_samples_picture(const std::string& path, const FlowRunSpec& spec, const VelocityModel& model,
                          const DrawnSamples& drawn, const Tensor& trajectories = {});

// The points samples [begin, end) of a draw with `seed` start from, [end - begin, sample
// shape...] on the model's device: the Gaussian's noise (a window of one randn draw, so a piece
// costs its own size) or, for a data-to-data flow, points of the source dataset.
Tensor source_points(const VelocityModel& model, uint64_t seed, int64_t begin, int64_t end);

// i64 [n]: sample i gets class (i / columns) mod classes.
Tensor grid_labels(int64_t n, int64_t classes, int64_t columns, Device device);

}  // namespace dualflow
