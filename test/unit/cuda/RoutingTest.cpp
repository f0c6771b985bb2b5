//===- RoutingTest.cpp - GPU MoE routing against the CPU references -------===//

#include "CudaTestUtil.h"
#include "runtime/cpu/ReferenceKernels.h"

#include <cmath>

namespace mixer::cuda::test {
namespace {

/// The assignment table of one routing call.
struct Table {
  std::vector<int32_t> tokens;
  std::vector<float> gates;
  std::vector<int32_t> offsets;
};

void expectSameTable(const Table &got, const Table &expected, double gateTol,
                     const std::string &what) {
  EXPECT_EQ(got.offsets, expected.offsets) << what << ": offsets";
  EXPECT_EQ(got.tokens, expected.tokens) << what << ": tokens";
  if (gateTol == 0.0)
    expectBitwiseEqual(got.gates, expected.gates, what + ": gates");
  else
    expectClose(got.gates, expected.gates, gateTol, what + ": gates");
}

/// Logits [tokens, experts] drawn from a coarse grid with some rows
/// repeated, so that probabilities tie within rows and across tokens.
std::vector<float> tiedLogits(int64_t tokens, int64_t experts, uint32_t seed) {
  auto logits = gridFloats(tokens * experts, seed, 4);
  for (int64_t t = 3; t < tokens; t += 5)
    std::copy(logits.begin() + (t - 3) * experts,
              logits.begin() + (t - 2) * experts, logits.begin() + t * experts);
  return logits;
}

TEST(CudaRouteExpertsChoose, MatchesReferenceOnItsProbabilities) {
  struct Case {
    int64_t groups, tokensPerGroup, experts, capacity;
  };
  for (Case c : {Case{1, 1, 1, 1}, Case{2, 37, 5, 7}, Case{3, 16, 4, 16},
                 Case{1, 1000, 8, 125}, Case{2, 9, 3, 0},
                 // 64 KiB of sort keys: above the default 48 KiB per block.
                 Case{1, 6144, 4, 64}})
    for (bool ties : {false, true}) {
      int64_t n = c.groups * c.tokensPerGroup;
      auto logits = ties ? tiedLogits(n, c.experts, 1)
                         : randomFloats(n * c.experts, 2, -4.0f, 4.0f);
      int64_t slots = c.experts * c.groups * c.capacity;
      DeviceArray<float> dLogits(logits), dProbs(n * c.experts), dGates(slots);
      DeviceArray<int32_t> dTokens(slots), dOffsets(c.experts + 1);
      ASSERT_OK(routeExpertsChoose(dLogits.get(), dProbs.get(), dTokens.get(),
                                   dGates.get(), dOffsets.get(), c.groups,
                                   c.tokensPerGroup, c.experts, c.capacity,
                                   nullptr));
      std::string what = "experts choose " + std::to_string(c.tokensPerGroup) +
                         (ties ? " with ties" : "");
      std::vector<float> probs = dProbs.read(), expectedProbs(n * c.experts);
      cpu::reference::softmax(logits.data(), expectedProbs.data(), n,
                              c.experts);
      expectClose(probs, expectedProbs, kRelTol, what + ": probs");
      // The routing of the probabilities the kernel wrote is exact.
      Table expected{std::vector<int32_t>(slots), std::vector<float>(slots),
                     std::vector<int32_t>(c.experts + 1)};
      cpu::reference::routeExpertsChoose(
          probs.data(), expected.tokens.data(), expected.gates.data(),
          expected.offsets.data(), c.groups, c.tokensPerGroup, c.experts,
          c.capacity);
      expectSameTable({dTokens.read(), dGates.read(), dOffsets.read()},
                      expected, 0.0, what);
      // Given the probabilities (no logits), the same table.
      ASSERT_OK(routeExpertsChoose(
          nullptr, dProbs.get(), dTokens.get(), dGates.get(), dOffsets.get(),
          c.groups, c.tokensPerGroup, c.experts, c.capacity, nullptr));
      expectSameTable({dTokens.read(), dGates.read(), dOffsets.read()},
                      expected, 0.0, what + " from probs");
      EXPECT_EQ(dProbs.read(), probs) << what << ": probs were written";
    }
}

/// Runs routeTokensChoose on probs and returns the table.
Table tokensChoose(const std::vector<float> &probs, int64_t groups,
                   int64_t tokensPerGroup, int64_t experts, int64_t k,
                   int64_t capacity, bool prioritized) {
  int64_t slots = experts * groups * capacity;
  DeviceArray<float> dProbs(probs), dGates(slots);
  DeviceArray<int32_t> dTokens(slots), dOffsets(experts + 1);
  Status s = routeTokensChoose(dProbs.get(), dTokens.get(), dGates.get(),
                               dOffsets.get(), groups, tokensPerGroup, experts,
                               k, capacity, prioritized, nullptr);
  EXPECT_TRUE(s.ok()) << s.message();
  return {dTokens.read(), dGates.read(), dOffsets.read()};
}

TEST(CudaRouteTokensChoose, SpecGoldens) {
  // sparse-mixer.md section 14.3: G=1, T=6, E=3, C=2.
  std::vector<float> probs = {.7f, .2f, .1f, .1f, .8f,  .1f,  .6f, .3f, .1f,
                              .3f, .3f, .4f, .9f, .05f, .05f, .2f, .2f, .6f};
  // K=1 with batch priority: e0 [t4, t0] (t2 dropped), e1 [t1], e2 [t5, t3].
  Table bpr = tokensChoose(probs, 1, 6, 3, 1, 2, true);
  EXPECT_EQ(bpr.tokens, (std::vector<int32_t>{4, 0, 1, -1, 5, 3}));
  expectClose(bpr.gates, {.9f, .7f, .8f, 0.0f, .6f, .4f}, 0.0, "bpr gates");
  // K=1 in token order: e0 [t0, t2] (t4 dropped).
  Table plain = tokensChoose(probs, 1, 6, 3, 1, 2, false);
  EXPECT_EQ(plain.tokens, (std::vector<int32_t>{0, 2, 1, -1, 3, 5}));
  // K=2 with batch priority: t4 also takes e1 (.05) after t1; t2 nothing.
  Table two = tokensChoose(probs, 1, 6, 3, 2, 2, true);
  EXPECT_EQ(two.tokens, (std::vector<int32_t>{4, 0, 1, 4, 5, 3}));
  EXPECT_EQ(two.offsets, (std::vector<int32_t>{0, 2, 4, 6}));
}

TEST(CudaRouteTokensChoose, MatchesReferenceWithTies) {
  struct Case {
    int64_t groups, tokensPerGroup, experts, k, capacity;
  };
  for (Case c :
       {Case{3, 50, 6, 2, 9}, Case{1, 1, 1, 1, 1}, Case{2, 700, 8, 1, 80},
        Case{1, 33, 4, 4, 40}, Case{2, 10, 5, 0, 3}})
    for (bool prioritized : {false, true}) {
      int64_t n = c.groups * c.tokensPerGroup;
      // Probabilities on a grid: frequent exact ties between experts and
      // between tokens' top-1 values.
      auto probs = gridFloats(n * c.experts, 3, 8);
      int64_t slots = c.experts * c.groups * c.capacity;
      Table expected{std::vector<int32_t>(slots), std::vector<float>(slots),
                     std::vector<int32_t>(c.experts + 1)};
      cpu::reference::routeTokensChoose(
          probs.data(), expected.tokens.data(), expected.gates.data(),
          expected.offsets.data(), c.groups, c.tokensPerGroup, c.experts, c.k,
          c.capacity, prioritized);
      expectSameTable(tokensChoose(probs, c.groups, c.tokensPerGroup, c.experts,
                                   c.k, c.capacity, prioritized),
                      expected, 0.0,
                      "tokens choose T=" + std::to_string(c.tokensPerGroup) +
                          " k=" + std::to_string(c.k) +
                          (prioritized ? " bpr" : ""));
    }
}

TEST(CudaRouteSigmoidTopK, MatchesReferenceWithTies) {
  struct Case {
    int64_t tokens, experts, k;
  };
  for (Case c : {Case{300, 16, 4}, Case{1, 1, 1}, Case{1000, 7, 7},
                 Case{5, 4, 0}, Case{2049, 32, 2}})
    for (bool ties : {false, true}) {
      // Without deliberate ties the logits still lie on a grid of step 1e-3
      // in [-2, 2): values are equal or far apart in ulps, so gates that
      // differ from the CPU's in their last bit cannot reorder them.
      std::vector<float> logits =
          ties ? tiedLogits(c.tokens, c.experts, 4)
               : gridFloats(c.tokens * c.experts, 5, 4000);
      if (!ties)
        for (float &v : logits)
          v = 4.0f * v - 2.0f;
      int64_t entries = c.tokens * c.k;
      Table expected{std::vector<int32_t>(entries), std::vector<float>(entries),
                     std::vector<int32_t>(c.experts + 1)};
      cpu::reference::routeSigmoidTopK(
          logits.data(), expected.tokens.data(), expected.gates.data(),
          expected.offsets.data(), c.tokens, c.experts, c.k);
      DeviceArray<float> dLogits(logits), dGates(entries);
      DeviceArray<int32_t> dTokens(entries), dOffsets(c.experts + 1);
      ASSERT_OK(routeSigmoidTopK(dLogits.get(), dTokens.get(), dGates.get(),
                                 dOffsets.get(), c.tokens, c.experts, c.k,
                                 nullptr));
      // Gates differ from the CPU's only by the exponential's last bits.
      expectSameTable({dTokens.read(), dGates.read(), dOffsets.read()},
                      expected, 1e-6,
                      "sigmoid top-k " + std::to_string(c.tokens) +
                          (ties ? " with ties" : ""));
    }
}

} // namespace
} // namespace mixer::cuda::test
