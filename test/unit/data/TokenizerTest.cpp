//===- TokenizerTest.cpp - special ids and model checks -------------------===//

#include "DataTestUtil.h"

#include "runtime/data/Tokenizer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>

namespace mixer::data::test {
namespace {

using ::testing::HasSubstr;

TEST(TokenizerTest, ResolvesSpecialIds) {
  Tokenizer tokenizer = loadTokenizer();
  const SpecialIds &ids = tokenizer.specialIds();
  EXPECT_EQ(ids.unk, kUnk);
  EXPECT_EQ(ids.bos, kBos);
  EXPECT_EQ(ids.eos, kEos);
  EXPECT_EQ(ids.pad, kPad);
  EXPECT_EQ(ids.cls, kCls);
  EXPECT_EQ(ids.sep, kSep);
  EXPECT_EQ(ids.mask, kMask);
  EXPECT_EQ(tokenizer.vocabSize(), DataEnv::get().reference.GetPieceSize());
  EXPECT_EQ(tokenizer.path(), DataEnv::get().modelPath);
}

TEST(TokenizerTest, OrdinaryIdsExcludeEverySpecialPiece) {
  Tokenizer tokenizer = loadTokenizer();
  // The model has no unused pieces: every id past the seven special ones.
  std::vector<int32_t> expected(tokenizer.vocabSize() - 7);
  std::iota(expected.begin(), expected.end(), 7);
  EXPECT_EQ(tokenizer.ordinaryIds(), expected);
}

TEST(TokenizerTest, EncodesLikeSentencePiece) {
  Tokenizer tokenizer = loadTokenizer();
  std::string text = "the quick brown fox jumps over the lazy dog.";
  auto ids = tokenizer.encode(text, "here");
  ASSERT_TRUE(ids.ok()) << ids.message();
  EXPECT_EQ(*ids, DataEnv::get().ids(text));
  EXPECT_EQ(tokenizer.decode(*ids), text);
  // The special pieces are whole pieces of the text.
  EXPECT_EQ(*tokenizer.encode("[CLS]", "here"),
            (std::vector<int32_t>{DataEnv::get().ids("[CLS]")}));
  EXPECT_THAT(DataEnv::get().ids("[MASK]"), ::testing::Contains(kMask));
}

TEST(TokenizerTest, RefusesATextAboveTheLimit) {
  Tokenizer tokenizer = loadTokenizer();
  std::string text(Tokenizer::kMaxTextBytes + 1, 'a');
  auto ids = tokenizer.encode(text, "corpus.txt:7");
  ASSERT_FALSE(ids.ok());
  EXPECT_EQ(ids.message(),
            "corpus.txt:7: a text of 1048577 bytes, above the 1048576 bytes "
            "the tokenizer takes at once (put each paragraph on a line of its "
            "own)");
}

TEST(TokenizerTest, MissingSpecialPiecesNameTheModel) {
  std::string path =
      DataEnv::get().train("plain", "--pad_id=3 --unk_id=0 --bos_id=1 "
                                    "--eos_id=2");
  auto tokenizer = Tokenizer::load(path);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.message(),
            path + ": the SentencePiece model lacks [CLS], [SEP], [MASK]; "
                   "train it with "
                   "--user_defined_symbols=[CLS],[SEP],[MASK] "
                   "(scripts/train-tokenizer does)");

  std::string partial = DataEnv::get().train(
      "partial", "--pad_id=3 --user_defined_symbols=[CLS]");
  auto partialTokenizer = Tokenizer::load(partial);
  ASSERT_FALSE(partialTokenizer.ok());
  EXPECT_THAT(partialTokenizer.message(), HasSubstr("lacks [SEP], [MASK];"));
}

TEST(TokenizerTest, MissingPadIdNamesTheModel) {
  std::string path = DataEnv::get().train(
      "nopad", "--user_defined_symbols=[CLS],[SEP],[MASK]");
  auto tokenizer = Tokenizer::load(path);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.message(),
            path + ": the SentencePiece model has no pad id; train it with "
                   "--pad_id set");
}

TEST(TokenizerTest, UnreadableModel) {
  std::string path = DataEnv::get().file("missing.model");
  auto tokenizer = Tokenizer::load(path);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.message(),
              HasSubstr(path + ": cannot load the SentencePiece model"));
}

TEST(TokenizerTest, ChecksTheModelDescription) {
  Tokenizer tokenizer = loadTokenizer();
  int64_t vocab = tokenizer.vocabSize();
  EXPECT_TRUE(tokenizer.checkMatches(vocab, 3).ok());
  Status wrongVocab = tokenizer.checkMatches(32000, 3);
  ASSERT_FALSE(wrongVocab.ok());
  EXPECT_EQ(wrongVocab.message(),
            tokenizer.path() + ": the tokenizer has " + std::to_string(vocab) +
                " pieces but the model's vocab_size is 32000");
  Status wrongPad = tokenizer.checkMatches(vocab, 0);
  ASSERT_FALSE(wrongPad.ok());
  EXPECT_EQ(wrongPad.message(), tokenizer.path() +
                                    ": the tokenizer's pad id is 3 but the "
                                    "model's pad_id is 0");
}

} // namespace
} // namespace mixer::data::test
