// The batch of the path-based objectives (cfm, score): data from the run's stream, fresh
// noise (or points of data.source, for a data-to-data flow) paired with it by the configured coupling, labels with class dropout, and times in
// [0, t_max), drawn for the whole batch (the coupling sees all of it) and cut to this
// process's shard; and the probability path those pairs are trained on.
#pragma once
#include <functional>
#include <memory>

#include "train/methods/method.h"
#include "train/paths.h"

namespace dualflow {

struct CoupledTrainingBatch {
  Tensor x0, x1, t, labels;  // noise, data, times [B], labels (undefined when unlabelled)
};
using CoupledBatches = std::function<CoupledTrainingBatch(Generator& gen, int64_t step)>;

CoupledBatches coupled_batches(const TrainingSetup& setup);

// The coupling's own path (the Schrödinger bridge of the sb coupling, whose noise comes from
// the run's data stream) or the run's path (affine, or the curved 2-D one).
std::shared_ptr<ProbabilityPath> training_path(const TrainingSetup& setup);

}  // namespace dualflow
