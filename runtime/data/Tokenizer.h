//===- Tokenizer.h - SentencePiece tokenizer for training data --*- C++ -*-===//
//
// Wraps a SentencePiece model and resolves the ids the data pipeline needs:
// the reserved pad, unk, bos and eos ids and the pieces [CLS], [SEP] and
// [MASK], which the model must define as user-defined symbols (so that they
// are whole pieces of the vocabulary). scripts/train-tokenizer trains such a
// model.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_DATA_TOKENIZER_H
#define MIXER_RUNTIME_DATA_TOKENIZER_H

#include "runtime/support/Status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
} // namespace sentencepiece

namespace mixer::data {

/// The ids of the special tokens of a tokenizer; -1 where undefined (bos,
/// eos).
struct SpecialIds {
  int32_t pad = -1;
  int32_t unk = -1;
  int32_t bos = -1;
  int32_t eos = -1;
  int32_t cls = -1;
  int32_t sep = -1;
  int32_t mask = -1;
};

/// A loaded SentencePiece model with its special ids resolved.
class Tokenizer {
public:
  /// Loads the model at `path`. Fails, naming `path`, when it cannot be read,
  /// has no pad id, or lacks one of [CLS], [SEP], [MASK].
  static Expected<Tokenizer> load(const std::string &path);

  Tokenizer(Tokenizer &&) noexcept;
  Tokenizer &operator=(Tokenizer &&) noexcept;
  ~Tokenizer();

  const std::string &path() const { return modelPath; }
  int32_t vocabSize() const { return vocab; }
  const SpecialIds &specialIds() const { return ids; }

  /// Ids that are ordinary pieces: neither control (pad, bos, eos), unknown,
  /// unused, nor one of [CLS], [SEP], [MASK]. These are the candidates for
  /// the random replacement of masked language modelling.
  const std::vector<int32_t> &ordinaryIds() const { return ordinary; }

  /// The longest text `encode` takes: SentencePiece needs memory many times
  /// a text's size, and a corpus line is a paragraph, not a book.
  static constexpr size_t kMaxTextBytes = size_t(1) << 20;

  /// The ids of `text`; fails naming `where` (a file:line, say), also for a
  /// text longer than kMaxTextBytes.
  Expected<std::vector<int32_t>> encode(const std::string &text,
                                        const std::string &where) const;
  /// The text of `ids` (for messages and tests).
  std::string decode(const std::vector<int32_t> &ids) const;

  /// Success when the model fits a model description: the same vocabulary
  /// size and pad id.
  Status checkMatches(int64_t modelVocabSize, int64_t modelPadId) const;

private:
  Tokenizer();

  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor;
  std::string modelPath;
  int32_t vocab = 0;
  SpecialIds ids;
  std::vector<int32_t> ordinary;
};

} // namespace mixer::data

#endif // MIXER_RUNTIME_DATA_TOKENIZER_H
