//===- Tokenizer.cpp - The tokenizers of text inputs ----------------------===//

#include "runtime/data/Tokenizer.h"
#include "runtime/data/WordPiece.h"

#include <sentencepiece_processor.h>

#include <algorithm>

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

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer &&) noexcept = default;
Tokenizer &Tokenizer::operator=(Tokenizer &&) noexcept = default;
Tokenizer::~Tokenizer() = default;

/// A WordPiece vocabulary as a tokenizer: [PAD], [UNK], [CLS], [SEP] and
/// [MASK] resolved; the ordinary ids are those of tokens not in brackets.
static Expected<Tokenizer> loadWordPiece(const std::string &path) {
  Expected<WordPiece> vocab = WordPiece::load(path);
  if (!vocab.ok())
    return vocab.takeStatus();
  SpecialIds ids;
  std::string missing;
  for (auto [token, id] :
       {std::pair{"[PAD]", &ids.pad}, std::pair{"[UNK]", &ids.unk},
        std::pair{"[CLS]", &ids.cls}, std::pair{"[SEP]", &ids.sep},
        std::pair{"[MASK]", &ids.mask}}) {
    *id = vocab->find(token);
    if (*id < 0)
      missing += std::string(missing.empty() ? "" : ", ") + token;
  }
  if (!missing.empty())
    return Status::error(path + ": the WordPiece vocabulary lacks " + missing);
  std::vector<int32_t> ordinary;
  for (int32_t id = 0; id < vocab->size(); ++id) {
    const std::string &token = vocab->token(id);
    if (!(token.size() >= 2 && token.front() == '[' && token.back() == ']'))
      ordinary.push_back(id);
  }
  return Tokenizer::fromWordPiece(path, std::move(*vocab), ids,
                                  std::move(ordinary));
}

Expected<Tokenizer> Tokenizer::fromWordPiece(const std::string &path,
                                             WordPiece vocab,
                                             const SpecialIds &special,
                                             std::vector<int32_t> ordinary) {
  Tokenizer tokenizer;
  tokenizer.modelPath = path;
  tokenizer.vocab = vocab.size();
  tokenizer.ids = special;
  tokenizer.ordinary = std::move(ordinary);
  tokenizer.wordPiece = std::make_unique<WordPiece>(std::move(vocab));
  if (tokenizer.ordinary.empty())
    return Status::error(path + ": the WordPiece vocabulary has no ordinary "
                                "token");
  return tokenizer;
}

Expected<Tokenizer> Tokenizer::load(const std::string &path, bool forTraining) {
  if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".txt") == 0)
    return loadWordPiece(path);
  Tokenizer tokenizer;
  tokenizer.modelPath = path;
  tokenizer.processor =
      std::make_unique<sentencepiece::SentencePieceProcessor>();
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
  for (auto [piece, id] :
       {std::pair{"[CLS]", &ids.cls}, std::pair{"[SEP]", &ids.sep},
        std::pair{"[MASK]", &ids.mask}})
    *id = findSymbol(sp, piece);
  if (!forTraining)
    return tokenizer;
  if (ids.pad < 0)
    return Status::error(path + ": the SentencePiece model has no pad id; "
                                "train it with --pad_id set");
  std::string missing;
  for (auto [piece, id] :
       {std::pair{"[CLS]", ids.cls}, std::pair{"[SEP]", ids.sep},
        std::pair{"[MASK]", ids.mask}})
    if (id < 0)
      missing += std::string(missing.empty() ? "" : ", ") + piece;
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
  if (wordPiece)
    return wordPiece->encode(text);
  std::vector<int> pieces;
  auto encoded = processor->Encode(text, &pieces);
  if (!encoded.ok())
    return Status::error(where + ": cannot encode the text with " + modelPath +
                         ": " + encoded.ToString());
  return std::vector<int32_t>(pieces.begin(), pieces.end());
}

std::string Tokenizer::decode(const std::vector<int32_t> &tokens) const {
  if (wordPiece)
    return wordPiece->decode(tokens);
  std::string text;
  // Decoding only fails for ids outside the vocabulary, which the pipeline
  // never produces; the text is then empty.
  (void)processor->Decode(std::vector<int>(tokens.begin(), tokens.end()),
                          &text);
  return text;
}

Expected<std::vector<int32_t>> Tokenizer::encodeInput(const std::string &text,
                                                      const std::string &where,
                                                      size_t length,
                                                      size_t &count) const {
  Expected<std::vector<int32_t>> pieces = encode(text, where);
  if (!pieces.ok())
    return pieces;
  if (!wordPiece) {
    count = pieces->size();
    pieces->resize(std::min(pieces->size(), length));
    return pieces;
  }
  count = pieces->size() + 2;
  if (length < 2)
    return Status::error(where + ": a sequence of " + std::to_string(length) +
                         " tokens has no room for [CLS] and [SEP]");
  std::vector<int32_t> row = {ids.cls};
  size_t kept = std::min(pieces->size(), length - 2);
  row.insert(row.end(), pieces->begin(), pieces->begin() + kept);
  row.push_back(ids.sep);
  return row;
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
