//===- Corpus.h - Text corpora, stream positions, batch tensors -*- C++ -*-===//
//
// A pre-training corpus is a plain-text file with one paragraph (or
// sentence) per line; blank lines separate documents. The pre-training and
// language-model streams walk it with a DataPosition, which a checkpoint
// stores as JSON so that a resumed run continues with exactly the batches an
// uninterrupted run would have produced.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_DATA_CORPUS_H
#define MIXER_RUNTIME_DATA_CORPUS_H

#include "runtime/data/Tokenizer.h"
#include "runtime/io/Tensor.h"
#include "runtime/support/Status.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace mixer::data {

/// Where a stream stands: the next example it produces.
struct DataPosition {
  uint64_t epoch = 0;    ///< passes over the corpus completed
  uint64_t document = 0; ///< index into the epoch's document order
  uint64_t line = 0;     ///< line within that document
  uint64_t token = 0;    ///< offset into the token stream (language model)
  uint64_t counter = 0;  ///< examples produced so far; keys their draws

  /// {"epoch": .., "document": .., "line": .., "token": .., "counter": ..}
  nlohmann::json toJson() const;
  /// Reads toJson's object; fails naming `where` and the bad key.
  static Expected<DataPosition> fromJson(const nlohmann::json &json,
                                         const std::string &where);

  bool operator==(const DataPosition &other) const;
  bool operator!=(const DataPosition &other) const { return !(*this == other); }
};

/// A tokenized document: the ids of each of its non-blank lines.
using Document = std::vector<std::vector<int32_t>>;

/// Reads and tokenizes the corpus at `path`. Lines that are blank (or only
/// whitespace) end a document; lines that encode to no token are dropped, as
/// are documents left empty. Fails naming path:line, or when the corpus has
/// no document.
Expected<std::vector<Document>> readDocuments(const std::string &path,
                                              const Tokenizer &tokenizer);

/// A named host tensor of `shape` holding `values` (int32_t -> I32, float ->
/// F32).
template <typename T>
io::HostTensor makeTensor(const std::string &name,
                          const std::vector<int64_t> &shape,
                          const std::vector<T> &values);

} // namespace mixer::data

#endif // MIXER_RUNTIME_DATA_CORPUS_H
