// The training data of a flow run as a function of the step: fresh 2-D points drawn from the
// run's data stream, or image batches read in epoch-shuffled order (image_data.h), so resumed
// runs see the same batches either way.
#pragma once
#include <functional>

#include "train/run_spec.h"

namespace dualflow {

// x [B, ...] with labels i64 [B] (undefined for unlabelled data or unconditional models).
struct DataBatch {
  Tensor x, labels;
};
using DataSource = std::function<DataBatch(Generator& gen, int64_t step)>;

// Batches of train.batch from data.*; labels only when model.classes > 0. Image sets are read
// here (an error names the folder and what is missing).
DataSource make_data_source(const FlowRunSpec& spec, TensorOptions options);

}  // namespace dualflow
