//===- LmStream.cpp - Causal language-model windows -----------------------===//

#include "runtime/data/LmStream.h"

namespace mixer::data {

std::vector<io::HostTensor> LmBatch::tensors() const {
  std::vector<int64_t> shape{batchSize, seqLength};
  return {makeTensor("input_ids", shape, inputIds),
          makeTensor("labels", shape, labels)};
}

Expected<LmStream> LmStream::create(const std::string &path,
                                    const Tokenizer &tokenizer,
                                    const LmOptions &options) {
  if (options.batchSize < 1 || options.seqLength < 1)
    return Status::error(
        path + ": language-model batches: batch size " +
        std::to_string(options.batchSize) + " and sequence length " +
        std::to_string(options.seqLength) + " must be positive");
  int32_t eos = tokenizer.specialIds().eos;
  if (eos < 0)
    return Status::error(tokenizer.path() +
                         ": the SentencePiece model has no eos id, which "
                         "separates the documents of a language-model stream");
  auto documents = readDocuments(path, tokenizer);
  if (!documents)
    return documents.takeStatus();
  LmStream lm;
  lm.options = options;
  for (const Document &document : *documents) {
    for (const std::vector<int32_t> &line : document)
      lm.stream.insert(lm.stream.end(), line.begin(), line.end());
    lm.stream.push_back(eos);
  }
  return lm;
}

Status LmStream::seek(const DataPosition &position) {
  if (position.document != 0 || position.line != 0)
    return Status::error("language-model data position: document " +
                         std::to_string(position.document) + ", line " +
                         std::to_string(position.line) +
                         " are not 0 (a language-model stream has only a "
                         "token offset)");
  if (position.token >= stream.size())
    return Status::error("language-model data position: token " +
                         std::to_string(position.token) +
                         " is past the stream's " +
                         std::to_string(stream.size()) + " tokens");
  cursor = position;
  return Status::success();
}

LmBatch LmStream::next() {
  LmBatch batch;
  batch.batchSize = options.batchSize;
  batch.seqLength = options.seqLength;
  batch.inputIds.resize(options.batchSize * options.seqLength);
  batch.labels.resize(options.batchSize * options.seqLength);
  for (int64_t row = 0; row < options.batchSize; ++row) {
    for (int64_t i = 0; i <= options.seqLength; ++i) {
      int32_t token = stream[cursor.token];
      if (++cursor.token == stream.size()) {
        cursor.token = 0;
        ++cursor.epoch;
      }
      // Token i is input i and the label of input i - 1.
      if (i < options.seqLength)
        batch.inputIds[row * options.seqLength + i] = token;
      if (i > 0)
        batch.labels[row * options.seqLength + i - 1] = token;
    }
    ++cursor.counter;
  }
  return batch;
}

} // namespace mixer::data
