//===- Tokenizer.cpp - SentencePiece tokenizer for training data ----------===//

#include "runtime/data/Tokenizer.h"

#include <sentencepiece_processor.h>

namespace mixer::data {

namespace {

/// The id of user-defined symbol `piece`, or -1 when the model lacks it
/// (SentencePiece answers the unk id for unknown pieces).
int32_t findSymbol(const sentencepiece::SentencePieceProcessor &processor,
                   const std::string &piece) {
  int id = processor.PieceToId(piece);
  if (id < 0 || processor.IsUnknown(id) || processor.IdToPiece(id) != piece)
    return -1;
  return id;
}

} // namespace

Tokenizer::Tokenizer()
    : processor(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}
Tokenizer::Tokenizer(Tokenizer &&) noexcept = default;
Tokenizer &Tokenizer::operator=(Tokenizer &&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Expected<Tokenizer> Tokenizer::load(const std::string &path) {
  Tokenizer tokenizer;
  tokenizer.modelPath = path;
  auto loaded = tokenizer.processor->Load(path);
  if (!loaded.ok())
    return Status::error(
        path + ": cannot load the SentencePiece model: " + loaded.ToString());
  const sentencepiece::SentencePieceProcessor &sp = *tokenizer.processor;
  tokenizer.vocab = sp.GetPieceSize();
  SpecialIds &ids = tokenizer.ids;
  ids.pad = sp.pad_id();
  ids.unk = sp.unk_id();
  ids.bos = sp.bos_id();
  ids.eos = sp.eos_id();
  if (ids.pad < 0)
    return Status::error(path + ": the SentencePiece model has no pad id; "
                                "train it with --pad_id set");
  std::string missing;
  for (auto [piece, id] :
       {std::pair{"[CLS]", &ids.cls}, std::pair{"[SEP]", &ids.sep},
        std::pair{"[MASK]", &ids.mask}}) {
    *id = findSymbol(sp, piece);
    if (*id < 0)
      missing += std::string(missing.empty() ? "" : ", ") + piece;
  }
  if (!missing.empty())
    return Status::error(
        path + ": the SentencePiece model lacks " + missing +
        "; train it with --user_defined_symbols=[CLS],[SEP],[MASK] "
        "(scripts/train-tokenizer does)");
  for (int32_t id = 0; id < tokenizer.vocab; ++id)
    if (!sp.IsControl(id) && !sp.IsUnknown(id) && !sp.IsUnused(id) &&
        id != ids.cls && id != ids.sep && id != ids.mask)
      tokenizer.ordinary.push_back(id);
  if (tokenizer.ordinary.empty())
    return Status::error(path + ": the SentencePiece model has no ordinary "
                                "piece");
  return tokenizer;
}

Expected<std::vector<int32_t>>
Tokenizer::encode(const std::string &text, const std::string &where) const {
  if (text.size() > kMaxTextBytes)
    return Status::error(where + ": a text of " + std::to_string(text.size()) +
                         " bytes, above the " + std::to_string(kMaxTextBytes) +
                         " bytes the tokenizer takes at once (put each "
                         "paragraph on a line of its own)");
  std::vector<int> pieces;
  auto encoded = processor->Encode(text, &pieces);
  if (!encoded.ok())
    return Status::error(where + ": cannot encode the text with " + modelPath +
                         ": " + encoded.ToString());
  return std::vector<int32_t>(pieces.begin(), pieces.end());
}

std::string Tokenizer::decode(const std::vector<int32_t> &tokens) const {
  std::string text;
  // Decoding only fails for ids outside the vocabulary, which the pipeline
  // never produces; the text is then empty.
  (void)processor->Decode(std::vector<int>(tokens.begin(), tokens.end()),
                          &text);
  return text;
}

Status Tokenizer::checkMatches(int64_t modelVocabSize,
                               int64_t modelPadId) const {
  if (modelVocabSize != vocab)
    return Status::error(modelPath + ": the tokenizer has " +
                         std::to_string(vocab) +
                         " pieces but the model's vocab_size is " +
                         std::to_string(modelVocabSize));
  if (modelPadId != ids.pad)
    return Status::error(
        modelPath + ": the tokenizer's pad id is " + std::to_string(ids.pad) +
        " but the model's pad_id is " + std::to_string(modelPadId));
  return Status::success();
}

} // namespace mixer::data
