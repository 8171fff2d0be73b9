// The batch of the path-based objectives (see coupled_batch.h).
#include "train/methods/coupled_batch.h"

#include "train/couplings.h"
#include "train/data2d.h"
#include "train/meanflow.h"

namespace dualflow {

CoupledBatches coupled_batches(const TrainingSetup& s) {
  const DataSource data = s.data();
  const std::shared_ptr<Coupling> coupling = s.spec.path.make_coupling();
  const double class_dropout = s.spec.path.class_dropout, t_max = s.spec.path.t_max;
  const int64_t null_label = s.model.num_classes;
  const TensorOptions opts = s.options;
  const BatchShard shard = s.shard;
  const std::string source = s.spec.data.source;
  return [=](Generator& gen, int64_t step) {
    DataBatch d = data(gen, step);
    Tensor x0 = source == kGaussianSource ? randn(d.x.shape(), gen, opts) : sample_2d(source, d.x.size(0), gen, opts);
    CoupledBatch pair;
    if (d.labels.defined()) {
      // The data rows keep their order (and their labels): the coupling re-pairs the noise. The
      // couplings allowed with labels keep their first argument in order.
      CoupledBatch swapped = coupling->couple(d.x, x0, gen);
      pair = {swapped.x1, swapped.x0};
    } else {
      pair = coupling->couple(x0, d.x, gen);
    }
    Tensor labels = d.labels.defined() && class_dropout > 0
                        ? drop_class_labels(d.labels, class_dropout, null_label, gen)
                        : d.labels;
    Tensor t = rand({d.x.size(0)}, gen, opts) * t_max;
    return CoupledTrainingBatch{shard.rows(pair.x0), shard.rows(pair.x1), shard.rows(t), shard.rows(labels)};
  };
}

std::shared_ptr<ProbabilityPath> training_path(const TrainingSetup& s) {
  const std::shared_ptr<Coupling> coupling = s.spec.path.make_coupling();
  if (std::shared_ptr<ProbabilityPath> own = coupling->own_path(s.data_gen)) return own;
  return s.spec.path.flow_path();
}

}  // namespace dualflow
