//===- MlmBatcher.cpp - Pre-training batches (MLM + NSP) ------------------===//

#include "runtime/data/MlmBatcher.h"

#include "runtime/data/Random.h"

#include <algorithm>
#include <utility>

namespace mixer::data {

namespace {

/// [CLS], two [SEP] and at least one token on each side.
constexpr int64_t kMinSeqLength = 5;

Status validateOptions(const std::string &path, const MlmOptions &options) {
  auto fail = [&](const std::string &problem) {
    return Status::error(path + ": pre-training batches: " + problem);
  };
  if (options.batchSize < 1)
    return fail("batch size " + std::to_string(options.batchSize) +
                " is not positive");
  if (options.seqLength < kMinSeqLength)
    return fail("sequence length " + std::to_string(options.seqLength) +
                " is below " + std::to_string(kMinSeqLength));
  if (options.maxPredictions < 1)
    return fail("max predictions " + std::to_string(options.maxPredictions) +
                " is not positive");
  if (!(options.maskingRate >= 0.0 && options.maskingRate <= 1.0))
    return fail("masking rate " + std::to_string(options.maskingRate) +
                " is outside [0, 1]");
  return Status::success();
}

/// Appends lines [first, last) of `run` to `out`.
void appendLines(const std::vector<const std::vector<int32_t> *> &run,
                 size_t first, size_t last, std::vector<int32_t> &out) {
  for (size_t i = first; i < last; ++i)
    out.insert(out.end(), run[i]->begin(), run[i]->end());
}

} // namespace

std::vector<io::HostTensor> MlmBatch::tensors() const {
  std::vector<int64_t> tokens{batchSize, seqLength};
  std::vector<int64_t> predictions{batchSize, maxPredictions};
  return {makeTensor("input_ids", tokens, inputIds),
          makeTensor("type_ids", tokens, typeIds),
          makeTensor("masked_lm_positions", predictions, maskedLmPositions),
          makeTensor("masked_lm_ids", predictions, maskedLmIds),
          makeTensor("masked_lm_weights", predictions, maskedLmWeights),
          makeTensor("next_sentence_labels", {batchSize}, nextSentenceLabels)};
}

Expected<MlmBatcher> MlmBatcher::create(const std::string &path,
                                        const Tokenizer &tokenizer,
                                        const MlmOptions &options) {
  if (Status valid = validateOptions(path, options); !valid)
    return valid;
  auto documents = readDocuments(path, tokenizer);
  if (!documents)
    return documents.takeStatus();
  // A document with two tokens yields a pair from its first line on, so
  // every epoch then yields an example and the walk cannot run forever.
  bool pairable = std::any_of(documents->begin(), documents->end(),
                              [](const Document &document) {
                                size_t tokens = 0;
                                for (const auto &line : document)
                                  tokens += line.size();
                                return tokens >= 2;
                              });
  if (!pairable)
    return Status::error(path + ": no document of the corpus has the two "
                                "tokens a sentence pair needs");
  MlmBatcher batcher;
  batcher.docs = std::move(*documents);
  batcher.ids = tokenizer.specialIds();
  batcher.ordinaryIds = tokenizer.ordinaryIds();
  batcher.options = options;
  batcher.order = permutation(static_cast<int64_t>(batcher.docs.size()),
                              options.seed, DrawPurpose::DocumentOrder, 0);
  return batcher;
}

Status MlmBatcher::seek(const DataPosition &position) {
  auto fail = [&](const std::string &problem) {
    return Status::error("pre-training data position: " + problem);
  };
  if (position.token != 0)
    return fail("token " + std::to_string(position.token) +
                " is not 0 (a pre-training stream has no token offset)");
  if (position.document > docs.size())
    return fail("document " + std::to_string(position.document) +
                " is past the corpus's " + std::to_string(docs.size()) +
                " documents");
  std::vector<int64_t> epochOrder =
      permutation(static_cast<int64_t>(docs.size()), options.seed,
                  DrawPurpose::DocumentOrder, position.epoch);
  size_t lines = position.document == docs.size()
                     ? 1
                     : docs[epochOrder[position.document]].size();
  if (position.line >= lines)
    return fail("line " + std::to_string(position.line) + " is past the " +
                std::to_string(lines) + " lines of document " +
                std::to_string(position.document));
  order = std::move(epochOrder);
  cursor = position;
  return Status::success();
}

std::vector<const std::vector<int32_t> *> MlmBatcher::nextRun() {
  const size_t target = static_cast<size_t>(options.seqLength - 3);
  for (;;) {
    if (cursor.document == docs.size()) {
      ++cursor.epoch;
      cursor.document = 0;
      cursor.line = 0;
      order = permutation(static_cast<int64_t>(docs.size()), options.seed,
                          DrawPurpose::DocumentOrder, cursor.epoch);
    }
    const Document &document = docs[order[cursor.document]];
    std::vector<const std::vector<int32_t> *> run;
    size_t tokens = 0;
    while (cursor.line < document.size() && tokens < target) {
      run.push_back(&document[cursor.line++]);
      tokens += run.back()->size();
    }
    if (cursor.line == document.size()) {
      ++cursor.document;
      cursor.line = 0;
    }
    if (tokens >= 2)
      return run;
  }
}

void MlmBatcher::fillExample(MlmBatch &batch, int64_t row) {
  std::vector<const std::vector<int32_t> *> run = nextRun();
  DrawStream draws(options.seed, DrawPurpose::Example, cursor.counter++);

  std::vector<int32_t> first, second;
  if (run.size() >= 2) {
    size_t split = 1 + draws.below(static_cast<uint32_t>(run.size() - 1));
    appendLines(run, 0, split, first);
    appendLines(run, split, run.size(), second);
  } else {
    const std::vector<int32_t> &line = *run.front();
    size_t cut = 1 + draws.below(static_cast<uint32_t>(line.size() - 1));
    first.assign(line.begin(), line.begin() + cut);
    second.assign(line.begin() + cut, line.end());
  }
  const size_t budget = static_cast<size_t>(options.seqLength - 3);
  while (first.size() + second.size() > budget)
    (first.size() > second.size() ? first : second).pop_back();
  bool originalOrder = draws.below(2) == 1;
  if (!originalOrder)
    std::swap(first, second);
  batch.nextSentenceLabels[row] = originalOrder ? 1 : 0;

  std::vector<int32_t> tokens;
  tokens.reserve(first.size() + second.size() + 3);
  tokens.push_back(ids.cls);
  tokens.insert(tokens.end(), first.begin(), first.end());
  tokens.push_back(ids.sep);
  tokens.insert(tokens.end(), second.begin(), second.end());
  tokens.push_back(ids.sep);
  int32_t *typeRow = batch.typeIds.data() + row * options.seqLength;
  std::fill(typeRow + first.size() + 2, typeRow + tokens.size(), 1);

  std::vector<int32_t> candidates;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] != ids.cls && tokens[i] != ids.sep && tokens[i] != ids.pad)
      candidates.push_back(static_cast<int32_t>(i));
  int64_t wanted = std::min<int64_t>(
      options.maxPredictions,
      std::max<int64_t>(
          1, static_cast<int64_t>(options.maskingRate *
                                  static_cast<double>(tokens.size()))));
  size_t count =
      std::min<size_t>(static_cast<size_t>(wanted), candidates.size());
  for (size_t i = 0; i < count; ++i)
    std::swap(candidates[i], candidates[i + draws.below(static_cast<uint32_t>(
                                                candidates.size() - i))]);
  std::sort(candidates.begin(), candidates.begin() + count);

  int64_t slot = row * options.maxPredictions;
  for (size_t i = 0; i < count; ++i, ++slot) {
    int32_t position = candidates[i];
    batch.maskedLmPositions[slot] = position;
    batch.maskedLmIds[slot] = tokens[position];
    batch.maskedLmWeights[slot] = 1.0f;
    double u = draws.uniform();
    if (u < 0.8)
      tokens[position] = ids.mask;
    else if (u < 0.9)
      tokens[position] =
          ordinaryIds[draws.below(static_cast<uint32_t>(ordinaryIds.size()))];
  }
  std::copy(tokens.begin(), tokens.end(),
            batch.inputIds.begin() + row * options.seqLength);
}

MlmBatch MlmBatcher::next() {
  MlmBatch batch;
  batch.batchSize = options.batchSize;
  batch.seqLength = options.seqLength;
  batch.maxPredictions = options.maxPredictions;
  int64_t tokens = options.batchSize * options.seqLength;
  int64_t predictions = options.batchSize * options.maxPredictions;
  batch.inputIds.assign(tokens, ids.pad);
  batch.typeIds.assign(tokens, 0);
  batch.maskedLmPositions.assign(predictions, 0);
  batch.maskedLmIds.assign(predictions, 0);
  batch.maskedLmWeights.assign(predictions, 0.0f);
  batch.nextSentenceLabels.assign(options.batchSize, 0);
  for (int64_t row = 0; row < options.batchSize; ++row)
    fillExample(batch, row);
  return batch;
}

} // namespace mixer::data
