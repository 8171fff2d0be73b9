// The training data of a flow run (see training_data.h).
#include "train/training_data.h"

#include <memory>

#include "train/data2d.h"
#include "train/image_data.h"

namespace dualflow {

DataSource make_data_source(const FlowRunSpec& spec, TensorOptions opts) {
  const DataSpec& data = spec.data;
  const int64_t batch = spec.train.batch;
  if (data.kind == DataKind::Points2D) {
    const std::string name = data.name;
    return [name, batch, opts](Generator& gen, int64_t) {
      return DataBatch{sample_2d(name, batch, gen, opts), Tensor()};
    };
  }
  auto set = std::make_shared<const ImageDataset>(load_image_dataset(data.path, ImageSplit::Train, data.limit));
  const int64_t h = data.sample_shape[1], w = data.sample_shape[2];
  DF_CHECK(set->images.size(2) == h && set->images.size(3) == w,
           "data.path = '{}': expected {}x{} images for data.name = \"{}\", got {}x{}", data.path, h, w, data.name,
           set->images.size(2), set->images.size(3));
  auto batcher = std::make_shared<const ImageBatcher>(*set, batch, spec.run.seed + 0xDA7A5E7ull, data.hflip);
  const bool labelled = spec.model.classes > 0;
  return [set, batcher, labelled, opts](Generator&, int64_t step) {
    ImageBatch b = batcher->batch_at(step, opts);
    return DataBatch{b.images, labelled ? b.labels.to(opts.device) : Tensor()};
  };
}

}  // namespace dualflow
