//===- MlmBatcher.h - Pre-training batches (MLM + NSP) ----------*- C++ -*-===//
//
// Builds masked-language-model and next-sentence batches from a corpus
// (Corpus.h), as the pre-training recipe states:
//
//  * Pairs. The walk visits the documents of an epoch in an order drawn from
//    (seed, epoch) and takes, from its position, whole consecutive lines of
//    the current document until they hold at least S - 3 tokens or the
//    document ends. A split point drawn uniformly among the line boundaries
//    cuts them into A (the first run) and B (the run that follows); a run of
//    a single line is cut at a token boundary instead. While A and B hold
//    more than S - 3 tokens the longer one (B on a tie) loses its last
//    token. With probability 1/2 the two are swapped: label 1 = original
//    order (A then B as in the document), 0 = swapped.
//  * Input: [CLS] A [SEP] B [SEP] padded with pad_id to S; type ids 0 for
//    [CLS], A and the first [SEP], 1 for B and the second [SEP], 0 for
//    padding.
//  * Masking: n = the number of non-pad tokens; num_to_predict =
//    min(P, max(1, int(rate * n))) positions, drawn uniformly without
//    replacement among those that hold neither [CLS], [SEP] nor pad (fewer
//    when there are fewer such positions), listed in increasing order. Each
//    is replaced by [MASK] with probability 0.8, by a uniformly drawn
//    ordinary token (Tokenizer::ordinaryIds) with probability 0.1, and kept
//    otherwise. masked_lm_ids holds the original tokens; unused prediction
//    slots have position 0, id 0 and weight 0.
//
// Every draw of example k comes from (seed, k), so batches depend only on
// the seed and the position, never on how the run was interrupted.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_DATA_MLMBATCHER_H
#define MIXER_RUNTIME_DATA_MLMBATCHER_H

#include "runtime/data/Corpus.h"
#include "runtime/data/Tokenizer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mixer::data {

/// The shape and randomness of pre-training batches.
struct MlmOptions {
  int64_t batchSize = 64;      ///< B
  int64_t seqLength = 512;     ///< S, at least 5
  int64_t maxPredictions = 80; ///< P (max_predictions_per_seq)
  double maskingRate = 0.15;
  uint64_t seed = 0;
};

/// One pre-training batch; row-major arrays.
struct MlmBatch {
  int64_t batchSize = 0, seqLength = 0, maxPredictions = 0;
  std::vector<int32_t> inputIds;           ///< [B, S]
  std::vector<int32_t> typeIds;            ///< [B, S]
  std::vector<int32_t> maskedLmPositions;  ///< [B, P]
  std::vector<int32_t> maskedLmIds;        ///< [B, P]
  std::vector<float> maskedLmWeights;      ///< [B, P]
  std::vector<int32_t> nextSentenceLabels; ///< [B]

  /// The arrays as tensors named input_ids, type_ids, masked_lm_positions,
  /// masked_lm_ids, masked_lm_weights, next_sentence_labels.
  std::vector<io::HostTensor> tensors() const;
};

/// An endless, resumable stream of pre-training batches over a corpus.
class MlmBatcher {
public:
  /// Reads the corpus at `path` with `tokenizer`. Fails on bad options or
  /// when no document holds the two tokens a pair needs.
  static Expected<MlmBatcher> create(const std::string &path,
                                     const Tokenizer &tokenizer,
                                     const MlmOptions &options);

  /// The next batch; advances the position.
  MlmBatch next();

  /// Where the stream stands (the next example).
  const DataPosition &position() const { return cursor; }
  /// Moves to `position` (from position() of a stream over the same corpus
  /// and options); fails naming what does not fit the corpus.
  Status seek(const DataPosition &position);

  /// The tokenized documents, in corpus order.
  const std::vector<Document> &documents() const { return docs; }

private:
  MlmBatcher() = default;

  /// Lines of the current document from the position on, advancing it past
  /// them; skips stretches with fewer than two tokens.
  std::vector<const std::vector<int32_t> *> nextRun();
  /// Writes example `row` of `batch`.
  void fillExample(MlmBatch &batch, int64_t row);

  std::vector<Document> docs;
  std::vector<int64_t> order; ///< the document order of cursor.epoch
  SpecialIds ids;
  std::vector<int32_t> ordinaryIds;
  MlmOptions options;
  DataPosition cursor;
};

} // namespace mixer::data

#endif // MIXER_RUNTIME_DATA_MLMBATCHER_H
