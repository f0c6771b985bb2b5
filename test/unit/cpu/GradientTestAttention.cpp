//===- GradientTestAttention.cpp - attentionBackward ----------------------===//

#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/cpu/TransformerGradients.h"
#include "test/unit/cpu/GradientTestUtil.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::expectClose;
using test::randomFloats;

constexpr int32_t kPad = 0;
/// Gradients through the softmax subtract the row's weighted mean from each
/// dP entry; in fp32 that cancellation costs about one more digit.
constexpr double kAttentionRelTol = 1e-4;

struct Shape {
  int64_t batch, seq, heads, headDim;
  int64_t size() const { return batch * seq * heads * headDim; }
};

/// Token ids with trailing padding: example b has `seq - b*step` real tokens;
/// the last example is all padding when `allPadLast`.
std::vector<int32_t> paddedIds(const Shape &s, int64_t step, bool allPadLast) {
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

struct Inputs {
  std::vector<float> q, k, v, dout;
};

Inputs makeInputs(const Shape &s, uint32_t seed) {
  return {randomFloats(s.size(), seed, -2.0f, 2.0f),
          randomFloats(s.size(), seed + 1, -2.0f, 2.0f),
          randomFloats(s.size(), seed + 2), randomFloats(s.size(), seed + 3)};
}

const char *kIdsNames[] = {"none", "padded", "all-pad example"};

// Odd sizes, one token, sequences that are not powers of two and sequences
// longer than one 128-query block (with a partial last block).
const Shape kShapes[] = {{1, 1, 1, 1},  {2, 3, 2, 4},    {2, 12, 3, 8},
                         {3, 7, 1, 13}, {1, 100, 2, 16}, {2, 130, 1, 8},
                         {3, 300, 2, 8}};

TEST(AttentionBackwardTest, MatchesReferenceWithMasks) {
  for (const Shape &s : kShapes)
    for (int idsKind = 0; idsKind < 3; ++idsKind)
      for (bool causal : {false, true}) {
        Inputs in = makeInputs(s, 1);
        std::vector<int32_t> ids =
            paddedIds(s, std::max<int64_t>(s.seq / 3, 1), idsKind == 2);
        const int32_t *idsPtr = idsKind == 0 ? nullptr : ids.data();
        std::vector<float> dq(s.size()), dk(s.size()), dv(s.size());
        std::vector<float> dqRef(s.size()), dkRef(s.size()), dvRef(s.size());
        attentionBackward(in.q.data(), in.k.data(), in.v.data(), idsPtr,
                          in.dout.data(), dq.data(), dk.data(), dv.data(),
                          s.batch, s.seq, s.heads, s.headDim, kPad, causal);
        reference::attentionBackward(in.q.data(), in.k.data(), in.v.data(),
                                     idsPtr, in.dout.data(), dqRef.data(),
                                     dkRef.data(), dvRef.data(), s.batch, s.seq,
                                     s.heads, s.headDim, kPad, causal);
        std::string what =
            "attentionBackward batch=" + std::to_string(s.batch) +
            " seq=" + std::to_string(s.seq) +
            " heads=" + std::to_string(s.heads) +
            " headDim=" + std::to_string(s.headDim) +
            " ids=" + kIdsNames[idsKind] + " causal=" + std::to_string(causal);
        expectClose(dq, dqRef, kAttentionRelTol, what + " dq");
        expectClose(dk, dkRef, kAttentionRelTol, what + " dk");
        expectClose(dv, dvRef, kAttentionRelTol, what + " dv");
      }
}

TEST(AttentionBackwardTest, AllPadExampleAttendsUniformly) {
  // Every token is padding: each output is the mean of V, so
  // dV[j] = mean_i dO[i] and Q, K get no gradient.
  const Shape s{1, 3, 1, 2};
  std::vector<int32_t> ids(3, kPad);
  Inputs in = makeInputs(s, 11);
  in.dout = {3, 0, 0, 6, 6, 0};
  for (bool causal : {false, true}) {
    std::vector<float> dq(6, 1.0f), dk(6, 1.0f), dv(6);
    attentionBackward(in.q.data(), in.k.data(), in.v.data(), ids.data(),
                      in.dout.data(), dq.data(), dk.data(), dv.data(), 1, 3, 1,
                      2, kPad, causal);
    EXPECT_EQ(dq, std::vector<float>(6, 0.0f));
    EXPECT_EQ(dk, std::vector<float>(6, 0.0f));
    expectClose(dv, {3, 2, 3, 2, 3, 2}, 1e-6,
                "all-pad dv causal=" + std::to_string(causal));
  }
}

TEST(AttentionBackwardTest, SingleKeyPassesGradientOnlyToV) {
  // With one token the probability is 1 whatever Q and K are: dV = dO and
  // dQ = dK = 0.
  const Shape s{2, 1, 2, 3};
  Inputs in = makeInputs(s, 21);
  std::vector<float> dq(s.size()), dk(s.size()), dv(s.size());
  attentionBackward(in.q.data(), in.k.data(), in.v.data(), nullptr,
                    in.dout.data(), dq.data(), dk.data(), dv.data(), s.batch,
                    s.seq, s.heads, s.headDim, kPad, false);
  EXPECT_EQ(dq, std::vector<float>(s.size(), 0.0f));
  EXPECT_EQ(dk, std::vector<float>(s.size(), 0.0f));
  EXPECT_EQ(dv, in.dout);
}

TEST(AttentionBackwardTest, NullOutputsLeaveTheOthersUnchanged) {
  const Shape s{2, 140, 2, 8};
  Inputs in = makeInputs(s, 31);
  std::vector<int32_t> ids = paddedIds(s, 50, false);
  std::vector<float> dq(s.size()), dk(s.size()), dv(s.size());
  attentionBackward(in.q.data(), in.k.data(), in.v.data(), ids.data(),
                    in.dout.data(), dq.data(), dk.data(), dv.data(), s.batch,
                    s.seq, s.heads, s.headDim, kPad, true);
  std::vector<float> dkOnly(s.size()), dvOnly(s.size());
  attentionBackward(in.q.data(), in.k.data(), in.v.data(), ids.data(),
                    in.dout.data(), nullptr, dkOnly.data(), nullptr, s.batch,
                    s.seq, s.heads, s.headDim, kPad, true);
  attentionBackward(in.q.data(), in.k.data(), in.v.data(), ids.data(),
                    in.dout.data(), nullptr, nullptr, dvOnly.data(), s.batch,
                    s.seq, s.heads, s.headDim, kPad, true);
  test::expectBitwiseEqual(dkOnly, dk, "dk alone");
  test::expectBitwiseEqual(dvOnly, dv, "dv alone");
}

TEST(AttentionBackwardTest, ReferenceMatchesFiniteDifferences) {
  // Three examples: unpadded, padded, all padding.
  const Shape s{3, 5, 2, 3};
  std::vector<int32_t> ids = paddedIds(s, 2, true);
  for (bool causal : {false, true}) {
    Inputs in = makeInputs(s, 41);
    std::vector<float> dq(s.size()), dk(s.size()), dv(s.size()), out(s.size());
    reference::attentionBackward(in.q.data(), in.k.data(), in.v.data(),
                                 ids.data(), in.dout.data(), dq.data(),
                                 dk.data(), dv.data(), s.batch, s.seq, s.heads,
                                 s.headDim, kPad, causal);
    auto objective = [&] {
      reference::attention(in.q.data(), in.k.data(), in.v.data(), ids.data(),
                           out.data(), s.batch, s.seq, s.heads, s.headDim, kPad,
                           causal);
      return test::dot(in.dout, out);
    };
    std::string what = "attention causal=" + std::to_string(causal);
    test::expectGradientMatchesDifferences(in.q, dq, objective, what + " dq");
    test::expectGradientMatchesDifferences(in.k, dk, objective, what + " dk");
    test::expectGradientMatchesDifferences(in.v, dv, objective, what + " dv");
  }
}

TEST(AttentionBackwardTest, MatchesReferenceWithDropout) {
  for (const Shape &s : kShapes)
    for (int idsKind = 0; idsKind < 3; ++idsKind)
      for (bool causal : {false, true}) {
        Inputs in = makeInputs(s, 1);
        std::vector<int32_t> ids =
            paddedIds(s, std::max<int64_t>(s.seq / 3, 1), idsKind == 2);
        const int32_t *idsPtr = idsKind == 0 ? nullptr : ids.data();
        AttentionDropout dropout = AttentionDropout::make(0.3, 5, 2, 17);
        std::vector<float> dq(s.size()), dk(s.size()), dv(s.size());
        std::vector<float> dqRef(s.size()), dkRef(s.size()), dvRef(s.size());
        attentionBackward(in.q.data(), in.k.data(), in.v.data(), idsPtr,
                          in.dout.data(), dq.data(), dk.data(), dv.data(),
                          s.batch, s.seq, s.heads, s.headDim, kPad, causal,
                          dropout);
        reference::attentionBackward(in.q.data(), in.k.data(), in.v.data(),
                                     idsPtr, in.dout.data(), dqRef.data(),
                                     dkRef.data(), dvRef.data(), s.batch, s.seq,
                                     s.heads, s.headDim, kPad, causal, dropout);
        std::string what =
            "attentionBackward with dropout seq=" + std::to_string(s.seq) +
            " heads=" + std::to_string(s.heads) + " ids=" + kIdsNames[idsKind] +
            " causal=" + std::to_string(causal);
        expectClose(dq, dqRef, kAttentionRelTol, what + " dq");
        expectClose(dk, dkRef, kAttentionRelTol, what + " dk");
        expectClose(dv, dvRef, kAttentionRelTol, what + " dv");
      }
}

TEST(AttentionBackwardTest, NoDropoutAtRateZeroOrForANegativeSeed) {
  const Shape s{2, 140, 2, 8};
  Inputs in = makeInputs(s, 61);
  std::vector<int32_t> ids = paddedIds(s, 50, false);
  auto run = [&](const AttentionDropout &dropout) {
    std::vector<float> grads(3 * s.size());
    float *g = grads.data();
    attentionBackward(in.q.data(), in.k.data(), in.v.data(), ids.data(),
                      in.dout.data(), g, g + s.size(), g + 2 * s.size(),
                      s.batch, s.seq, s.heads, s.headDim, kPad, true, dropout);
    return grads;
  };
  std::vector<float> plain = run({});
  test::expectBitwiseEqual(run(AttentionDropout::make(0.3, -2, 1, 4)), plain,
                           "negative seed");
  test::expectBitwiseEqual(run(AttentionDropout::make(0.0, 3, 1, 4)), plain,
                           "rate 0");
  EXPECT_NE(run(AttentionDropout::make(0.3, 3, 1, 4)), plain);
}

TEST(AttentionBackwardTest, ReferenceWithDropoutMatchesFiniteDifferences) {
  // The mask is fixed by the key, so the dropped attention is a smooth
  // function of Q, K and V.
  const Shape s{3, 5, 2, 3};
  std::vector<int32_t> ids = paddedIds(s, 2, true);
  AttentionDropout dropout = AttentionDropout::make(0.4, 9, 1, 2);
  for (bool causal : {false, true}) {
    Inputs in = makeInputs(s, 71);
    std::vector<float> dq(s.size()), dk(s.size()), dv(s.size()), out(s.size());
    reference::attentionBackward(in.q.data(), in.k.data(), in.v.data(),
                                 ids.data(), in.dout.data(), dq.data(),
                                 dk.data(), dv.data(), s.batch, s.seq, s.heads,
                                 s.headDim, kPad, causal, dropout);
    auto objective = [&] {
      reference::attention(in.q.data(), in.k.data(), in.v.data(), ids.data(),
                           out.data(), s.batch, s.seq, s.heads, s.headDim, kPad,
                           causal, dropout);
      return test::dot(in.dout, out);
    };
    std::string what = "attention dropout causal=" + std::to_string(causal);
    test::expectGradientMatchesDifferences(in.q, dq, objective, what + " dq");
    test::expectGradientMatchesDifferences(in.k, dk, objective, what + " dk");
    test::expectGradientMatchesDifferences(in.v, dv, objective, what + " dv");
  }
}

TEST(AttentionBackwardTest, ThreadCountDoesNotChangeBits) {
  const Shape s{2, 200, 2, 16};
  Inputs in = makeInputs(s, 51);
  std::vector<int32_t> ids = paddedIds(s, 60, false);
  int64_t n = s.size();
  for (bool causal : {false, true})
    for (double rate : {0.0, 0.25})
      test::expectThreadCountIndependent(
          3 * n,
          [&](float *out) {
            attentionBackward(in.q.data(), in.k.data(), in.v.data(), ids.data(),
                              in.dout.data(), out, out + n, out + 2 * n,
                              s.batch, s.seq, s.heads, s.headDim, kPad, causal,
                              AttentionDropout::make(rate, 3, 0, 8));
          },
          "attentionBackward causal=" + std::to_string(causal) +
              " dropout=" + std::to_string(rate));
}

} // namespace
} // namespace mixer::cpu
