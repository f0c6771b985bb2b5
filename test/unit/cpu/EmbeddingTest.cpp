//===- EmbeddingTest.cpp - embed ------------------------------------------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::expectClose;
using test::kRelTol;
using test::randomFloats;

std::vector<int32_t> randomIds(int64_t n, uint32_t seed, int32_t size) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, size - 1);
  std::vector<int32_t> ids(n);
  for (int32_t &id : ids)
    id = dist(rng);
  return ids;
}

TEST(EmbedTest, MatchesReference) {
  struct Shape {
    int64_t batch, seq, dEmb, vocab, typeVocab, maxPositions;
  };
  const Shape shapes[] = {{1, 1, 1, 1, 1, 1},
                          {2, 3, 7, 11, 2, 5},
                          {3, 12, 13, 50, 4, 12},
                          {2, 100, 40, 300, 4, 128}};
  for (const Shape &s : shapes)
    for (bool withTypes : {false, true}) {
      auto word = randomFloats(s.vocab * s.dEmb, 1);
      auto pos = randomFloats(s.maxPositions * s.dEmb, 2);
      auto type = randomFloats(s.typeVocab * s.dEmb, 3);
      auto ids = randomIds(s.batch * s.seq, 4, s.vocab);
      auto typeIds = randomIds(s.batch * s.seq, 5, s.typeVocab);
      const int32_t *t = withTypes ? typeIds.data() : nullptr;
      int64_t n = s.batch * s.seq * s.dEmb;
      std::vector<float> y(n), expected(n);
      embed(ids.data(), t, word.data(), pos.data(), type.data(), y.data(),
            s.batch, s.seq, s.dEmb, s.vocab, s.typeVocab);
      reference::embed(ids.data(), t, word.data(), pos.data(), type.data(),
                       expected.data(), s.batch, s.seq, s.dEmb, s.vocab,
                       s.typeVocab);
      expectClose(y, expected, kRelTol,
                  "embed seq=" + std::to_string(s.seq) +
                      " types=" + std::to_string(withTypes));
    }
}

TEST(EmbedTest, HandComputedRow) {
  // word[2] + pos[1] + type[1] for the token at [0, 1].
  std::vector<float> word = {0, 0, 10, 20, 100, 200};
  std::vector<float> pos = {1, 2, 3, 4};
  std::vector<float> type = {0.5f, 0.25f, 1000, 2000};
  std::vector<int32_t> ids = {0, 2};
  std::vector<int32_t> typeIds = {0, 1};
  std::vector<float> y(4);
  embed(ids.data(), typeIds.data(), word.data(), pos.data(), type.data(),
        y.data(), 1, 2, 2, 3, 2);
  EXPECT_EQ(y, (std::vector<float>{1.5f, 2.25f, 1103, 2204}));
}

/// The KernelError message of running `run`, or "" if it does not throw.
template <typename Run> std::string errorOf(Run &&run) {
  try {
    run();
  } catch (const KernelError &error) {
    return error.message;
  }
  return "";
}

TEST(EmbedTest, RejectsIdsOutsideTheVocabulary) {
  const int64_t batch = 4, seq = 20, dEmb = 3, vocab = 32000;
  std::vector<float> word(vocab * dEmb), pos(seq * dEmb), type(4 * dEmb);
  std::vector<float> y(batch * seq * dEmb);
  auto ids = randomIds(batch * seq, 6, vocab);
  auto typeIds = randomIds(batch * seq, 7, 4);
  auto run = [&](auto embedFn) {
    return errorOf([&] {
      embedFn(ids.data(), typeIds.data(), word.data(), pos.data(), type.data(),
              y.data(), batch, seq, dEmb, vocab, 4);
    });
  };
  auto optimized = [](auto... args) { embed(args...); };
  auto plain = [](auto... args) { reference::embed(args...); };

  ids[3 * seq + 17] = 40000;
  const char *tooLarge =
      "input_ids[3,17] = 40000 is outside the vocabulary [0, 32000)";
  EXPECT_EQ(run(optimized), tooLarge);
  EXPECT_EQ(run(plain), tooLarge);

  // The first bad position (row-major) is the one named.
  ids[1 * seq + 2] = -1;
  const char *negative =
      "input_ids[1,2] = -1 is outside the vocabulary [0, 32000)";
  EXPECT_EQ(run(optimized), negative);
  EXPECT_EQ(run(plain), negative);

  ids = randomIds(batch * seq, 6, vocab);
  typeIds[2] = 4;
  const char *badType =
      "type_ids[0,2] = 4 is outside the type vocabulary [0, 4)";
  EXPECT_EQ(run(optimized), badType);
  EXPECT_EQ(run(plain), badType);
}

} // namespace
} // namespace mixer::cpu
