//===- WordPiece.cpp - BERT's WordPiece tokenizer -------------------------===//

#include "runtime/data/WordPiece.h"

#include <algorithm>
#include <fstream>
#include <limits>

namespace mixer::data {

namespace {

/// An inclusive range of code points.
struct CodePointRange {
  char32_t first, last;
};

/// A code point and the UTF-8 text it becomes.
struct FoldedCodePoint {
  char32_t codePoint;
  const char *text;
};

#include "runtime/data/UnicodeTables.inc"

template <size_t N>
bool inRanges(const CodePointRange (&table)[N], char32_t cp) {
  const CodePointRange *it = std::upper_bound(
      table, table + N, cp,
      [](char32_t value, const CodePointRange &r) { return value < r.first; });
  return it != table && cp <= (it - 1)->last;
}

bool isCjk(char32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

void appendUtf8(std::string &out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// Decodes the code point at `text[i]` and advances i; a byte that does not
/// start a well-formed UTF-8 sequence reads as U+FFFD and advances by one.
char32_t nextCodePoint(std::string_view text, size_t &i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char lead = byte(i);
  int length = lead < 0x80                   ? 1
               : lead >= 0xC2 && lead < 0xE0 ? 2
               : lead >= 0xE0 && lead < 0xF0 ? 3
               : lead >= 0xF0 && lead < 0xF5 ? 4
                                             : 0;
  if (length == 1) {
    ++i;
    return lead;
  }
  char32_t cp = length == 2   ? lead & 0x1F
                : length == 3 ? lead & 0x0F
                              : lead & 0x07;
  bool valid = length > 0 && i + length <= text.size();
  for (int k = 1; valid && k < length; ++k) {
    valid = (byte(i + k) & 0xC0) == 0x80;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  // Overlong forms, surrogates and code points past U+10FFFF.
  valid = valid && !(length == 3 && cp < 0x800) &&
          !(length == 4 && (cp < 0x10000 || cp > 0x10FFFF)) &&
          !(cp >= 0xD800 && cp <= 0xDFFF);
  if (!valid) {
    ++i;
    return 0xFFFD;
  }
  i += length;
  return cp;
}

/// Appends the normalised form of `cp`: decomposed without non-spacing
/// marks and lower-cased.
void appendFolded(std::string &out, char32_t cp) {
  constexpr char32_t hangulFirst = 0xAC00, hangulLast = 0xD7A3;
  if (cp >= hangulFirst && cp <= hangulLast) {
    // The algorithmic decomposition of Hangul syllables into jamo.
    char32_t index = cp - hangulFirst;
    appendUtf8(out, 0x1100 + index / (21 * 28));
    appendUtf8(out, 0x1161 + index % (21 * 28) / 28);
    if (index % 28)
      appendUtf8(out, 0x11A7 + index % 28);
    return;
  }
  const FoldedCodePoint *end = std::end(kFolded);
  const FoldedCodePoint *it =
      std::lower_bound(std::begin(kFolded), end, cp,
                       [](const FoldedCodePoint &f, char32_t value) {
                         return f.codePoint < value;
                       });
  if (it != end && it->codePoint == cp)
    out += it->text;
  else
    appendUtf8(out, cp);
}

} // namespace

std::vector<std::string> WordPiece::basicTokenize(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  auto finishWord = [&] {
    if (!word.empty())
      words.push_back(std::move(word));
    word.clear();
  };
  // Normalisation may produce a space or punctuation (a compatibility
  // character is not decomposed by NFD, so none does today); the split
  // looks at the normalised code points.
  std::string folded;
  for (size_t i = 0; i < text.size();) {
    char32_t cp = nextCodePoint(text, i);
    if (inRanges(kDropped, cp))
      continue;
    if (inRanges(kSpaces, cp)) {
      finishWord();
      continue;
    }
    if (isCjk(cp)) {
      finishWord();
      folded.clear();
      appendFolded(folded, cp);
      words.push_back(folded);
      continue;
    }
    folded.clear();
    appendFolded(folded, cp);
    for (size_t k = 0; k < folded.size();) {
      size_t start = k;
      char32_t piece = nextCodePoint(folded, k);
      if (inRanges(kPunctuation, piece)) {
        finishWord();
        words.emplace_back(folded.substr(start, k - start));
      } else if (inRanges(kSpaces, piece)) {
        finishWord();
      } else {
        word.append(folded, start, k - start);
      }
    }
  }
  finishWord();
  return words;
}

Expected<WordPiece> WordPiece::fromTokens(std::vector<std::string> tokens,
                                          const std::string &where) {
  WordPiece vocab;
  vocab.tokens = std::move(tokens);
  if (vocab.tokens.empty())
    return Status::error(where + ": the vocabulary is empty");
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    auto [it, added] = vocab.ids.emplace(vocab.tokens[i], int32_t(i));
    if (!added)
      return Status::error(where + ":" + std::to_string(i + 1) + ": token '" +
                           vocab.tokens[i] + "' repeats line " +
                           std::to_string(it->second + 1));
  }
  vocab.unk = vocab.find("[UNK]");
  if (vocab.unk < 0)
    return Status::error(where + ": the vocabulary has no [UNK] token");
  return vocab;
}

Expected<WordPiece> WordPiece::load(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Status::error(path + ": cannot read the WordPiece vocabulary");
  std::vector<std::string> tokens;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    tokens.push_back(std::move(line));
  }
  if (in.bad())
    return Status::error(path + ": cannot read the WordPiece vocabulary");
  if (tokens.size() > size_t(std::numeric_limits<int32_t>::max()))
    return Status::error(path + ": too many tokens");
  return fromTokens(std::move(tokens), path);
}

int32_t WordPiece::find(const std::string &token) const {
  auto it = ids.find(token);
  return it == ids.end() ? -1 : it->second;
}

void WordPiece::encodeWord(const std::string &word,
                           std::vector<int32_t> &out) const {
  // The byte offsets of the word's code points, and its end.
  std::vector<size_t> starts;
  for (size_t i = 0; i < word.size(); nextCodePoint(word, i))
    starts.push_back(i);
  if (starts.size() > kMaxWordChars) {
    out.push_back(unk);
    return;
  }
  starts.push_back(word.size());
  size_t produced = out.size();
  std::string candidate;
  for (size_t begin = 0; begin + 1 < starts.size();) {
    int32_t match = -1;
    size_t end = starts.size() - 1;
    for (; end > begin; --end) {
      candidate = begin ? "##" : "";
      candidate.append(word, starts[begin], starts[end] - starts[begin]);
      if ((match = find(candidate)) >= 0)
        break;
    }
    if (match < 0) {
      out.resize(produced);
      out.push_back(unk);
      return;
    }
    out.push_back(match);
    begin = end;
  }
}

std::vector<int32_t> WordPiece::encode(std::string_view text) const {
  std::vector<int32_t> out;
  for (const std::string &word : basicTokenize(text))
    encodeWord(word, out);
  return out;
}

std::string WordPiece::decode(const std::vector<int32_t> &pieces) const {
  std::string text;
  for (int32_t id : pieces) {
    const std::string &piece =
        id >= 0 && id < size() ? tokens[id] : tokens[unk];
    if (piece.rfind("##", 0) == 0) {
      text += piece.substr(2);
      continue;
    }
    if (!text.empty())
      text += ' ';
    text += piece;
  }
  return text;
}

} // namespace mixer::data
