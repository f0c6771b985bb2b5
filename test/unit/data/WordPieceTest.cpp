//===- WordPieceTest.cpp - BERT basic tokenisation and word pieces --------===//
//
// Expectations derived by hand from BERT's rules (runtime/data/WordPiece.h);
// scripts/compare-wordpiece checks real text against Hugging Face's
// tokenizer.
//
//===----------------------------------------------------------------------===//

#include "DataTestUtil.h"

#include "runtime/data/Tokenizer.h"
#include "runtime/data/WordPiece.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace mixer::data::test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Words = std::vector<std::string>;

TEST(WordPieceBasicTest, LowerCasesAndSplitsPunctuation) {
  EXPECT_EQ(WordPiece::basicTokenize("Hello, World!"),
            (Words{"hello", ",", "world", "!"}));
  // Every ASCII symbol is punctuation; runs of spaces separate nothing.
  EXPECT_EQ(WordPiece::basicTokenize("  $5 (x+y)=z's \t\n"),
            (Words{"$", "5", "(", "x", "+", "y", ")", "=", "z", "'", "s"}));
  // Non-ASCII punctuation (em dash, Pd; guillemets, Pi/Pf) splits too.
  EXPECT_EQ(WordPiece::basicTokenize("a\u2014b \u00abc\u00bb"),
            (Words{"a", "\u2014", "b", "\u00ab", "c", "\u00bb"}));
  EXPECT_TRUE(WordPiece::basicTokenize("").empty());
  EXPECT_TRUE(WordPiece::basicTokenize(" \t ").empty());
}

TEST(WordPieceBasicTest, StripsAccents) {
  // NFD, then the combining marks dropped: é = e + U+0301, Ç = C + U+0327.
  EXPECT_EQ(WordPiece::basicTokenize("H\u00e9llo \u00c7a na\u00efve"),
            (Words{"hello", "ca", "naive"}));
  // A combining mark written on its own is dropped as well.
  EXPECT_EQ(WordPiece::basicTokenize("e\u0301t\u00e9"), (Words{"ete"}));
  // İ (U+0130) decomposes to I + U+0307: the mark goes, I is lower-cased.
  EXPECT_EQ(WordPiece::basicTokenize("\u0130stanbul"), (Words{"istanbul"}));
  // Greek capitals lower-case letter by letter (no final-sigma rule).
  EXPECT_EQ(WordPiece::basicTokenize("\u039f\u03a3"), (Words{"\u03bf\u03c3"}));
}

TEST(WordPieceBasicTest, SplitsCjkIdeographs) {
  EXPECT_EQ(WordPiece::basicTokenize("ab\u4e2d\u6587cd"),
            (Words{"ab", "\u4e2d", "\u6587", "cd"}));
  // Hangul is not split but decomposed into its jamo: 한 = ᄒ ᅡ ᆫ.
  EXPECT_EQ(WordPiece::basicTokenize("\ud55c"), (Words{"\u1112\u1161\u11ab"}));
}

TEST(WordPieceBasicTest, RemovesControlsAndCleansSpaces) {
  // U+0001 (Cc) and U+200B (Cf) vanish inside a word; the no-break space
  // (Zs) and the line separator (a space character) separate words.
  EXPECT_EQ(WordPiece::basicTokenize("a\x01"
                                     "b\u200bc d\u00a0e\u2028f"),
            (Words{"abc", "d", "e", "f"}));
  // Bytes that are not UTF-8 read as U+FFFD, which is removed; so is NUL.
  EXPECT_EQ(WordPiece::basicTokenize(std::string("a\xff"
                                                 "b\xc3",
                                                 4)),
            (Words{"ab"}));
  EXPECT_EQ(WordPiece::basicTokenize(std::string("x\0y", 3)), (Words{"xy"}));
}

WordPiece vocabulary() {
  auto vocab = WordPiece::fromTokens({"[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                      "[MASK]", "un", "##aff", "##able", "aff",
                                      "able", "a", "##a", ",", "hello", "##s"},
                                     "test vocabulary");
  EXPECT_TRUE(vocab.ok()) << vocab.message();
  return std::move(*vocab);
}

TEST(WordPieceTest, GreedyLongestMatchFirst) {
  WordPiece vocab = vocabulary();
  // unaffable: "un", then "##affable" ... "##aff" is the longest match,
  // then "##able".
  EXPECT_THAT(vocab.encode("unaffable"), ElementsAre(5, 6, 7));
  EXPECT_THAT(vocab.encode("Hello, unaffables"),
              ElementsAre(13, 12, 5, 6, 7, 14));
  EXPECT_THAT(vocab.encode("aff able"), ElementsAre(8, 9));
  EXPECT_EQ(vocab.decode({13, 12, 5, 6, 7}), "hello , unaffable");
}

TEST(WordPieceTest, UnknownWords) {
  WordPiece vocab = vocabulary();
  // "un" matches but "##x" does not: the whole word is [UNK], not "un [UNK]".
  EXPECT_THAT(vocab.encode("unx able"), ElementsAre(1, 9));
  EXPECT_THAT(vocab.encode("\u00e9"), ElementsAre(1));
  // 100 characters are pieces; 101 are one [UNK].
  std::vector<int32_t> hundred = vocab.encode(std::string(100, 'a'));
  ASSERT_EQ(hundred.size(), 100u);
  EXPECT_EQ(hundred.front(), 10);
  EXPECT_EQ(hundred.back(), 11);
  EXPECT_THAT(vocab.encode(std::string(101, 'a')), ElementsAre(1));
}

TEST(WordPieceTest, RefusesBadVocabularies) {
  auto repeated = WordPiece::fromTokens({"[UNK]", "a", "b", "a"}, "v.txt");
  ASSERT_FALSE(repeated.ok());
  EXPECT_EQ(repeated.message(), "v.txt:4: token 'a' repeats line 2");
  auto noUnk = WordPiece::fromTokens({"a"}, "v.txt");
  ASSERT_FALSE(noUnk.ok());
  EXPECT_EQ(noUnk.message(), "v.txt: the vocabulary has no [UNK] token");
  auto missing = WordPiece::load("/nonexistent/vocab.txt");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.message(), HasSubstr("/nonexistent/vocab.txt"));
}

TEST(WordPieceTest, TokenizerChoosesWordPieceForTxtFiles) {
  std::string path = DataEnv::get().file("vocab.txt");
  writeText(path, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\n##s\n");
  auto tokenizer = Tokenizer::load(path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.message();
  EXPECT_TRUE(tokenizer->isWordPiece());
  const SpecialIds &ids = tokenizer->specialIds();
  EXPECT_EQ(ids.pad, 0);
  EXPECT_EQ(ids.unk, 1);
  EXPECT_EQ(ids.cls, 2);
  EXPECT_EQ(ids.sep, 3);
  EXPECT_EQ(ids.mask, 4);
  EXPECT_EQ(ids.bos, -1);
  EXPECT_THAT(tokenizer->ordinaryIds(), ElementsAre(5, 6, 7));
  size_t count = 0;
  auto row = tokenizer->encodeInput("Hello worlds", "t", 8, count);
  ASSERT_TRUE(row.ok());
  EXPECT_THAT(*row, ElementsAre(2, 5, 6, 7, 3));
  EXPECT_EQ(count, 5u);
  // Cut within the length, [SEP] kept.
  row = tokenizer->encodeInput("Hello worlds", "t", 3, count);
  ASSERT_TRUE(row.ok());
  EXPECT_THAT(*row, ElementsAre(2, 5, 3));
  EXPECT_EQ(count, 5u);

  writeText(path, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n");
  auto noMask = Tokenizer::load(path);
  ASSERT_FALSE(noMask.ok());
  EXPECT_EQ(noMask.message(), path + ": the WordPiece vocabulary lacks [MASK]");
  // Any other file is a SentencePiece model.
  EXPECT_FALSE(loadTokenizer().isWordPiece());
}

} // namespace
} // namespace mixer::data::test
