//===- AttentionTest.cpp - attention --------------------------------------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::expectClose;
using test::kRelTol;
using test::randomFloats;

constexpr int32_t kPad = 0;

struct AttentionShape {
  int64_t batch, seq, heads, headDim;
  int64_t size() const { return batch * seq * heads * headDim; }
};

std::string describe(const AttentionShape &s, const char *ids, bool causal) {
  return "attention batch=" + std::to_string(s.batch) +
         " seq=" + std::to_string(s.seq) + " heads=" + std::to_string(s.heads) +
         " headDim=" + std::to_string(s.headDim) + " ids=" + ids +
         " causal=" + std::to_string(causal);
}

/// Token ids with trailing padding: example b has `seq - b*step` real tokens
/// (at least none); the last example is all padding when `allPadLast`.
std::vector<int32_t> paddedIds(const AttentionShape &s, int64_t step,
                               bool allPadLast) {
  std::vector<int32_t> ids(s.batch * s.seq);
  for (int64_t b = 0; b < s.batch; ++b) {
    int64_t real = std::max<int64_t>(s.seq - b * step, 0);
    if (allPadLast && b == s.batch - 1)
      real = 0;
    for (int64_t t = 0; t < s.seq; ++t)
      ids[b * s.seq + t] = t < real ? static_cast<int32_t>(5 + t) : kPad;
  }
  return ids;
}

// Odd sizes, one token, sequences that are not powers of two and sequences
// longer than one 128-query block (with a partial last block).
const AttentionShape kShapes[] = {
    {1, 1, 1, 1},    {2, 3, 2, 4},   {2, 12, 3, 8}, {3, 7, 1, 13},
    {1, 100, 2, 16}, {2, 130, 1, 8}, {1, 300, 2, 8}};

TEST(AttentionTest, MatchesReferenceWithMasks) {
  for (const AttentionShape &s : kShapes)
    for (int idsKind = 0; idsKind < 3; ++idsKind)
      for (bool causal : {false, true}) {
        auto q = randomFloats(s.size(), 1, -2.0f, 2.0f);
        auto k = randomFloats(s.size(), 2, -2.0f, 2.0f);
        auto v = randomFloats(s.size(), 3);
        // 0: no ids; 1: trailing padding; 2: padding plus an all-pad example.
        std::vector<int32_t> ids =
            paddedIds(s, std::max<int64_t>(s.seq / 3, 1), idsKind == 2);
        const int32_t *idsPtr = idsKind == 0 ? nullptr : ids.data();
        std::vector<float> out(s.size()), expected(s.size());
        attention(q.data(), k.data(), v.data(), idsPtr, out.data(), s.batch,
                  s.seq, s.heads, s.headDim, kPad, causal);
        reference::attention(q.data(), k.data(), v.data(), idsPtr,
                             expected.data(), s.batch, s.seq, s.heads,
                             s.headDim, kPad, causal);
        const char *idsName[] = {"none", "padded", "all-pad example"};
        expectClose(out, expected, kRelTol,
                    describe(s, idsName[idsKind], causal));
      }
}

TEST(AttentionTest, PadInsideTheSequence) {
  // Pads in the middle of the sequence mask keys there, not just a suffix.
  const AttentionShape s{2, 140, 2, 8};
  std::vector<int32_t> ids(s.batch * s.seq, 7);
  for (int64_t t : {0, 5, 6, 33, 127, 128, 139, 140 + 64})
    ids[t] = kPad;
  auto q = randomFloats(s.size(), 4);
  auto k = randomFloats(s.size(), 5);
  auto v = randomFloats(s.size(), 6);
  for (bool causal : {false, true}) {
    std::vector<float> out(s.size()), expected(s.size());
    attention(q.data(), k.data(), v.data(), ids.data(), out.data(), s.batch,
              s.seq, s.heads, s.headDim, kPad, causal);
    reference::attention(q.data(), k.data(), v.data(), ids.data(),
                         expected.data(), s.batch, s.seq, s.heads, s.headDim,
                         kPad, causal);
    expectClose(out, expected, kRelTol, describe(s, "inner pads", causal));
  }
}

TEST(AttentionTest, HandComputedMasks) {
  // One head, headDim 1, seq 3, q = k = 0: every unmasked logit is equal, so
  // the output is the plain mean of the unmasked values.
  std::vector<float> q(3, 0.0f), k(3, 0.0f), v = {1.0f, 2.0f, 6.0f};
  std::vector<float> out(3);
  // Causal: query i averages values 0..i.
  attention(q.data(), k.data(), v.data(), nullptr, out.data(), 1, 3, 1, 1, kPad,
            true);
  EXPECT_FLOAT_EQ(out[0], 1.0f);
  EXPECT_FLOAT_EQ(out[1], 1.5f);
  EXPECT_FLOAT_EQ(out[2], 3.0f);
  // Token 1 is padding: real queries skip key 1; the pad query, fully
  // masked, averages all three keys, even under the causal mask.
  std::vector<int32_t> ids = {4, kPad, 9};
  attention(q.data(), k.data(), v.data(), ids.data(), out.data(), 1, 3, 1, 1,
            kPad, false);
  EXPECT_FLOAT_EQ(out[0], 3.5f);
  EXPECT_FLOAT_EQ(out[1], 3.0f);
  EXPECT_FLOAT_EQ(out[2], 3.5f);
  attention(q.data(), k.data(), v.data(), ids.data(), out.data(), 1, 3, 1, 1,
            kPad, true);
  EXPECT_FLOAT_EQ(out[0], 1.0f);
  EXPECT_FLOAT_EQ(out[1], 3.0f);
  EXPECT_FLOAT_EQ(out[2], 3.5f);
}

TEST(AttentionTest, ScalesLogitsByInverseSqrtHeadDim) {
  // headDim 4, q = [1,1,1,1], k0 = 0, k1 = [a,a,a,a] with a = ln(3)/2: the
  // logits 4a / sqrt(4) = ln 3 and 0 give weights [1/4, 3/4].
  const float a = std::log(3.0f) / 2.0f;
  std::vector<float> q = {1, 1, 1, 1, 1, 1, 1, 1};
  std::vector<float> k = {0, 0, 0, 0, a, a, a, a};
  std::vector<float> v = {4, 0, 0, 0, 0, 8, 0, 0};
  std::vector<float> out(8);
  attention(q.data(), k.data(), v.data(), nullptr, out.data(), 1, 2, 1, 4, kPad,
            false);
  EXPECT_NEAR(out[0], 1.0f, 1e-6);
  EXPECT_NEAR(out[1], 6.0f, 1e-6);
}

TEST(AttentionTest, MatchesReferenceWithDropout) {
  for (const AttentionShape &s : kShapes)
    for (int idsKind = 0; idsKind < 3; ++idsKind)
      for (bool causal : {false, true})
        for (double rate : {0.1, 0.5}) {
          auto q = randomFloats(s.size(), 1, -2.0f, 2.0f);
          auto k = randomFloats(s.size(), 2, -2.0f, 2.0f);
          auto v = randomFloats(s.size(), 3);
          std::vector<int32_t> ids =
              paddedIds(s, std::max<int64_t>(s.seq / 3, 1), idsKind == 2);
          const int32_t *idsPtr = idsKind == 0 ? nullptr : ids.data();
          AttentionDropout dropout = AttentionDropout::make(rate, 7, 3, 11);
          std::vector<float> out(s.size()), expected(s.size());
          attention(q.data(), k.data(), v.data(), idsPtr, out.data(), s.batch,
                    s.seq, s.heads, s.headDim, kPad, causal, dropout);
          reference::attention(q.data(), k.data(), v.data(), idsPtr,
                               expected.data(), s.batch, s.seq, s.heads,
                               s.headDim, kPad, causal, dropout);
          const char *idsName[] = {"none", "padded", "all-pad example"};
          expectClose(out, expected, kRelTol,
                      describe(s, idsName[idsKind], causal) +
                          " dropout=" + std::to_string(rate));
        }
}

TEST(AttentionTest, HandComputedDropout) {
  // Two heads of headDim 1, seq 3, q = k = 0: every probability is 1/3, so
  // output (i, h) = sum_j keep(h, i, j) v[j, h] / (3 (1 - rate)), where
  // keep(h, i, j) = [u(i0 + j) >= rate] for the element index
  // i0 = (h * 3 + i) * 3 of the [1, 2, 3, 3] probabilities.
  const double rate = 0.4;
  std::vector<float> q(6, 0.0f), k(6, 0.0f), v = {1, 10, 2, 20, 6, 60};
  std::vector<float> out(6);
  AttentionDropout dropout = AttentionDropout::make(rate, 123, 4, 9);
  attention(q.data(), k.data(), v.data(), nullptr, out.data(), 1, 3, 2, 1, kPad,
            false, dropout);
  CounterUniforms u(123, 4, 9);
  int dropped = 0;
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 3; ++i) {
      double sum = 0;
      for (int j = 0; j < 3; ++j) {
        bool keep = u.at((h * 3 + i) * 3 + j) >= rate;
        dropped += !keep;
        sum += keep ? v[j * 2 + h] : 0.0;
      }
      EXPECT_NEAR(out[i * 2 + h], sum / (3 * (1 - rate)), 1e-5)
          << "query " << i << " head " << h;
    }
  // The draw of this key drops some of the 18 probabilities, not all.
  EXPECT_GT(dropped, 0);
  EXPECT_LT(dropped, 18);
}

TEST(AttentionTest, NoDropoutAtRateZeroOrForANegativeSeed) {
  const AttentionShape s{2, 130, 2, 8};
  auto q = randomFloats(s.size(), 4);
  auto k = randomFloats(s.size(), 5);
  auto v = randomFloats(s.size(), 6);
  auto ids = paddedIds(s, 40, false);
  auto run = [&](const AttentionDropout &dropout) {
    std::vector<float> out(s.size());
    attention(q.data(), k.data(), v.data(), ids.data(), out.data(), s.batch,
              s.seq, s.heads, s.headDim, kPad, true, dropout);
    return out;
  };
  std::vector<float> plain = run({});
  EXPECT_FALSE(AttentionDropout::make(0.3, -1, 2, 5).active());
  test::expectBitwiseEqual(run(AttentionDropout::make(0.3, -1, 2, 5)), plain,
                           "negative seed");
  test::expectBitwiseEqual(run(AttentionDropout::make(0.0, 4, 2, 5)), plain,
                           "rate 0");
  // Another step draws another mask.
  std::vector<float> step5 = run(AttentionDropout::make(0.3, 4, 2, 5));
  EXPECT_NE(step5, plain);
  EXPECT_NE(step5, run(AttentionDropout::make(0.3, 4, 2, 6)));
}

TEST(AttentionTest, DropoutThreadCountDoesNotChangeBits) {
  const AttentionShape s{2, 150, 3, 16};
  auto q = randomFloats(s.size(), 7);
  auto k = randomFloats(s.size(), 8);
  auto v = randomFloats(s.size(), 9);
  auto ids = paddedIds(s, 40, false);
  test::expectThreadCountIndependent(
      s.size(),
      [&](float *out) {
        attention(q.data(), k.data(), v.data(), ids.data(), out, s.batch, s.seq,
                  s.heads, s.headDim, kPad, false,
                  AttentionDropout::make(0.2, 1, 0, 3));
      },
      "attention with dropout");
}

TEST(AttentionTest, ThreadCountDoesNotChangeBits) {
  const AttentionShape s{2, 150, 3, 16};
  auto q = randomFloats(s.size(), 7);
  auto k = randomFloats(s.size(), 8);
  auto v = randomFloats(s.size(), 9);
  auto ids = paddedIds(s, 40, false);
  test::expectThreadCountIndependent(
      s.size(),
      [&](float *out) {
        attention(q.data(), k.data(), v.data(), ids.data(), out, s.batch, s.seq,
                  s.heads, s.headDim, kPad, true);
      },
      "attention");
}

} // namespace
} // namespace mixer::cpu
