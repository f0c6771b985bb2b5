//===- LmStream.h - Causal language-model windows ---------------*- C++ -*-===//
//
// The corpus (Corpus.h) as one token stream: the lines of each document
// concatenated, an EOS after every document. Consecutive, non-overlapping
// windows of S + 1 tokens give input_ids (the first S) and labels (the last
// S, i.e. the next token of each input). At the end of the stream the next
// window continues from its start (the next epoch), so the stream never
// ends and every window is full.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_DATA_LMSTREAM_H
#define MIXER_RUNTIME_DATA_LMSTREAM_H

#include "runtime/data/Corpus.h"
#include "runtime/data/Tokenizer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mixer::data {

/// The shape of language-model batches.
struct LmOptions {
  int64_t batchSize = 1; ///< B
  int64_t seqLength = 1; ///< S
};

/// One language-model batch; row-major arrays.
struct LmBatch {
  int64_t batchSize = 0, seqLength = 0;
  std::vector<int32_t> inputIds; ///< [B, S]
  std::vector<int32_t> labels;   ///< [B, S]

  /// Tensors input_ids and labels.
  std::vector<io::HostTensor> tensors() const;
};

/// An endless, resumable stream of language-model windows.
class LmStream {
public:
  /// Reads the corpus at `path`; fails when the tokenizer has no EOS.
  static Expected<LmStream> create(const std::string &path,
                                   const Tokenizer &tokenizer,
                                   const LmOptions &options);

  /// The next batch; advances the position by B windows.
  LmBatch next();

  /// Where the stream stands: `token` is the offset of the next window in
  /// the token stream, `counter` the windows produced so far.
  const DataPosition &position() const { return cursor; }
  /// Moves to `position` (from position() of a stream over the same corpus).
  Status seek(const DataPosition &position);

  /// The token stream of one epoch.
  const std::vector<int32_t> &tokens() const { return stream; }

private:
  LmStream() = default;

  std::vector<int32_t> stream;
  LmOptions options;
  DataPosition cursor;
};

} // namespace mixer::data

#endif // MIXER_RUNTIME_DATA_LMSTREAM_H
