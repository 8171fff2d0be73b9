// Sample requests and the chunked draw (see sampling.h); the method draws each chunk.
#include "train/sampling.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "train/data2d.h"
#include "train/methods/method.h"
#include "train/npy.h"
#include "train/parallel/process_group.h"
#include "train/plots.h"

namespace dualflow {

SampleRequest sample_request(const FlowRunSpec& spec, const VelocityModel& model, const SampleChoices& c) {
  SampleRequest r;
  r.sampler = c.sampler.empty() ? model.method->samplers().front() : c.sampler;
  r.ode = ode_options_with(spec.sample.ode, c.solver, c.steps, c.rtol, c.atol);
  r.steps = c.steps;
  r.n = c.n > 0 ? c.n : spec.sample.n;
  const Method::Guidance guidance =
      model.num_classes > 0 ? model.method->sampler_guidance(r.sampler) : Method::Guidance::None;
  r.cfg_scale = c.cfg >= 0 ? c.cfg : guidance != Method::Guidance::None ? spec.sample.cfg_scale : 1.0;
  if (c.cfg_interval.size() == 2) {
    r.cfg_t_min = c.cfg_interval[0];
    r.cfg_t_max = c.cfg_interval[1];
  } else if (guidance == Method::Guidance::ScaleAndInterval) {
    r.cfg_t_min = spec.sample.cfg_t_min;
    r.cfg_t_max = spec.sample.cfg_t_max;
  }
  r.seed = c.seed;
  r.chunk = c.chunk;
  return r;
}

DrawnSamples draw_samples_to_npy(const VelocityModel& model, const SampleRequest& request, int64_t piece,
                                 const std::string& path, int64_t keep,
                                 const std::function<void(int64_t, int64_t)>& progress) {
  DF_CHECK(piece >= 1, "draw_samples_to_npy: piece must be at least 1, got {}", piece);
  Shape shape = {request.n};
  for (int64_t d : model.sample_shape) shape.push_back(d);
  NpyF32Writer writer(path, shape);
  std::vector<Tensor> kept;
  DrawnSamples first;
  for (int64_t begin = 0; begin < request.n; begin += piece) {
    const int64_t end = std::min(request.n, begin + piece);
    DrawnSamples part = draw_samples(model, request, begin, end);
    writer.append(part.x);
    if (begin < keep) {
      const int64_t rows = std::min(end, keep) - begin;
      kept.push_back(part.x.narrow(0, 0, rows));
      if (part.labels.defined()) first.labels = first.labels.defined() ? cat({first.labels, part.labels.narrow(0, 0, rows)}, 0)
                                                                       : part.labels.narrow(0, 0, rows);
    }
    first.nfe = std::max(first.nfe, part.nfe);
    first.how = part.how;
    if (progress) progress(end, request.n);
  }
  writer.commit();
  if (!kept.empty()) first.x = cat(kept, 0);
  return first;
}

SampleTrajectories sample_trajectories(const VelocityModel& model, const SampleRequest& request, int64_t k,
                                       int64_t points) {
  DF_CHECK(k >= 1 && k <= request.n, "trajectories: k must be 1 to the {} samples drawn, got {}", request.n, k);
  DF_CHECK(points >= 2, "trajectories: points must be at least 2, got {}", points);
  const Device dev = model_device(model);
  const Tensor x0 = source_points(model, request.seed, 0, k);
  const std::vector<double> times = uniform_time_grid(0.0, model.t_end, points - 1);
  SampleTrajectories out;
  std::vector<Tensor> states;
  NoGradGuard no_grad;
  if (request.sampler == kOdeSampler) {
    OdeOptions ode = request.ode;
    ode.save_times = times;
    GuidanceOptions guidance;
    if (model.num_classes > 0) {
      guidance.labels = grid_labels(request.n, model.num_classes, 10, dev).narrow(0, 0, k);
      guidance.scale = request.cfg_scale;
      guidance.null_label = model.num_classes;
    }
    const OdeResult r = odeint(velocity_field(model.net, guidance), x0, 0.0, model.t_end, ode);
    states = r.trajectory;
    out.how = fmt::format("paths through the ODE ({})", model.method->describe_sampling(request));
  } else {
    const Tensor x1 = draw_samples(model, request, 0, k).x;
    for (double t : times) states.push_back(x0 + (x1 - x0) * (t / model.t_end));
    out.how = fmt::format("noise to sample ({})", model.method->describe_sampling(request));
  }
  out.paths = stack(states, 1);
  const Tensor start = states.front(), end = states.back();
  double msd = 0;
  for (size_t i = 0; i < states.size(); ++i) {
    const double s = times[i] / model.t_end;
    const Tensor chord = start + (end - start) * s;
    msd += mean(sum(square((states[i] - chord).reshape({k, -1})), {1})).item() / double(states.size());
  }
  out.chord_msd = msd;
  return out;
}

void save_samples_picture(const std::string& path, const FlowRunSpec& spec, const VelocityModel& model,
                          const DrawnSamples& drawn, const Tensor& trajectories) {
  const std::string title = fmt::format("{} ({} NFE)", drawn.how, drawn.nfe);
  if (spec.data.kind == DataKind::Images) {
    const Tensor first = drawn.x.narrow(0, 0, std::min<int64_t>(drawn.x.size(0), 100));
    std::vector<std::string> labels;
    if (model.num_classes > 0) labels = class_names(spec.data.name, model.num_classes);
    save_image_grid_png(path, first, 10, labels);
    return;
  }
  Generator data_gen(0xDA7A);  // the same data points in every picture of a run
  const int64_t points = std::min<int64_t>(drawn.x.size(0), 20000);
  const Tensor data = sample_2d(spec.data.name, points, data_gen, DType::f32);
  const Tensor source = model.source != kGaussianSource ? sample_2d(model.source, points, data_gen, DType::f32) : Tensor();
  save_samples_png(path, drawn.x, data, title, trajectories, source);
}

Tensor grid_labels(int64_t n, int64_t classes, int64_t columns, Device device) {
  DF_CHECK(classes > 0 && columns > 0, "grid_labels: classes and columns must be positive, got {} and {}", classes,
           columns);
  std::vector<int64_t> v(size_t(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = (i / columns) % classes;
  return from_vector(v, {n}, TensorOptions(DType::i64, device));
}

Tensor source_points(const VelocityModel& model, uint64_t seed, int64_t begin, int64_t end) {
  const TensorOptions f32(DType::f32, model_device(model));
  Generator gen(seed);
  if (model.source != kGaussianSource) {
    // 2-D sets are cheap to draw: the first `end` points, of which the piece keeps its own.
    return sample_2d(model.source, end, gen, f32).narrow(0, begin, end - begin);
  }
  std::vector<int64_t> dims = {end - begin};
  for (int64_t d : model.sample_shape) dims.push_back(d);
  const int64_t per_sample = model.sample_shape.numel();
  return normal_window(Shape(dims), 0.0, 1.0, gen, begin * per_sample, f32) * model.source_std;
}

DrawnSamples draw_samples(const VelocityModel& model, const SampleRequest& r) { return draw_samples(model, r, 0, r.n); }

DrawnSamples draw_samples(const VelocityModel& model, const SampleRequest& r, int64_t begin, int64_t end) {
  DF_CHECK(r.n >= 1, "draw_samples: n must be at least 1, got {}", r.n);
  DF_CHECK(0 <= begin && begin <= end && end <= r.n, "draw_samples: samples [{}, {}) of {}", begin, end, r.n);
  const std::vector<std::string> samplers = model.method->samplers();
  DF_CHECK(std::find(samplers.begin(), samplers.end(), r.sampler) != samplers.end(),
           "draw_samples: sampler '{}' is not one of this model's ({})", r.sampler, fmt::join(samplers, ", "));
  const Method::Guidance guidance =
      model.num_classes > 0 ? model.method->sampler_guidance(r.sampler) : Method::Guidance::None;
  DF_CHECK(r.cfg_scale == 1.0 || guidance != Method::Guidance::None,
           "draw_samples: guidance scale {} needs a class-conditional model and a sampler that takes guidance (its "
           "ODE, or iMF's own); this is {} with sampler '{}'",
           r.cfg_scale, model.num_classes > 0 ? "class-conditional" : "unconditional", r.sampler);
  DF_CHECK((r.cfg_t_min == 0.0 && r.cfg_t_max == 1.0) || guidance == Method::Guidance::ScaleAndInterval,
           "draw_samples: a guidance interval [{}, {}] needs a class-conditional iMF model sampled by its own sampler",
           r.cfg_t_min, r.cfg_t_max);
  DF_CHECK(0 <= r.cfg_t_min && r.cfg_t_min <= r.cfg_t_max && r.cfg_t_max <= 1,
           "draw_samples: the guidance interval must satisfy 0 <= t_min <= t_max <= 1, got [{}, {}]", r.cfg_t_min,
           r.cfg_t_max);
  const Device dev = model_device(model);
  const TensorOptions f32(DType::f32, dev);
  std::vector<int64_t> dims = {end - begin};
  for (int64_t d : model.sample_shape) dims.push_back(d);
  Tensor noise = source_points(model, r.seed, begin, end);
  DrawnSamples out;
  if (model.num_classes > 0) out.labels = grid_labels(r.n, model.num_classes, 10, dev).narrow(0, begin, end - begin);
  out.how = model.method->describe_sampling(r);
  const int64_t chunk = r.chunk > 0 ? r.chunk : r.n;
  std::vector<Tensor> parts;
  for (int64_t start = begin; start < end; start += chunk) {
    const int64_t len = std::min(chunk, end - start);
    Tensor labels = out.labels.defined() ? out.labels.narrow(0, start - begin, len) : Tensor();
    SampledChunk s = model.method->sample(model, noise.narrow(0, start - begin, len), labels, r);
    parts.push_back(s.x);
    out.nfe = std::max(out.nfe, s.nfe);
  }
  if (parts.empty()) {
    dims[0] = 0;
    out.x = Tensor::empty(Shape(dims), f32);
  } else {
    out.x = parts.size() == 1 ? parts[0] : cat(parts, 0);
  }
  return out;
}

DrawnSamples draw_samples(const VelocityModel& model, const SampleRequest& r, ProcessGroup& group) {
  if (!group.distributed()) return draw_samples(model, r);
  // With chunks the ranks take whole chunks, so each chunk is the one a single process draws
  // (dopri5 controls its steps over a chunk); without, each takes an equal share.
  const int64_t unit = r.chunk > 0 ? r.chunk : 1, units = (r.n + unit - 1) / unit;
  const int64_t begin = std::min(r.n, unit * (units * group.rank() / group.size()));
  const int64_t end = std::min(r.n, unit * (units * (group.rank() + 1) / group.size()));
  DrawnSamples mine = draw_samples(model, r, begin, end);
  const Tensor host = mine.x.detach().to(Device::cpu()).contiguous();
  const std::vector<float> all = group.gather_to_root(
      std::span<const float>(static_cast<const float*>(host.raw_data()), size_t(host.numel())));
  int64_t nfe = 0;
  for (uint64_t v : group.all_gather(uint64_t(mine.nfe))) nfe = std::max(nfe, int64_t(v));
  DrawnSamples out;
  out.nfe = nfe;
  out.how = mine.how;
  if (group.rank() != 0) return out;
  std::vector<int64_t> dims = {r.n};
  for (int64_t d : model.sample_shape) dims.push_back(d);
  out.x = from_vector(all, Shape(dims), TensorOptions(DType::f32)).to(model_device(model));
  if (model.num_classes > 0) out.labels = grid_labels(r.n, model.num_classes, 10, model_device(model));
  return out;
}

}  // namespace dualflow
