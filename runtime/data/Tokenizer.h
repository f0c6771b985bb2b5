//===- Tokenizer.h - The tokenizers of text inputs -------------*- C++ -*-===//
//
// One of two tokenizers, chosen by the file: a WordPiece vocabulary (a file
// ending in .txt, BERT's vocab.txt; runtime/data/WordPiece.h) or a
// SentencePiece model (any other file). Either resolves the ids the data
// pipeline needs: pad, unk, bos and eos (SentencePiece's reserved ids; a
// WordPiece vocabulary has [PAD] and [UNK] and neither bos nor eos) and
// [CLS], [SEP] and [MASK], which a SentencePiece model must define as
// user-defined symbols (so that they are whole pieces of the vocabulary).
// scripts/train-tokenizer trains such a model.
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

class WordPiece;

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

/// A loaded tokenizer with its special ids resolved.
class Tokenizer {
public:
  /// Loads the vocabulary or model at `path` (a WordPiece vocabulary when the
  /// name ends in .txt). Fails, naming `path`, when it cannot be read, or
  /// lacks [PAD], [UNK], [CLS], [SEP] or [MASK] (a WordPiece vocabulary), or
  /// for training (`forTraining`) has no pad id or lacks one of [CLS], [SEP],
  /// [MASK] (a SentencePiece model; encoding text for inference needs none).
  static Expected<Tokenizer> load(const std::string &path,
                                  bool forTraining = true);

  /// Whether this is a WordPiece vocabulary (else a SentencePiece model).
  bool isWordPiece() const { return wordPiece != nullptr; }

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

  /// The model input row of one text: its ids cut to `length` tokens; a
  /// WordPiece tokenizer (BERT's convention) puts them between [CLS] and
  /// [SEP] within `length`. `count` receives the number of tokens the row
  /// would have uncut.
  Expected<std::vector<int32_t>> encodeInput(const std::string &text,
                                             const std::string &where,
                                             size_t length,
                                             size_t &count) const;

  /// Success when the model fits a model description: the same vocabulary
  /// size and pad id.
  Status checkMatches(int64_t modelVocabSize, int64_t modelPadId) const;

  /// A tokenizer over a WordPiece vocabulary loaded from `path`.
  static Expected<Tokenizer> fromWordPiece(const std::string &path,
                                           WordPiece vocab,
                                           const SpecialIds &special,
                                           std::vector<int32_t> ordinary);

private:
  Tokenizer();

  /// Whichever of the two the file is; the other is null.
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor;
  std::unique_ptr<WordPiece> wordPiece;
  std::string modelPath;
  int32_t vocab = 0;
  SpecialIds ids;
  std::vector<int32_t> ordinary;
};

} // namespace mixer::data

#endif // MIXER_RUNTIME_DATA_TOKENIZER_H
