//===- AuxiliaryLossesTest.cpp - Router losses, regularisers, dropout -----===//
//
// The kernels of AuxiliaryLosses.h and CounterRandom.h: hand-computed and
// spec goldens, agreement with the double-precision references on edge and
// random shapes, the references against central differences of forward
// losses, and thread-count independence. Philox is checked against the
// published Random123 known answers, the counter layout against uniforms
// computed independently of this code.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/AuxiliaryLosses.h"
#include "runtime/cpu/CounterRandom.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/ReferenceAuxiliaryLosses.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "test/unit/cpu/GradientTestUtil.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::expectBitwiseEqual;
using test::expectClose;
using test::expectGradientMatchesDifferences;
using test::expectThreadCountIndependent;
using test::gridFloats;
using test::kRelTol;
using test::randomFloats;

/// Spec goldens carry 8 significant digits.
constexpr double kGoldenRelTol = 1e-6;

void expectRelativeNear(double actual, double expected, double rtol,
                        const std::string &what) {
  EXPECT_NEAR(actual, expected, rtol * std::fabs(expected)) << what;
}

struct Shape {
  int64_t tokens, experts;
  std::string name() const {
    return "N=" + std::to_string(tokens) + " E=" + std::to_string(experts);
  }
};

/// One token, one expert, sizes off the vector width, several token blocks,
/// and enough values for both threads.
const Shape kShapes[] = {{1, 1},   {1, 5},     {7, 3},   {100, 16},
                         {33, 37}, {4096, 16}, {600, 64}};

//===----------------------------------------------------------------------===//
// Counter-based uniforms
//===----------------------------------------------------------------------===//

TEST(CounterRandomTest, PhiloxKnownAnswers) {
  // Random123's published known answers for philox4x32-10.
  EXPECT_EQ(philox4x32({0, 0, 0, 0}, {0, 0}),
            (PhiloxCounter{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox4x32({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
                       {0xffffffff, 0xffffffff}),
            (PhiloxCounter{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox4x32({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
                       {0xa4093822, 0x299f31d0}),
            (PhiloxCounter{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

TEST(CounterRandomTest, UniformFromBitsKeepsTheTop24Bits) {
  EXPECT_EQ(uniformFromBits(0), 0.0f);
  EXPECT_EQ(uniformFromBits(0xff), 0.0f);
  EXPECT_EQ(uniformFromBits(0x100), 0x1p-24f);
  EXPECT_EQ(uniformFromBits(0x80000000u), 0.5f);
  EXPECT_EQ(uniformFromBits(0xffffffffu), 1.0f - 0x1p-24f);
}

TEST(CounterRandomTest, IndependentlyComputedUniforms) {
  // (word >> 8) of the draws of (seed 42, stream 3, step 7), elements 0..9,
  // from a separate Philox implementation that passes the known answers.
  const uint32_t top24[] = {16307987, 15742661, 12216128, 5240689,  13667794,
                            15705989, 12273805, 12830444, 12332622, 14990591};
  CounterUniforms uniforms(42, 3, 7);
  for (uint64_t i = 0; i < 10; ++i)
    EXPECT_EQ(uniforms.at(i), static_cast<float>(top24[i]) * 0x1p-24f)
        << "element " << i;
  std::array<float, 4> block = uniforms.block(2);
  for (uint64_t j = 0; j < 4; ++j)
    EXPECT_EQ(block[j], uniforms.at(8 + j)) << "block 2 word " << j;
}

TEST(CounterRandomTest, NegativeSeedAndHighCounterWord) {
  // Seed -1 is the key word 0xffffffff. Element 4 * (2^32 + 1) + 2 puts 1 in
  // both counter words of the block index; element 2 has the same low word.
  CounterUniforms uniforms(-1, 5, 0);
  EXPECT_EQ(uniforms.at(4 * ((uint64_t(1) << 32) + 1) + 2),
            14314748 * 0x1p-24f);
  EXPECT_EQ(uniforms.at(2), 536760 * 0x1p-24f);
}

TEST(CounterRandomTest, BatchMatchesSingleDraws) {
  // Batches from block 0, and across the carry of the block index into the
  // high counter word.
  for (uint64_t first : {uint64_t(0), (uint64_t(1) << 32) - 5}) {
    CounterUniforms uniforms(-7, 9, 11);
    float u[CounterUniforms::kBatchElements];
    uniforms.batch(first, u);
    for (int64_t j = 0; j < CounterUniforms::kBatchElements; ++j)
      EXPECT_EQ(u[j], uniforms.at(4 * first + j))
          << "first block " << first << " element " << j;
  }
}

TEST(CounterRandomTest, AShiftedTensorDrawsTheGlobalElements) {
  // A rank's slice starting at global element `first` (aligned to a block
  // or not) draws what the whole tensor draws there, element by element, by
  // block and by batch; the reference is the independently checked at().
  CounterUniforms whole(42, 3, 7);
  for (uint64_t first : {uint64_t(0), uint64_t(8), uint64_t(5), uint64_t(23)}) {
    CounterUniforms slice(42, 3, 7, first);
    for (uint64_t i = 0; i < 80; ++i)
      EXPECT_EQ(slice.at(i), whole.at(first + i)) << first << " + " << i;
    for (uint64_t b : {uint64_t(0), uint64_t(3)}) {
      std::array<float, 4> block = slice.block(b);
      for (uint64_t j = 0; j < 4; ++j)
        EXPECT_EQ(block[j], whole.at(first + 4 * b + j))
            << first << " block " << b;
    }
    float u[CounterUniforms::kBatchElements];
    slice.batch(2, u);
    for (int64_t j = 0; j < CounterUniforms::kBatchElements; ++j)
      EXPECT_EQ(u[j], whole.at(first + 8 + j)) << first << " batch " << j;
  }
}

//===----------------------------------------------------------------------===//
// Expert dropout
//===----------------------------------------------------------------------===//

std::vector<float> iota(int64_t n) {
  std::vector<float> x(n);
  std::iota(x.begin(), x.end(), 1.0f);
  return x;
}

TEST(ExpertDropoutTest, IndependentlyComputedMasks) {
  // With the uniforms above, rate 0.5 drops only element 3 at step 7, and
  // elements 0, 3, 4, 8, 9 at step 8.
  std::vector<float> x = iota(10), y(10);
  for (auto [step, dropped] :
       {std::pair<int64_t, std::vector<int>>{7, {3}},
        std::pair<int64_t, std::vector<int>>{8, {0, 3, 4, 8, 9}}}) {
    expertDropout(x.data(), y.data(), 10, 42, 3, step, 0.5, -INFINITY);
    for (int i = 0; i < 10; ++i) {
      bool isDropped =
          std::find(dropped.begin(), dropped.end(), i) != dropped.end();
      EXPECT_EQ(y[i], isDropped ? -INFINITY : x[i])
          << "step " << step << " element " << i;
    }
  }
}

TEST(ExpertDropoutTest, StrictComparisonAndRateBounds) {
  // u_3 = 5240689 * 2^-24 at (42, 3, 7): kept at rate u_3 (u < rate is
  // false), dropped just above it.
  std::vector<float> x = iota(10), y(10);
  double u3 = 5240689 * 0x1p-24;
  expertDropout(x.data(), y.data(), 10, 42, 3, 7, u3, -INFINITY);
  EXPECT_EQ(y[3], x[3]);
  expertDropout(x.data(), y.data(), 10, 42, 3, 7, u3 + 0x1p-30, -INFINITY);
  EXPECT_EQ(y[3], -INFINITY);
  // Rate 0 keeps everything, rate 1 drops everything (u < 1 always).
  const int64_t n = 1001;
  std::vector<float> big = iota(n), out(n);
  expertDropout(big.data(), out.data(), n, 1, 2, 3, 0.0, -INFINITY);
  expectBitwiseEqual(out, big, "rate 0");
  expertDropout(big.data(), out.data(), n, 1, 2, 3, 1.0, -INFINITY);
  EXPECT_EQ(std::count(out.begin(), out.end(), -INFINITY), n) << "rate 1";
}

TEST(ExpertDropoutTest, DropFractionMatchesRate) {
  // Binomial(n, 0.3): standard deviation sqrt(0.21 / n) ~ 1e-3 of the
  // fraction; allow 5 of them.
  const int64_t n = 200003;
  std::vector<float> x(n, 1.0f), y(n);
  expertDropout(x.data(), y.data(), n, 7, 11, 0, 0.3, 0.0f);
  double fraction =
      static_cast<double>(std::count(y.begin(), y.end(), 0.0f)) / n;
  EXPECT_NEAR(fraction, 0.3, 5e-3);
}

TEST(ExpertDropoutTest, KeyAndStepSelectTheMask) {
  const int64_t n = 4000;
  std::vector<float> x(n, 1.0f);
  auto mask = [&](int64_t seed, int64_t stream, int64_t step) {
    std::vector<float> y(n);
    expertDropout(x.data(), y.data(), n, seed, stream, step, 0.5, 0.0f);
    return y;
  };
  std::vector<float> base = mask(5, 6, 7);
  expectBitwiseEqual(mask(5, 6, 7), base, "same key and step");
  EXPECT_NE(mask(4, 6, 7), base) << "seed";
  EXPECT_NE(mask(5, 5, 7), base) << "stream";
  EXPECT_NE(mask(5, 6, 8), base) << "step";
}

TEST(ExpertDropoutTest, GradientZeroesTheDroppedScores) {
  // Forward with -inf and backward with 0 drop the same elements; y may
  // alias x.
  const int64_t n = 999;
  std::vector<float> scores = randomFloats(n, 1), dy = randomFloats(n, 2);
  std::vector<float> forward(n);
  expertDropout(scores.data(), forward.data(), n, 3, 4, 5, 0.25, -INFINITY);
  expertDropout(dy.data(), dy.data(), n, 3, 4, 5, 0.25, 0.0f);
  std::vector<float> expected = randomFloats(n, 2);
  for (int64_t i = 0; i < n; ++i)
    EXPECT_EQ(dy[i], forward[i] == -INFINITY ? 0.0f : expected[i])
        << "element " << i;
}

TEST(ExpertDropoutTest, MatchesReferenceOnAnyThreadCount) {
  for (int64_t n : {int64_t(1), int64_t(3), int64_t(4), int64_t(100001)}) {
    std::vector<float> x = randomFloats(n, 3), expected(n);
    reference::expertDropout(x.data(), expected.data(), n, -9, 123, 77, 0.1,
                             -INFINITY);
    std::string what = "expert dropout n=" + std::to_string(n);
    expectThreadCountIndependent(
        n,
        [&](float *y) {
          expertDropout(x.data(), y, n, -9, 123, 77, 0.1, -INFINITY);
          expectBitwiseEqual(std::vector<float>(y, y + n), expected, what);
        },
        what);
  }
}

//===----------------------------------------------------------------------===//
// Router z-loss gradient
//===----------------------------------------------------------------------===//

TEST(RouterZLossGradTest, HandComputedValues) {
  // Spec 14.3 logits [[1,2,3],[0,0,0]] (loss 6.4093637): row 0 has
  // lse = 3.4076059644 and softmax [.0900306, .2447285, .6652410], row 1
  // lse = ln 3 and softmax 1/3; dLogits = dLoss * 2 * lse / 2 * softmax.
  std::vector<float> logits = {1, 2, 3, 0, 0, 0};
  std::vector<float> expected = {0.30678872f, 0.83393820f, 2.26687905f,
                                 0.36620410f, 0.36620410f, 0.36620410f};
  for (float dLoss : {1.0f, -0.5f}) {
    std::vector<float> scaled(expected), grad(6), refGrad(6);
    for (float &v : scaled)
      v *= dLoss;
    routerZLossGrad(logits.data(), 2, 3, dLoss, grad.data());
    reference::routerZLossGrad(logits.data(), 2, 3, dLoss, refGrad.data());
    std::string what = "dLoss=" + std::to_string(dLoss);
    expectClose(grad, scaled, kGoldenRelTol, "optimized " + what);
    expectClose(refGrad, scaled, kGoldenRelTol, "reference " + what);
  }
}

TEST(RouterZLossGradTest, LargeLogitsStayFinite) {
  // logsumexp(c, c) = c + ln 2 with softmax 1/2: the gradient of one token
  // is (c + ln 2) / 2 per logit.
  for (float c : {1000.0f, -1000.0f}) {
    std::vector<float> logits = {c, c}, grad(2);
    routerZLossGrad(logits.data(), 1, 2, 1.0f, grad.data());
    float expected = static_cast<float>(c + std::log(2.0));
    expectClose(grad, {expected, expected}, kGoldenRelTol,
                "c=" + std::to_string(c));
  }
}

TEST(RouterZLossGradTest, MatchesReferenceInPlace) {
  for (Shape s : kShapes) {
    auto logits = randomFloats(s.tokens * s.experts, 20, -5.0f, 5.0f);
    std::vector<float> expected(logits.size()), grad(logits);
    reference::routerZLossGrad(logits.data(), s.tokens, s.experts, 0.75f,
                               expected.data());
    routerZLossGrad(grad.data(), s.tokens, s.experts, 0.75f, grad.data());
    expectClose(grad, expected, kRelTol, "z-loss gradient " + s.name());
  }
}

TEST(RouterZLossGradTest, MatchesFiniteDifferences) {
  // The reference gradient against the reference forward, and the kernel's
  // gradient against the kernel's forward.
  for (Shape s : {Shape{1, 1}, Shape{5, 3}, Shape{9, 17}}) {
    auto logits = randomFloats(s.tokens * s.experts, 21, -3.0f, 3.0f);
    std::vector<float> grad(logits.size()), refGrad(logits.size());
    reference::routerZLossGrad(logits.data(), s.tokens, s.experts, 1.0f,
                               refGrad.data());
    routerZLossGrad(logits.data(), s.tokens, s.experts, 1.0f, grad.data());
    expectGradientMatchesDifferences(
        logits, refGrad,
        [&] {
          return reference::routerZLoss(logits.data(), s.tokens, s.experts);
        },
        "reference z-loss " + s.name());
    expectGradientMatchesDifferences(
        logits, grad,
        [&] { return routerZLoss(logits.data(), s.tokens, s.experts); },
        "z-loss " + s.name());
  }
}

TEST(RouterZLossGradTest, ThreadCountDoesNotChangeBits) {
  const int64_t tokens = 5000, experts = 37;
  auto logits = randomFloats(tokens * experts, 22, -5.0f, 5.0f);
  expectThreadCountIndependent(
      tokens * experts,
      [&](float *out) {
        routerZLossGrad(logits.data(), tokens, experts, 1.0f, out);
      },
      "z-loss gradient");
}

//===----------------------------------------------------------------------===//
// Load-balancing loss gradient
//===----------------------------------------------------------------------===//

// Spec 14.3: G = 1, T = 6, E = 3.
const std::vector<float> kGoldenProbs = {.7f, .2f,  .1f,  // t0
                                         .1f, .8f,  .1f,  // t1
                                         .6f, .3f,  .1f,  // t2
                                         .3f, .3f,  .4f,  // t3
                                         .9f, .05f, .05f, // t4
                                         .2f, .2f,  .6f}; // t5

/// `rows` copies of `row`.
std::vector<float> repeatRow(const std::vector<float> &row, int64_t rows) {
  std::vector<float> out;
  for (int64_t r = 0; r < rows; ++r)
    out.insert(out.end(), row.begin(), row.end());
  return out;
}

void expectLoadBalancingGrad(const std::vector<float> &probs, int64_t groups,
                             int64_t tpg, int64_t experts, int64_t k,
                             float dLoss, const std::vector<float> &expected,
                             const std::string &what) {
  std::vector<float> grad(probs.size()), refGrad(probs.size());
  loadBalancingLossGrad(probs.data(), groups, tpg, experts, k, dLoss,
                        grad.data());
  reference::loadBalancingLossGrad(probs.data(), groups, tpg, experts, k, dLoss,
                                   refGrad.data());
  expectClose(grad, expected, kGoldenRelTol, "optimized " + what);
  expectClose(refGrad, expected, kGoldenRelTol, "reference " + what);
}

TEST(LoadBalancingLossGradTest, SpecGoldens) {
  // The loss is E * sum_e f_e P_e with P_e = sum_t probs[t,e] / T, so
  // dprobs[t,e] = E * f_e / T = 3 * count_e / 36. k = 1 (loss 1.0791667):
  // counts [3, 1, 2]. k = 2 (loss 2.2416667): every token picks e0 (t1, t3,
  // t5 on ties), e1 goes to t0, t1, t2, t4, e2 to t3, t5: counts [6, 4, 2].
  expectLoadBalancingGrad(kGoldenProbs, 1, 6, 3, 1, 1.0f,
                          repeatRow({1.0f / 4, 1.0f / 12, 1.0f / 6}, 6), "k=1");
  expectLoadBalancingGrad(kGoldenProbs, 1, 6, 3, 2, 2.0f,
                          repeatRow({1.0f, 2.0f / 3, 1.0f / 3}, 6),
                          "k=2 dLoss=2");
}

TEST(LoadBalancingLossGradTest, PerGroupCounts) {
  // G = 2, T = 3, E = 2, k = 1: dprobs[g,t,e] = E * count[g,e] / (G T^2) =
  // count / 9. Group 0 picks e0, e0, e1; group 1 picks e1, e1 and e0 on the
  // tie of t2.
  std::vector<float> probs = {.9f, .1f, .8f, .2f, .3f, .7f,
                              .4f, .6f, .1f, .9f, .5f, .5f};
  std::vector<float> expected = repeatRow({2.0f / 9, 1.0f / 9}, 3); // group 0
  std::vector<float> group1 = repeatRow({1.0f / 9, 2.0f / 9}, 3);
  expected.insert(expected.end(), group1.begin(), group1.end());
  expectLoadBalancingGrad(probs, 2, 3, 2, 1, 1.0f, expected, "G=2");
}

TEST(LoadBalancingLossGradTest, EveryExpertChosen) {
  // k = E: f = 1 everywhere, dprobs = E / (G T).
  auto probs = randomFloats(2 * 5 * 4, 30, 0.0f, 1.0f);
  expectLoadBalancingGrad(probs, 2, 5, 4, 4, 1.0f,
                          std::vector<float>(probs.size(), 0.4f), "k=E");
}

TEST(LoadBalancingLossGradTest, GradientTimesProbsIsTheLoss) {
  // With the mask fixed the loss is linear in probs: sum probs * dprobs
  // equals the loss of the forward kernel.
  for (int64_t k : {int64_t(1), int64_t(3)}) {
    const int64_t groups = 3, tpg = 500, experts = 16;
    auto probs = gridFloats(groups * tpg * experts, 31, 16);
    std::vector<float> grad(probs.size());
    loadBalancingLossGrad(probs.data(), groups, tpg, experts, k, 1.0f,
                          grad.data());
    double inner = 0.0;
    for (size_t i = 0; i < probs.size(); ++i)
      inner += static_cast<double>(probs[i]) * grad[i];
    expectRelativeNear(inner,
                       loadBalancingLoss(probs.data(), groups, tpg, experts, k),
                       kRelTol, "k=" + std::to_string(k));
  }
}

/// Probability-like rows whose values are at least 0.5 / experts apart, so
/// that finite-difference steps do not change the top-k choices.
std::vector<float> separatedRows(int64_t rows, int64_t experts, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> jitter(0.0f, 0.5f);
  std::vector<float> out(rows * experts);
  std::vector<int64_t> rank(experts);
  for (int64_t r = 0; r < rows; ++r) {
    std::iota(rank.begin(), rank.end(), int64_t(0));
    std::shuffle(rank.begin(), rank.end(), rng);
    for (int64_t e = 0; e < experts; ++e)
      out[r * experts + e] = (rank[e] + jitter(rng)) / experts;
  }
  return out;
}

TEST(LoadBalancingLossGradTest, MatchesFiniteDifferences) {
  struct Case {
    int64_t groups, tpg, experts, k;
  };
  for (Case c : {Case{1, 6, 3, 1}, Case{2, 7, 5, 2}, Case{3, 4, 8, 3}}) {
    auto probs = separatedRows(c.groups * c.tpg, c.experts, 32);
    std::vector<float> grad(probs.size()), refGrad(probs.size());
    loadBalancingLossGrad(probs.data(), c.groups, c.tpg, c.experts, c.k, 1.0f,
                          grad.data());
    reference::loadBalancingLossGrad(probs.data(), c.groups, c.tpg, c.experts,
                                     c.k, 1.0f, refGrad.data());
    auto loss = [&] {
      return reference::loadBalancingLoss(probs.data(), c.groups, c.tpg,
                                          c.experts, c.k);
    };
    std::string what =
        "G=" + std::to_string(c.groups) + " T=" + std::to_string(c.tpg) +
        " E=" + std::to_string(c.experts) + " k=" + std::to_string(c.k);
    expectGradientMatchesDifferences(probs, refGrad, loss, "reference " + what);
    expectGradientMatchesDifferences(probs, grad, loss, "optimized " + what);
  }
}

TEST(LoadBalancingLossGradTest, MatchesReferenceWithTies) {
  struct Case {
    int64_t groups, tpg, experts;
  };
  // One token per group, a single expert, odd sizes, groups of several
  // blocks, and enough values for both threads.
  for (Case c : {Case{3, 1, 4}, Case{2, 7, 3}, Case{4, 12, 1}, Case{2, 300, 37},
                 Case{4, 1024, 16}})
    for (int64_t k :
         {int64_t(0), int64_t(1), std::min<int64_t>(2, c.experts), c.experts}) {
      // Four levels make ties the rule.
      auto probs = gridFloats(c.groups * c.tpg * c.experts, 33, 4);
      std::vector<float> grad(probs.size()), expected(probs.size());
      loadBalancingLossGrad(probs.data(), c.groups, c.tpg, c.experts, k, 0.5f,
                            grad.data());
      reference::loadBalancingLossGrad(probs.data(), c.groups, c.tpg, c.experts,
                                       k, 0.5f, expected.data());
      expectClose(
          grad, expected, kRelTol,
          "G=" + std::to_string(c.groups) + " T=" + std::to_string(c.tpg) +
              " E=" + std::to_string(c.experts) + " k=" + std::to_string(k));
    }
}

TEST(LoadBalancingLossGradTest, ThreadCountDoesNotChangeBits) {
  const int64_t groups = 2, tpg = 3000, experts = 16;
  auto probs = gridFloats(groups * tpg * experts, 34, 8);
  expectThreadCountIndependent(
      probs.size(),
      [&](float *out) {
        loadBalancingLossGrad(probs.data(), groups, tpg, experts, 2, 1.0f, out);
      },
      "load-balancing gradient");
}

TEST(LoadBalancingLossGradTest, RejectsKAboveExpertCount) {
  std::vector<float> probs(6, 0.5f), grad(6);
  try {
    loadBalancingLossGrad(probs.data(), 1, 2, 3, 4, 1.0f, grad.data());
    FAIL() << "k > experts accepted";
  } catch (const KernelError &error) {
    EXPECT_EQ(error.message,
              "load_balancing_loss gradient: k 4 exceeds the expert count 3");
  }
}

//===----------------------------------------------------------------------===//
// Entropy regulariser
//===----------------------------------------------------------------------===//

void expectEntropy(const std::vector<float> &logits, int64_t tokens,
                   int64_t experts, double value,
                   const std::vector<float> &gradient, double absTol,
                   const std::string &what) {
  EXPECT_NEAR(entropyRegularizer(logits.data(), tokens, experts), value, absTol)
      << "optimized " << what;
  EXPECT_NEAR(reference::entropyRegularizer(logits.data(), tokens, experts),
              value, absTol)
      << "reference " << what;
  std::vector<float> grad(logits.size()), refGrad(logits.size());
  entropyRegularizerGrad(logits.data(), tokens, experts, 1.0f, grad.data());
  reference::entropyRegularizerGrad(logits.data(), tokens, experts, 1.0f,
                                    refGrad.data());
  for (size_t i = 0; i < gradient.size(); ++i) {
    EXPECT_NEAR(grad[i], gradient[i], absTol)
        << "optimized " << what << " " << i;
    EXPECT_NEAR(refGrad[i], gradient[i], absTol)
        << "reference " << what << " " << i;
  }
}

TEST(EntropyRegularizerTest, HandComputedValues) {
  // Softmaxes [.5, .5] and [.75, .25] average to [.625, .375]:
  // R = .625 ln .625 + .375 ln .375. With lp = ln pbar, dR/dx[t,e] =
  // p_e (lp_e - sum_j p_j lp_j) / 2: row 0 +-(ln .625 - ln .375) / 8,
  // row 1 +-3 (ln .625 - ln .375) / 32.
  double gap = std::log(0.625) - std::log(0.375);
  expectEntropy({0.0f, 0.0f, std::log(3.0f), 0.0f}, 2, 2,
                0.625 * std::log(0.625) + 0.375 * std::log(0.375),
                {float(gap / 8), float(-gap / 8), float(3 * gap / 32),
                 float(-3 * gap / 32)},
                1e-6, "2x2");
}

TEST(EntropyRegularizerTest, UniformMeanIsTheStationaryMinimum) {
  // The rows are the three rotations of one row, so pbar is uniform:
  // R = -ln 3 and every gradient is 0.
  std::vector<float> logits = {0.5f,  -1.0f, 2.0f, 2.0f, 0.5f,
                               -1.0f, -1.0f, 2.0f, 0.5f};
  expectEntropy(logits, 3, 3, -std::log(3.0), std::vector<float>(9, 0.0f), 1e-6,
                "rotations");
  // One expert: pbar = [1], R = 0, no gradient.
  expectEntropy({3.0f, -2.0f}, 2, 1, 0.0, {0.0f, 0.0f}, 1e-7, "E=1");
}

TEST(EntropyRegularizerTest, ExtremeLogitsStayFinite) {
  // One-hot rows in opposite directions: pbar = [.5, .5], R = -ln 2, no
  // gradient.
  expectEntropy({1000.0f, -1000.0f, -1000.0f, 1000.0f}, 2, 2, -std::log(2.0),
                {0.0f, 0.0f, 0.0f, 0.0f}, 1e-6, "opposite one-hot");
  // Expert 1 gets e^-200 in every token: its mean probability underflows
  // float, adding 0 to R (not 0 * -inf) and 0 gradient.
  expectEntropy({0.0f, -200.0f, 0.0f, -200.0f}, 2, 2, 0.0,
                {0.0f, 0.0f, 0.0f, 0.0f}, 1e-7, "underflowing expert");
}

/// The negative entropy of pbar = mean_t softmax(logits[t]), in the
/// probability domain and double precision: a forward written independently
/// of the log-domain kernels, for the finite differences.
double negativeEntropyOfMean(const std::vector<float> &logits, int64_t tokens,
                             int64_t experts) {
  std::vector<double> mean(experts, 0.0);
  for (int64_t t = 0; t < tokens; ++t) {
    const float *row = logits.data() + t * experts;
    double sum = 0.0;
    for (int64_t e = 0; e < experts; ++e)
      sum += std::exp(static_cast<double>(row[e]));
    for (int64_t e = 0; e < experts; ++e)
      mean[e] += std::exp(static_cast<double>(row[e])) / sum / tokens;
  }
  double result = 0.0;
  for (double p : mean)
    result += p * std::log(p);
  return result;
}

TEST(EntropyRegularizerTest, MatchesFiniteDifferences) {
  for (Shape s : {Shape{1, 4}, Shape{3, 2}, Shape{8, 5}, Shape{20, 16}}) {
    auto logits = randomFloats(s.tokens * s.experts, 40, -2.0f, 2.0f);
    std::vector<float> grad(logits.size()), refGrad(logits.size());
    entropyRegularizerGrad(logits.data(), s.tokens, s.experts, 1.0f,
                           grad.data());
    reference::entropyRegularizerGrad(logits.data(), s.tokens, s.experts, 1.0f,
                                      refGrad.data());
    auto objective = [&] {
      return negativeEntropyOfMean(logits, s.tokens, s.experts);
    };
    expectGradientMatchesDifferences(logits, refGrad, objective,
                                     "reference " + s.name());
    expectGradientMatchesDifferences(logits, grad, objective,
                                     "optimized " + s.name());
    expectRelativeNear(
        reference::entropyRegularizer(logits.data(), s.tokens, s.experts),
        objective(), 1e-6, "reference value " + s.name());
  }
}

TEST(EntropyRegularizerTest, MatchesReferenceInPlace) {
  for (Shape s : kShapes) {
    auto logits = randomFloats(s.tokens * s.experts, 41, -5.0f, 5.0f);
    expectRelativeNear(
        entropyRegularizer(logits.data(), s.tokens, s.experts),
        reference::entropyRegularizer(logits.data(), s.tokens, s.experts),
        kRelTol, "entropy " + s.name());
    std::vector<float> expected(logits.size()), grad(logits);
    reference::entropyRegularizerGrad(logits.data(), s.tokens, s.experts, -2.0f,
                                      expected.data());
    entropyRegularizerGrad(grad.data(), s.tokens, s.experts, -2.0f,
                           grad.data());
    expectClose(grad, expected, kRelTol, "entropy gradient " + s.name());
  }
}

TEST(EntropyRegularizerTest, ThreadCountDoesNotChangeBits) {
  const int64_t tokens = 3000, experts = 19;
  auto logits = randomFloats(tokens * experts, 42, -5.0f, 5.0f);
  expectThreadCountIndependent(
      1,
      [&](float *out) {
        *out = entropyRegularizer(logits.data(), tokens, experts);
      },
      "entropy");
  expectThreadCountIndependent(
      tokens * experts,
      [&](float *out) {
        entropyRegularizerGrad(logits.data(), tokens, experts, 1.0f, out);
      },
      "entropy gradient");
}

} // namespace
} // namespace mixer::cpu
