//===- GradientTestEmbedding.cpp - embedBackward and the row gathers ------===//

#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/cpu/TransformerGradients.h"
#include "test/unit/cpu/GradientTestUtil.h"
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

/// n ids uniform in [0, size); with `skewed`, half of them are id 0 (a
/// padding token dominating the batch).
std::vector<int32_t> randomIds(int64_t n, int64_t size, uint32_t seed,
                               bool skewed = false) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0,
                                              static_cast<int32_t>(size - 1));
  std::vector<int32_t> ids(n);
  for (int32_t &id : ids)
    id = skewed && rng() % 2 ? 0 : dist(rng);
  return ids;
}

struct EmbedShape {
  int64_t batch, seq, dEmb, vocab, posRows, typeVocab;
};

// One token; a table wider than one scatter block (256); more position rows
// than positions; many repeats of few ids.
const EmbedShape kShapes[] = {{1, 1, 1, 1, 1, 1},
                              {2, 5, 3, 7, 5, 2},
                              {3, 17, 300, 50, 20, 4},
                              {4, 33, 16, 5, 40, 3},
                              {2, 64, 100, 1000, 64, 2}};

TEST(EmbedBackwardTest, MatchesReference) {
  for (const EmbedShape &s : kShapes)
    for (bool withTypes : {false, true})
      for (bool accumulate : {false, true}) {
        int64_t tokens = s.batch * s.seq;
        auto ids = randomIds(tokens, s.vocab, 1, true);
        auto typeIds = randomIds(tokens, s.typeVocab, 2);
        auto dy = randomFloats(tokens * s.dEmb, 3);
        auto word = randomFloats(s.vocab * s.dEmb, 4);
        auto pos = randomFloats(s.posRows * s.dEmb, 5);
        auto type = randomFloats(s.typeVocab * s.dEmb, 6);
        auto wordRef = word, posRef = pos, typeRef = type;
        const int32_t *types = withTypes ? typeIds.data() : nullptr;
        embedBackward(ids.data(), types, dy.data(), word.data(), pos.data(),
                      type.data(), s.batch, s.seq, s.dEmb, s.vocab, s.posRows,
                      s.typeVocab, accumulate);
        reference::embedBackward(ids.data(), types, dy.data(), wordRef.data(),
                                 posRef.data(), typeRef.data(), s.batch, s.seq,
                                 s.dEmb, s.vocab, s.posRows, s.typeVocab,
                                 accumulate);
        std::string what = "embedBackward batch=" + std::to_string(s.batch) +
                           " seq=" + std::to_string(s.seq) +
                           " dEmb=" + std::to_string(s.dEmb) +
                           " types=" + std::to_string(withTypes) +
                           " accumulate=" + std::to_string(accumulate);
        expectClose(word, wordRef, kRelTol, what + " dword");
        expectClose(pos, posRef, kRelTol, what + " dpos");
        expectClose(type, typeRef, kRelTol, what + " dtype");
      }
}

TEST(EmbedBackwardTest, HandComputedScatter) {
  // ids [2, 0, 2], types [1, 0, 1], dy = [1, 10, 100] (dEmb 1), four
  // position rows for three positions.
  std::vector<int32_t> ids = {2, 0, 2}, types = {1, 0, 1};
  std::vector<float> dy = {1, 10, 100};
  std::vector<float> word(4, -1.0f), pos(4, -1.0f), type(2, -1.0f);
  embedBackward(ids.data(), types.data(), dy.data(), word.data(), pos.data(),
                type.data(), 1, 3, 1, 4, 4, 2, false);
  EXPECT_EQ(word, (std::vector<float>{10, 0, 101, 0}));
  EXPECT_EQ(pos, (std::vector<float>{1, 10, 100, 0}));
  EXPECT_EQ(type, (std::vector<float>{10, 101}));
  // Accumulating adds onto the tables; null tables are skipped.
  embedBackward(ids.data(), nullptr, dy.data(), word.data(), nullptr,
                type.data(), 1, 3, 1, 4, 4, 2, true);
  EXPECT_EQ(word, (std::vector<float>{20, 0, 202, 0}));
  EXPECT_EQ(type, (std::vector<float>{121, 101}));
}

TEST(EmbedBackwardTest, RejectsBadIds) {
  std::vector<int32_t> ids = {1, 7}, types = {0, 2};
  std::vector<float> dy(2), word(5), pos(2), type(2);
  auto expectError = [&](auto &&call, const std::string &message) {
    try {
      call();
      ADD_FAILURE() << "no error for " << message;
    } catch (const KernelError &error) {
      EXPECT_EQ(error.message, message);
    }
  };
  for (bool optimized : {true, false}) {
    auto run = [&](const int32_t *typeIds, int64_t vocab, int64_t posRows) {
      return [&, typeIds, vocab, posRows] {
        (optimized ? embedBackward : reference::embedBackward)(
            ids.data(), typeIds, dy.data(), word.data(), pos.data(),
            type.data(), 1, 2, 1, vocab, posRows, 2, false);
      };
    };
    expectError(run(nullptr, 5, 2),
                "input_ids[0,1] = 7 is outside the vocabulary [0, 5)");
    expectError(run(types.data(), 8, 2),
                "type_ids[0,1] = 2 is outside the type vocabulary [0, 2)");
    expectError(run(nullptr, 8, 1),
                "embedding gradient: the position table has 1 rows, fewer "
                "than the 2 positions");
  }
}

TEST(EmbedBackwardTest, ReferenceMatchesFiniteDifferences) {
  const EmbedShape s{2, 4, 3, 5, 6, 2};
  int64_t tokens = s.batch * s.seq;
  auto ids = randomIds(tokens, s.vocab, 11);
  auto typeIds = randomIds(tokens, s.typeVocab, 12);
  auto dy = randomFloats(tokens * s.dEmb, 13);
  auto word = randomFloats(s.vocab * s.dEmb, 14);
  auto pos = randomFloats(s.posRows * s.dEmb, 15);
  auto type = randomFloats(s.typeVocab * s.dEmb, 16);
  std::vector<float> dword(word.size()), dpos(pos.size()), dtype(type.size()),
      y(tokens * s.dEmb);
  reference::embedBackward(ids.data(), typeIds.data(), dy.data(), dword.data(),
                           dpos.data(), dtype.data(), s.batch, s.seq, s.dEmb,
                           s.vocab, s.posRows, s.typeVocab, false);
  auto objective = [&] {
    reference::embed(ids.data(), typeIds.data(), word.data(), pos.data(),
                     type.data(), y.data(), s.batch, s.seq, s.dEmb, s.vocab,
                     s.typeVocab);
    return test::dot(dy, y);
  };
  test::expectGradientMatchesDifferences(word, dword, objective, "embed word");
  test::expectGradientMatchesDifferences(pos, dpos, objective, "embed pos");
  test::expectGradientMatchesDifferences(type, dtype, objective, "embed type");
}

TEST(EmbedBackwardTest, ThreadCountDoesNotChangeBits) {
  const EmbedShape s{8, 128, 64, 1000, 160, 3};
  int64_t tokens = s.batch * s.seq;
  auto ids = randomIds(tokens, s.vocab, 21, true);
  auto typeIds = randomIds(tokens, s.typeVocab, 22);
  auto dy = randomFloats(tokens * s.dEmb, 23);
  int64_t wordSize = s.vocab * s.dEmb, posSize = s.posRows * s.dEmb;
  test::expectThreadCountIndependent(
      wordSize + posSize + s.typeVocab * s.dEmb,
      [&](float *out) {
        embedBackward(ids.data(), typeIds.data(), dy.data(), out,
                      out + wordSize, out + wordSize + posSize, s.batch, s.seq,
                      s.dEmb, s.vocab, s.posRows, s.typeVocab, false);
      },
      "embedBackward");
}

struct GatherShape {
  int64_t batch, seq, d, numPositions;
};

const GatherShape kGatherShapes[] = {
    {1, 1, 1, 1}, {2, 7, 5, 3}, {3, 20, 40, 25}, {4, 128, 64, 20}};

TEST(GatherRowsTest, MatchesReferenceWithRepeatedPositions) {
  for (const GatherShape &s : kGatherShapes)
    for (bool accumulate : {false, true}) {
      // More positions than tokens forces repeats.
      auto positions = randomIds(s.batch * s.numPositions, s.seq, 31, true);
      auto x = randomFloats(s.batch * s.seq * s.d, 32);
      auto dy = randomFloats(s.batch * s.numPositions * s.d, 33);
      std::vector<float> y(dy.size()), yRef(dy.size());
      gatherRows(x.data(), positions.data(), y.data(), s.batch, s.seq, s.d,
                 s.numPositions);
      reference::gatherRows(x.data(), positions.data(), yRef.data(), s.batch,
                            s.seq, s.d, s.numPositions);
      std::string what = "gatherRows batch=" + std::to_string(s.batch) +
                         " seq=" + std::to_string(s.seq) +
                         " positions=" + std::to_string(s.numPositions) +
                         " accumulate=" + std::to_string(accumulate);
      test::expectBitwiseEqual(y, yRef, what);
      auto dx = randomFloats(x.size(), 34), dxRef = dx;
      gatherRowsBackward(dy.data(), positions.data(), dx.data(), s.batch, s.seq,
                         s.d, s.numPositions, accumulate);
      reference::gatherRowsBackward(dy.data(), positions.data(), dxRef.data(),
                                    s.batch, s.seq, s.d, s.numPositions,
                                    accumulate);
      expectClose(dx, dxRef, kRelTol, what + " backward");
    }
}

TEST(GatherRowsTest, HandComputedValuesAndErrors) {
  // x [1, 3, 1] = [1, 2, 3]; positions [2, 0, 2].
  std::vector<float> x = {1, 2, 3}, y(3);
  std::vector<int32_t> positions = {2, 0, 2};
  gatherRows(x.data(), positions.data(), y.data(), 1, 3, 1, 3);
  EXPECT_EQ(y, (std::vector<float>{3, 1, 3}));
  std::vector<float> dy = {1, 10, 100}, dx(3, 5.0f);
  gatherRowsBackward(dy.data(), positions.data(), dx.data(), 1, 3, 1, 3, false);
  EXPECT_EQ(dx, (std::vector<float>{10, 0, 101}));
  gatherRowsBackward(dy.data(), positions.data(), dx.data(), 1, 3, 1, 3, true);
  EXPECT_EQ(dx, (std::vector<float>{20, 0, 202}));
  positions[1] = 3;
  try {
    gatherRows(x.data(), positions.data(), y.data(), 1, 3, 1, 3);
    ADD_FAILURE() << "no error for a position past the sequence";
  } catch (const KernelError &error) {
    EXPECT_EQ(error.message,
              "positions[0,1] = 3 is outside the sequence [0, 3)");
  }
  EXPECT_THROW(gatherRowsBackward(dy.data(), positions.data(), dx.data(), 1, 3,
                                  1, 3, false),
               KernelError);
}

TEST(GatherRowsTest, ReferenceMatchesFiniteDifferences) {
  const GatherShape s{2, 5, 3, 4};
  auto positions = randomIds(s.batch * s.numPositions, s.seq, 41, true);
  auto x = randomFloats(s.batch * s.seq * s.d, 42);
  auto dy = randomFloats(s.batch * s.numPositions * s.d, 43);
  std::vector<float> dx(x.size()), y(dy.size());
  reference::gatherRowsBackward(dy.data(), positions.data(), dx.data(), s.batch,
                                s.seq, s.d, s.numPositions, false);
  test::expectGradientMatchesDifferences(
      x, dx,
      [&] {
        reference::gatherRows(x.data(), positions.data(), y.data(), s.batch,
                              s.seq, s.d, s.numPositions);
        return test::dot(dy, y);
      },
      "gatherRows");
}

TEST(GatherRowsTest, ThreadCountDoesNotChangeBits) {
  const GatherShape s{8, 128, 64, 80};
  auto positions = randomIds(s.batch * s.numPositions, s.seq, 51, true);
  auto dy = randomFloats(s.batch * s.numPositions * s.d, 52);
  test::expectThreadCountIndependent(
      s.batch * s.seq * s.d,
      [&](float *dx) {
        gatherRowsBackward(dy.data(), positions.data(), dx, s.batch, s.seq, s.d,
                           s.numPositions, false);
      },
      "gatherRowsBackward");
}

} // namespace
} // namespace mixer::cpu
