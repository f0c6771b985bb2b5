//===- RouterLossTest.cpp - router losses and MoE data-movement goldens ---===//
//
// The router z-loss and load-balancing loss against their double-precision
// references and the spec's goldens (14.3), and the spec's gather and
// scatter-add goldens (14.1) expressed through dispatch and combine.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace mixer::cpu {
namespace {

using test::gridFloats;
using test::kRelTol;
using test::randomFloats;

/// Spec goldens carry 8 significant digits; float results must agree to
/// within 1e-6 relative.
constexpr double kGoldenRelTol = 1e-6;

void expectRelativeNear(double actual, double expected, double rtol,
                        const std::string &what) {
  EXPECT_NEAR(actual, expected, rtol * std::fabs(expected)) << what;
}

// Spec 14.3: G = 1, T = 6, E = 3.
const std::vector<float> kGoldenProbs = {.7f, .2f,  .1f,  // t0
                                         .1f, .8f,  .1f,  // t1
                                         .6f, .3f,  .1f,  // t2
                                         .3f, .3f,  .4f,  // t3
                                         .9f, .05f, .05f, // t4
                                         .2f, .2f,  .6f}; // t5

TEST(RouterZLossTest, SpecGolden) {
  std::vector<float> logits = {1, 2, 3, 0, 0, 0};
  expectRelativeNear(routerZLoss(logits.data(), 2, 3), 6.4093637, kGoldenRelTol,
                     "optimized");
  expectRelativeNear(reference::routerZLoss(logits.data(), 2, 3), 6.4093637,
                     kGoldenRelTol, "reference");
}

TEST(RouterZLossTest, LargeLogitsStayFinite) {
  // logsumexp(c, c) = c + ln 2: exp(1000) overflows and exp(-1000)
  // underflows unless the row maximum is taken out first.
  for (float c : {1000.0f, -1000.0f}) {
    std::vector<float> logits = {c, c};
    double expected = std::pow(c + std::log(2.0), 2);
    expectRelativeNear(routerZLoss(logits.data(), 1, 2), expected,
                       kGoldenRelTol, "optimized c=" + std::to_string(c));
    expectRelativeNear(reference::routerZLoss(logits.data(), 1, 2), expected,
                       kGoldenRelTol, "reference c=" + std::to_string(c));
  }
}

TEST(RouterZLossTest, MatchesReference) {
  // A single logit, experts off the vector width, and enough tokens for
  // several blocks on both threads.
  struct Shape {
    int64_t tokens, experts;
  };
  for (Shape s : {Shape{1, 1}, Shape{7, 3}, Shape{100, 16}, Shape{33, 37},
                  Shape{4096, 16}}) {
    auto logits = randomFloats(s.tokens * s.experts, 20, -5.0f, 5.0f);
    expectRelativeNear(
        routerZLoss(logits.data(), s.tokens, s.experts),
        reference::routerZLoss(logits.data(), s.tokens, s.experts), kRelTol,
        "z-loss N=" + std::to_string(s.tokens) +
            " E=" + std::to_string(s.experts));
  }
}

TEST(RouterZLossTest, ThreadCountDoesNotChangeBits) {
  const int64_t tokens = 5000, experts = 16;
  auto logits = randomFloats(tokens * experts, 21, -5.0f, 5.0f);
  test::expectThreadCountIndependent(
      1,
      [&](float *out) { *out = routerZLoss(logits.data(), tokens, experts); },
      "z-loss");
}

TEST(LoadBalancingLossTest, SpecGoldens) {
  // The loss depends only on the top-k choices, not on batch priority or
  // capacity, so one value covers the prioritized and in-order goldens.
  for (auto [k, golden] : {std::pair<int64_t, double>{1, 1.0791667},
                           std::pair<int64_t, double>{2, 2.2416667}}) {
    std::string what = "k=" + std::to_string(k);
    expectRelativeNear(loadBalancingLoss(kGoldenProbs.data(), 1, 6, 3, k),
                       golden, kGoldenRelTol, "optimized " + what);
    expectRelativeNear(
        reference::loadBalancingLoss(kGoldenProbs.data(), 1, 6, 3, k), golden,
        kGoldenRelTol, "reference " + what);
  }
}

TEST(LoadBalancingLossTest, TiesGoToTheLowerExpert) {
  // t0 [.4, .4, .2] picks e0 on the tie, t1 [.1, .7, .2] picks e1:
  // f = [.5, .5, 0], P = [.25, .55, .2], sum f*P = .4, loss = .4 / 3 * 9.
  // Picking e1 for t0 would give f = [0, 1, 0] and 1.65.
  std::vector<float> probs = {.4f, .4f, .2f, .1f, .7f, .2f};
  expectRelativeNear(loadBalancingLoss(probs.data(), 1, 2, 3, 1), 1.2,
                     kGoldenRelTol, "optimized");
  expectRelativeNear(reference::loadBalancingLoss(probs.data(), 1, 2, 3, 1),
                     1.2, kGoldenRelTol, "reference");
}

TEST(LoadBalancingLossTest, MeanOverGroups) {
  // Group 0 is t0, t1 of the tie test (1.2); group 1 sends both tokens
  // [.5, .3, .2] to e0: sum f*P = .5, loss .5 / 3 * 9 = 1.5. The mean over
  // groups is 1.35.
  std::vector<float> probs = {.4f, .4f, .2f, .1f, .7f, .2f,
                              .5f, .3f, .2f, .5f, .3f, .2f};
  expectRelativeNear(loadBalancingLoss(probs.data(), 2, 2, 3, 1), 1.35,
                     kGoldenRelTol, "optimized");
  expectRelativeNear(reference::loadBalancingLoss(probs.data(), 2, 2, 3, 1),
                     1.35, kGoldenRelTol, "reference");
}

TEST(LoadBalancingLossTest, MatchesReferenceWithTies) {
  struct Shape {
    int64_t groups, tokensPerGroup, experts;
  };
  // One token per group, a single expert, odd sizes, and groups of several
  // blocks on both threads.
  for (Shape s : {Shape{3, 1, 4}, Shape{2, 7, 3}, Shape{1, 13, 5},
                  Shape{4, 12, 1}, Shape{2, 100, 8}, Shape{2, 1000, 16}})
    for (int64_t k : {int64_t(1), std::min<int64_t>(2, s.experts), s.experts}) {
      std::string what = "G=" + std::to_string(s.groups) +
                         " T=" + std::to_string(s.tokensPerGroup) +
                         " E=" + std::to_string(s.experts) +
                         " k=" + std::to_string(k);
      int64_t n = s.groups * s.tokensPerGroup * s.experts;
      // Probabilities on a grid of 4 levels make ties the rule; the loss
      // does not need rows that sum to 1.
      auto grid = gridFloats(n, 22, 4);
      expectRelativeNear(loadBalancingLoss(grid.data(), s.groups,
                                           s.tokensPerGroup, s.experts, k),
                         reference::loadBalancingLoss(grid.data(), s.groups,
                                                      s.tokensPerGroup,
                                                      s.experts, k),
                         kRelTol, "grid " + what);
      auto logits = randomFloats(n, 23, -3.0f, 3.0f);
      std::vector<float> probs(n);
      softmax(logits.data(), probs.data(), s.groups * s.tokensPerGroup,
              s.experts);
      expectRelativeNear(loadBalancingLoss(probs.data(), s.groups,
                                           s.tokensPerGroup, s.experts, k),
                         reference::loadBalancingLoss(probs.data(), s.groups,
                                                      s.tokensPerGroup,
                                                      s.experts, k),
                         kRelTol, "softmax " + what);
    }
}

TEST(LoadBalancingLossTest, ThreadCountDoesNotChangeBits) {
  const int64_t groups = 2, tpg = 3000, experts = 16;
  auto probs = gridFloats(groups * tpg * experts, 24, 8);
  test::expectThreadCountIndependent(
      1,
      [&](float *out) {
        *out = loadBalancingLoss(probs.data(), groups, tpg, experts, 2);
      },
      "load-balancing loss");
}

TEST(LoadBalancingLossTest, RejectsKAboveExpertCount) {
  std::vector<float> probs(6, 0.5f);
  try {
    loadBalancingLoss(probs.data(), 1, 2, 3, 4);
    FAIL() << "k > experts accepted";
  } catch (const KernelError &error) {
    EXPECT_EQ(error.message,
              "load_balancing_loss: k 4 exceeds the expert count 3");
  }
}

TEST(DataMovementGoldenTest, GatherPerExampleRows) {
  // Spec 14.1 gather: batch = [ex, -ex] with ex = arange(12).reshape(4, 3),
  // indices [[0, 3], [1, 2]] per example. On the flattened [8, 3] rows the
  // global token of (example b, row i) is 4 * b + i.
  std::vector<float> x(2 * 4 * 3);
  for (int i = 0; i < 12; ++i) {
    x[i] = static_cast<float>(i);
    x[12 + i] = -static_cast<float>(i);
  }
  std::vector<int32_t> tokens = {0, 3, 4 + 1, 4 + 2};
  std::vector<float> expected = {0, 1, 2, 9, 10, 11, -3, -4, -5, -6, -7, -8};
  std::vector<float> xd(12, 99.0f), refXd(12, 99.0f);
  dispatch(x.data(), tokens.data(), xd.data(), 4, 8, 3);
  reference::dispatch(x.data(), tokens.data(), refXd.data(), 4, 8, 3);
  EXPECT_EQ(xd, expected);
  EXPECT_EQ(refXd, expected);
}

TEST(DataMovementGoldenTest, ScatterAddSumsDuplicates) {
  // Spec 14.1 scatter_nd: index [1, 1] of a [2, 2] array three times with
  // updates 1, 2, 3 gives 6 there and 0 elsewhere. Here the array is 4
  // tokens of width 1, [1, 1] is token 3, and the gates are 1. The reference
  // also drops out-of-range indices; combine rejects them instead
  // (CombineTest.RejectsTokensOutOfRange), as compiled plans never hold any.
  std::vector<int32_t> tokens = {3, 3, 3};
  std::vector<float> yd = {1, 2, 3}, gates = {1, 1, 1};
  std::vector<float> expected = {0, 0, 0, 6};
  std::vector<float> out(4, 99.0f), refOut(4, 99.0f);
  combine(yd.data(), tokens.data(), gates.data(), out.data(), 3, 4, 1);
  reference::combine(yd.data(), tokens.data(), gates.data(), refOut.data(), 3,
                     4, 1);
  EXPECT_EQ(out, expected);
  EXPECT_EQ(refOut, expected);
}

} // namespace
} // namespace mixer::cpu
