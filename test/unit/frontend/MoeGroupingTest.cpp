//===- MoeGroupingTest.cpp - Routing groups and capacity ------------------===//
//
// Expected values come from the spec's test table and worked examples
// (sparse-mixer.md §7.2) or are computed by hand.
//
//===----------------------------------------------------------------------===//

#include "frontend/MoeGrouping.h"

#include <gtest/gtest.h>

namespace mixer {
namespace {

MoeConfig moe(int64_t experts, double cf, int64_t minCapacity,
              int64_t maxGroupSize) {
  MoeConfig m;
  m.numExperts = experts;
  m.trainCapacityFactor = cf;
  m.evalCapacityFactor = cf;
  m.minExpertCapacity = minCapacity;
  m.maxGroupSize = maxGroupSize;
  return m;
}

TEST(MoeGroupingTest, NumGroupsTable) {
  // (max_group_size, N) -> G.
  struct Row {
    int64_t maxGroupSize, tokens, groups;
  };
  for (Row r : {Row{8, 32, 4}, Row{16, 32, 2}, Row{3, 32, 16}, Row{32, 32, 1},
                Row{64, 32, 1}}) {
    MoeGrouping g = computeMoeGrouping(moe(4, 1.0, 1, r.maxGroupSize), r.tokens,
                                       /*training=*/false);
    EXPECT_EQ(g.groups, r.groups) << r.maxGroupSize << ", " << r.tokens;
    EXPECT_EQ(g.tokensPerGroup, r.tokens / r.groups);
  }
}

TEST(MoeGroupingTest, SparseMixerBaseExamples) {
  MoeConfig sm = moe(16, 1.0, 4, 4096), fsm = moe(16, 0.5, 4, 4096);
  MoeGrouping b1 = computeMoeGrouping(sm, 1 * 512, false);
  EXPECT_EQ(b1.groups, 1);
  EXPECT_EQ(b1.tokensPerGroup, 512);
  EXPECT_EQ(b1.capacity, 32);
  EXPECT_EQ(computeMoeGrouping(fsm, 512, false).capacity, 16);

  MoeGrouping b8 = computeMoeGrouping(sm, 8 * 512, false);
  EXPECT_EQ(b8.groups, 1);
  EXPECT_EQ(b8.tokensPerGroup, 4096);
  EXPECT_EQ(b8.capacity, 256);
  EXPECT_EQ(computeMoeGrouping(fsm, 8 * 512, false).capacity, 128);

  // The floor lets groups exceed max_group_size.
  MoeGrouping big = computeMoeGrouping(sm, 6144, false);
  EXPECT_EQ(big.groups, 1);
  EXPECT_EQ(big.tokensPerGroup, 6144);

  // G = 2 for 16 <= B <= 23, G = 3 at B = 24.
  EXPECT_EQ(computeMoeGrouping(sm, 16 * 512, false).groups, 2);
  MoeGrouping b23 = computeMoeGrouping(sm, 23 * 512, false);
  EXPECT_EQ(b23.groups, 2);
  EXPECT_EQ(b23.tokensPerGroup, 5888);
  EXPECT_EQ(computeMoeGrouping(sm, 24 * 512, false).groups, 3);
}

TEST(MoeGroupingTest, SmallestDivisorAtLeastMinimum) {
  // N = 35, max 4: minimum 8 groups; 35 has divisors 1, 5, 7, 35.
  MoeGrouping g = computeMoeGrouping(moe(4, 1.0, 1, 4), 35, false);
  EXPECT_EQ(g.groups, 35);
  EXPECT_EQ(g.tokensPerGroup, 1);
  // N = 36, max 5: minimum 7 groups -> 9.
  EXPECT_EQ(computeMoeGrouping(moe(4, 1.0, 1, 5), 36, false).groups, 9);
}

TEST(MoeGroupingTest, RoundHalfEven) {
  EXPECT_EQ(roundHalfEven(0.5), 0.0);
  EXPECT_EQ(roundHalfEven(1.5), 2.0);
  EXPECT_EQ(roundHalfEven(2.5), 2.0);
  EXPECT_EQ(roundHalfEven(3.5), 4.0);
  EXPECT_EQ(roundHalfEven(2.4999), 2.0);
  EXPECT_EQ(roundHalfEven(2.5001), 3.0);
  EXPECT_EQ(roundHalfEven(7.0), 7.0);
}

TEST(MoeGroupingTest, CapacityRoundsHalfToEven) {
  // cf * T / E = 1 * 10 / 4 = 2.5 -> 2; 1 * 14 / 4 = 3.5 -> 4.
  EXPECT_EQ(computeMoeGrouping(moe(4, 1.0, 1, 4096), 10, false).capacity, 2);
  EXPECT_EQ(computeMoeGrouping(moe(4, 1.0, 1, 4096), 14, false).capacity, 4);
  // 0.5 * 12 / 4 = 1.5 -> 2, against 1 * 12 / 4 = 3.
  EXPECT_EQ(computeMoeGrouping(moe(4, 0.5, 1, 4096), 12, false).capacity, 2);
  EXPECT_EQ(computeMoeGrouping(moe(4, 1.0, 1, 4096), 12, false).capacity, 3);
}

TEST(MoeGroupingTest, CapacityProductBeforeDivision) {
  // In double, 0.3 * 35 = 10.5 exactly, so (cf * T) / E = 3.5 -> 4, while
  // cf * (T / E) = 3.4999999999999996 would give 3.
  EXPECT_EQ(computeMoeGrouping(moe(3, 0.3, 1, 4096), 35, false).capacity, 4);
}

TEST(MoeGroupingTest, MinimumCapacityAndTrainingFactor) {
  // 1 * 32 / 16 = 2 -> raised to min_expert_capacity 4.
  EXPECT_EQ(computeMoeGrouping(moe(16, 1.0, 4, 4096), 32, false).capacity, 4);
  MoeConfig m = moe(4, 1.0, 1, 4096);
  m.trainCapacityFactor = 2.0;
  EXPECT_EQ(computeMoeGrouping(m, 16, /*training=*/false).capacity, 4);
  EXPECT_EQ(computeMoeGrouping(m, 16, /*training=*/true).capacity, 8);
}

TEST(MoeGroupingTest, SigmoidTopKHasNoCapacity) {
  MoeConfig m = moe(4, 1.0, 1, 4);
  m.routing = RoutingKind::SigmoidTopK;
  MoeGrouping g = computeMoeGrouping(m, 24, false);
  EXPECT_EQ(g.groups, 1);
  EXPECT_EQ(g.tokensPerGroup, 24);
  EXPECT_EQ(g.capacity, 0);
  EXPECT_TRUE(checkMoeGrouping(m, 1, false).ok());
}

TEST(MoeGroupingTest, CheckAcceptsCapacityUpToGroupSize) {
  // C = max(round(4 * 4 / 4), 1) = 4 = T.
  EXPECT_TRUE(checkMoeGrouping(moe(4, 4.0, 1, 4096), 4, false).ok());
}

TEST(MoeGroupingTest, CheckRejectsCapacityAboveGroupSize) {
  // min_expert_capacity 12 forces C = 12 > T = 8.
  Status s = checkMoeGrouping(moe(16, 1.0, 12, 4096), 8, false);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "expert capacity 12 exceeds the 8 tokens per group (8 tokens in "
            "1 group(s), 16 experts, eval_capacity_factor 1, "
            "min_expert_capacity 12); lower min_expert_capacity or the "
            "capacity factor, or use a larger batch");

  MoeConfig m = moe(2, 0.5, 1, 4096);
  m.trainCapacityFactor = 3.0;
  // Training: 3 * 6 / 2 = 9 > 6.
  Status t = checkMoeGrouping(m, 6, /*training=*/true);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.message(),
            "expert capacity 9 exceeds the 6 tokens per group (6 tokens in 1 "
            "group(s), 2 experts, train_capacity_factor 3, "
            "min_expert_capacity 1); lower min_expert_capacity or the "
            "capacity factor, or use a larger batch");
}

TEST(MoeGroupingTest, CheckRejectsHugeCapacityFactor) {
  // cf * T / E is far beyond any integer; the check still fails cleanly.
  EXPECT_FALSE(checkMoeGrouping(moe(4, 1e300, 1, 4096), 8, false).ok());
}

TEST(MoeGroupingTest, CheckRejectsEmptyBatch) {
  Status s = checkMoeGrouping(moe(4, 1.0, 1, 4096), 0, false);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(), "moe layer needs at least one token, got 0");
}

} // namespace
} // namespace mixer
