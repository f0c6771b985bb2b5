//===- ClassificationData.h - Fine-tuning examples from JSONL ---*- C++ -*-===//
//
// A fine-tuning set is a JSON Lines file, one example per non-blank line:
//   {"text": "...", "label": 1}                     one segment
//   {"text_a": "...", "text_b": "...", "label": 0}  a pair of segments
// The label is a class index in [0, n_classes) for classification, or any
// number when the head is a regression (n_classes = 1). An example becomes
// [CLS] seg0 [SEP] seg1 [SEP] with type id = segment index ([CLS] 0), cut at
// S from the end and padded with pad_id. The last, partial batch is filled
// with padding rows of weight 0 so that evaluation counts every example
// exactly once.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_DATA_CLASSIFICATIONDATA_H
#define MIXER_RUNTIME_DATA_CLASSIFICATIONDATA_H

#include "runtime/data/Tokenizer.h"
#include "runtime/io/Tensor.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mixer::data {

/// One tokenized example.
struct ClassificationExample {
  std::vector<std::vector<int32_t>> segments; ///< 1 or 2
  float label = 0; ///< class index, or the regression target
};

/// One fine-tuning batch; row-major arrays.
struct ClassificationBatch {
  int64_t batchSize = 0, seqLength = 0;
  bool regression = false;
  std::vector<int32_t> inputIds;     ///< [B, S]
  std::vector<int32_t> typeIds;      ///< [B, S]
  std::vector<int32_t> classLabels;  ///< [B], classification (0 in padding)
  std::vector<float> targets;        ///< [B], regression (0 in padding)
  std::vector<float> exampleWeights; ///< [B]: 1 real example, 0 padding

  /// Tensors input_ids, type_ids, labels (I32, or F32 for regression) and
  /// example_weights.
  std::vector<io::HostTensor> tensors() const;
};

/// A labelled text set read from JSONL.
class ClassificationData {
public:
  /// Reads `path` for a head with `numClasses` outputs (1 = regression).
  /// Errors name path:line and the problem.
  static Expected<ClassificationData>
  load(const std::string &path, const Tokenizer &tokenizer, int64_t numClasses);

  int64_t size() const { return static_cast<int64_t>(examples.size()); }
  const std::vector<ClassificationExample> &all() const { return examples; }
  bool isRegression() const { return numClasses == 1; }

  /// Batches of `batchSize` covering every example once: ceil(size / B).
  int64_t numBatches(int64_t batchSize) const;

  /// Batch `index` of the examples taken in `order` (a permutation of
  /// 0..size-1; empty = file order), rows past the end padded with weight 0.
  ClassificationBatch batch(int64_t index, int64_t batchSize, int64_t seqLength,
                            const std::vector<int64_t> &order = {}) const;

  /// The example order of training epoch `epoch`, drawn from (seed, epoch).
  std::vector<int64_t> epochOrder(uint64_t seed, uint64_t epoch) const;

private:
  ClassificationData() = default;

  std::vector<ClassificationExample> examples;
  SpecialIds ids;
  int64_t numClasses = 0;
};

} // namespace mixer::data

#endif // MIXER_RUNTIME_DATA_CLASSIFICATIONDATA_H
