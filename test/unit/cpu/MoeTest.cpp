//===- MoeTest.cpp - routing, dispatch, experts and combine ---------------===//

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
using test::gridFloats;
using test::kRelTol;
using test::randomFloats;

/// A routing result: assignment table and expert offsets.
struct Routing {
  std::vector<int32_t> tokens;
  std::vector<float> gates;
  std::vector<int32_t> offsets;
  Routing(int64_t slots, int64_t experts)
      : tokens(slots, -7), gates(slots, -7.0f), offsets(experts + 1, -7) {}
};

void expectSameRouting(const Routing &a, const Routing &b,
                       const std::string &what) {
  EXPECT_EQ(a.offsets, b.offsets) << what << ": offsets";
  EXPECT_EQ(a.tokens, b.tokens) << what << ": tokens";
  EXPECT_EQ(a.gates, b.gates) << what << ": gates";
}

// Spec 14.3: G = 1, T = 6, E = 3.
const std::vector<float> kGoldenProbs = {.7f, .2f,  .1f,  // t0
                                         .1f, .8f,  .1f,  // t1
                                         .6f, .3f,  .1f,  // t2
                                         .3f, .3f,  .4f,  // t3
                                         .9f, .05f, .05f, // t4
                                         .2f, .2f,  .6f}; // t5

Routing routeGoldenTokensChoose(int64_t k, bool batchPrioritized) {
  Routing r(3 * 2, 3);
  routeTokensChoose(kGoldenProbs.data(), r.tokens.data(), r.gates.data(),
                    r.offsets.data(), 1, 6, 3, k, 2, batchPrioritized);
  return r;
}

TEST(RoutingGoldenTest, ExpertsChooseCapacityTwo) {
  // expert0 -> (4, 0); expert1 -> (1, 2): t2 beats t3 on the 0.3 tie by the
  // lower index; expert2 -> (5, 3).
  Routing r(3 * 2, 3);
  routeExpertsChoose(kGoldenProbs.data(), r.tokens.data(), r.gates.data(),
                     r.offsets.data(), 1, 6, 3, 2);
  EXPECT_EQ(r.offsets, (std::vector<int32_t>{0, 2, 4, 6}));
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{4, 0, 1, 2, 5, 3}));
  EXPECT_EQ(r.gates, (std::vector<float>{.9f, .7f, .8f, .3f, .6f, .4f}));
  Routing ref(3 * 2, 3);
  reference::routeExpertsChoose(kGoldenProbs.data(), ref.tokens.data(),
                                ref.gates.data(), ref.offsets.data(), 1, 6, 3,
                                2);
  expectSameRouting(r, ref, "reference experts-choose golden");
}

TEST(RoutingGoldenTest, TokensChooseTop1Prioritized) {
  // Order t4, t1, t0, t2, t5, t3: e0 takes t4, t0 and drops t2.
  Routing r = routeGoldenTokensChoose(1, true);
  EXPECT_EQ(r.offsets, (std::vector<int32_t>{0, 2, 4, 6}));
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{4, 0, 1, -1, 5, 3}));
  EXPECT_EQ(r.gates, (std::vector<float>{.9f, .7f, .8f, 0.0f, .6f, .4f}));
}

TEST(RoutingGoldenTest, TokensChooseTop1InTokenOrder) {
  // Without prioritisation e0 takes t0, t2 and drops t4.
  Routing r = routeGoldenTokensChoose(1, false);
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{0, 2, 1, -1, 3, 5}));
  EXPECT_EQ(r.gates, (std::vector<float>{.7f, .6f, .8f, 0.0f, .4f, .6f}));
}

TEST(RoutingGoldenTest, TokensChooseTop2Prioritized) {
  // t4 gets e0 (.9) and e1 (.05); t1 .8@e1; t0 .7@e0; t2 is dropped
  // entirely; t5 .6@e2; t3 .4@e2. Second choices only fill what first
  // choices left.
  Routing r = routeGoldenTokensChoose(2, true);
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{4, 0, 1, 4, 5, 3}));
  EXPECT_EQ(r.gates, (std::vector<float>{.9f, .7f, .8f, .05f, .6f, .4f}));
}

TEST(RoutingGoldenTest, ReferenceTokensChooseAgreesWithGoldens) {
  for (int64_t k : {1, 2})
    for (bool bpr : {false, true}) {
      Routing ref(3 * 2, 3);
      reference::routeTokensChoose(kGoldenProbs.data(), ref.tokens.data(),
                                   ref.gates.data(), ref.offsets.data(), 1, 6,
                                   3, k, 2, bpr);
      expectSameRouting(routeGoldenTokensChoose(k, bpr), ref,
                        "tokens-choose golden k=" + std::to_string(k) +
                            " bpr=" + std::to_string(bpr));
    }
}

struct GroupShape {
  int64_t groups, tokensPerGroup, experts;
};

// One token per group, odd group sizes, a single expert.
const GroupShape kGroupShapes[] = {
    {3, 1, 4}, {2, 7, 3}, {1, 13, 5}, {4, 12, 1}, {2, 100, 8}};

TEST(RoutingTest, ExpertsChooseMatchesReferenceWithTies) {
  for (const GroupShape &s : kGroupShapes)
    for (int64_t capacity :
         {int64_t(1), (s.tokensPerGroup + 1) / 2, s.tokensPerGroup}) {
      int64_t slots = s.experts * s.groups * capacity;
      // Probabilities on a grid of 4 levels: ties are the rule.
      auto probs = gridFloats(s.groups * s.tokensPerGroup * s.experts, 1, 4);
      Routing r(slots, s.experts), ref(slots, s.experts);
      routeExpertsChoose(probs.data(), r.tokens.data(), r.gates.data(),
                         r.offsets.data(), s.groups, s.tokensPerGroup,
                         s.experts, capacity);
      reference::routeExpertsChoose(
          probs.data(), ref.tokens.data(), ref.gates.data(), ref.offsets.data(),
          s.groups, s.tokensPerGroup, s.experts, capacity);
      expectSameRouting(r, ref,
                        "experts-choose T=" + std::to_string(s.tokensPerGroup) +
                            " C=" + std::to_string(capacity));
    }
}

TEST(RoutingTest, TokensChooseMatchesReferenceWithTies) {
  for (const GroupShape &s : kGroupShapes)
    for (int64_t k : {int64_t(1), std::min<int64_t>(2, s.experts), s.experts})
      for (int64_t capacity : {int64_t(1), int64_t(3), s.tokensPerGroup})
        for (bool bpr : {false, true}) {
          int64_t slots = s.experts * s.groups * capacity;
          auto probs =
              gridFloats(s.groups * s.tokensPerGroup * s.experts, 2, 5);
          Routing r(slots, s.experts), ref(slots, s.experts);
          routeTokensChoose(probs.data(), r.tokens.data(), r.gates.data(),
                            r.offsets.data(), s.groups, s.tokensPerGroup,
                            s.experts, k, capacity, bpr);
          reference::routeTokensChoose(probs.data(), ref.tokens.data(),
                                       ref.gates.data(), ref.offsets.data(),
                                       s.groups, s.tokensPerGroup, s.experts, k,
                                       capacity, bpr);
          expectSameRouting(
              r, ref,
              "tokens-choose T=" + std::to_string(s.tokensPerGroup) +
                  " E=" + std::to_string(s.experts) +
                  " k=" + std::to_string(k) + " C=" + std::to_string(capacity) +
                  " bpr=" + std::to_string(bpr));
        }
}

TEST(RoutingTest, SigmoidTopKMatchesReferenceWithTies) {
  for (int64_t tokens : {1, 7, 100})
    for (int64_t experts : {1, 3, 8})
      for (int64_t k : {int64_t(1), std::min<int64_t>(2, experts), experts}) {
        auto logits = gridFloats(tokens * experts, 3, 3);
        for (float &l : logits)
          l = 4.0f * l - 2.0f;
        Routing r(tokens * k, experts), ref(tokens * k, experts);
        routeSigmoidTopK(logits.data(), r.tokens.data(), r.gates.data(),
                         r.offsets.data(), tokens, experts, k);
        reference::routeSigmoidTopK(logits.data(), ref.tokens.data(),
                                    ref.gates.data(), ref.offsets.data(),
                                    tokens, experts, k);
        expectSameRouting(r, ref,
                          "sigmoid top-k N=" + std::to_string(tokens) +
                              " E=" + std::to_string(experts) +
                              " k=" + std::to_string(k));
      }
}

TEST(RoutingTest, SigmoidTopKHandComputed) {
  // Token 0 logits [0, 2, 2]: top-2 = e1, e2 (tie to the lower index first);
  // token 1 logits [1, -1, 3]: e2, e0. Entries sorted by expert then token.
  std::vector<float> logits = {0, 2, 2, 1, -1, 3};
  Routing r(4, 3);
  routeSigmoidTopK(logits.data(), r.tokens.data(), r.gates.data(),
                   r.offsets.data(), 2, 3, 2);
  EXPECT_EQ(r.offsets, (std::vector<int32_t>{0, 1, 2, 4}));
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{1, 0, 0, 1}));
  auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  EXPECT_NEAR(r.gates[0], sigmoid(1), 1e-7);
  EXPECT_NEAR(r.gates[1], sigmoid(2), 1e-7);
  EXPECT_NEAR(r.gates[2], sigmoid(2), 1e-7);
  EXPECT_NEAR(r.gates[3], sigmoid(3), 1e-7);
}

TEST(RoutingTest, SigmoidTopKGivesDroppedPicksGateZero) {
  // Expert dropout leaves -inf logits: token 0 keeps one of its k = 2
  // experts, token 1 none. The missing picks go to the lowest dropped
  // experts with gate sigmoid(-inf) = 0, so they add nothing.
  const float dropped = -INFINITY;
  std::vector<float> logits = {dropped, 1,    dropped, dropped, dropped,
                               dropped, 0.5f, dropped, 2};
  Routing r(6, 3);
  routeSigmoidTopK(logits.data(), r.tokens.data(), r.gates.data(),
                   r.offsets.data(), 3, 3, 2);
  EXPECT_EQ(r.offsets, (std::vector<int32_t>{0, 3, 5, 6}));
  EXPECT_EQ(r.tokens, (std::vector<int32_t>{0, 1, 2, 0, 1, 2}));
  auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  EXPECT_EQ(r.gates[0], 0.0f);
  EXPECT_EQ(r.gates[1], 0.0f);
  EXPECT_NEAR(r.gates[2], sigmoid(0.5), 1e-7);
  EXPECT_NEAR(r.gates[3], sigmoid(1), 1e-7);
  EXPECT_EQ(r.gates[4], 0.0f);
  EXPECT_NEAR(r.gates[5], sigmoid(2), 1e-7);
}

TEST(RoutingTest, RejectsImpossibleParameters) {
  std::vector<float> probs(6, 0.5f);
  Routing r(12, 3);
  EXPECT_THROW(routeExpertsChoose(probs.data(), r.tokens.data(), r.gates.data(),
                                  r.offsets.data(), 1, 2, 3, 3),
               KernelError);
  EXPECT_THROW(routeTokensChoose(probs.data(), r.tokens.data(), r.gates.data(),
                                 r.offsets.data(), 1, 2, 3, 4, 2, true),
               KernelError);
}

TEST(DispatchTest, GathersRowsAndZerosEmptySlots) {
  const int64_t tokens = 5, d = 7;
  auto x = randomFloats(tokens * d, 4);
  std::vector<int32_t> slots = {3, -1, 0, 3, 4, -1};
  std::vector<float> xd(slots.size() * d, 9.0f), expected(xd.size());
  dispatch(x.data(), slots.data(), xd.data(), slots.size(), tokens, d);
  reference::dispatch(x.data(), slots.data(), expected.data(), slots.size(),
                      tokens, d);
  test::expectBitwiseEqual(xd, expected, "dispatch");
  EXPECT_EQ(xd[d], 0.0f);
  EXPECT_EQ(xd[3 * d + 2], x[3 * d + 2]);
}

/// Experts-kernel inputs for `experts` experts with the given slot table.
struct ExpertsCase {
  int64_t experts, d, f;
  std::vector<int32_t> tokens, offsets;
};

void checkExperts(const ExpertsCase &c, const std::string &what) {
  int64_t slots = c.tokens.size();
  auto xd = randomFloats(slots * c.d, 5);
  for (int64_t i = 0; i < slots; ++i)
    if (c.tokens[i] < 0)
      std::fill(xd.begin() + i * c.d, xd.begin() + (i + 1) * c.d, 0.0f);
  auto w1 = randomFloats(c.experts * c.d * c.f, 6);
  auto b1 = randomFloats(c.experts * c.f, 7);
  auto w2 = randomFloats(c.experts * c.f * c.d, 8);
  auto b2 = randomFloats(c.experts * c.d, 9);
  for (Activation act : {Activation::Gelu, Activation::Relu})
    for (bool withBias : {false, true}) {
      const float *pb1 = withBias ? b1.data() : nullptr;
      const float *pb2 = withBias ? b2.data() : nullptr;
      std::vector<float> yd(slots * c.d, 5.0f), expected(slots * c.d);
      experts(xd.data(), c.tokens.data(), c.offsets.data(), w1.data(), pb1,
              w2.data(), pb2, yd.data(), c.experts, slots, c.d, c.f, act);
      reference::experts(xd.data(), c.tokens.data(), c.offsets.data(),
                         w1.data(), pb1, w2.data(), pb2, expected.data(),
                         c.experts, slots, c.d, c.f, act);
      expectClose(yd, expected, kRelTol,
                  what + " act=" + std::to_string(static_cast<int>(act)) +
                      " bias=" + std::to_string(withBias));
      for (int64_t i = 0; i < slots; ++i) {
        if (c.tokens[i] >= 0)
          continue;
        for (int64_t j = 0; j < c.d; ++j)
          ASSERT_EQ(yd[i * c.d + j], 0.0f) << what << ": empty slot " << i;
      }
    }
}

TEST(ExpertsTest, EmptySlotsAndEmptyExperts) {
  // Tokens-choose layout (E=3, G=2, C=3) with unfilled slots, expert 1 empty.
  checkExperts(
      {3,
       5,
       7,
       {0, 4, -1, 2, -1, -1, -1, -1, -1, -1, -1, -1, 1, 3, 5, 6, -1, -1},
       {0, 6, 12, 18}},
      "tokens-choose layout");
  // sigma-MoE layout: expert 0 and 2 empty.
  checkExperts({4, 3, 13, {0, 1, 2, 0, 2}, {0, 0, 3, 3, 5}}, "sigmoid layout");
  // A single slot, a single expert.
  checkExperts({1, 1, 1, {0}, {0, 1}}, "single slot");
}

TEST(DispatchTest, RejectsTokensOutOfRange) {
  // A damaged plan may leave any bits in the token table.
  std::vector<int32_t> slots = {0, 4};
  std::vector<float> x(4), xd(2);
  EXPECT_THROW(dispatch(x.data(), slots.data(), xd.data(), 2, 4, 1),
               KernelError);
}

TEST(ExpertsTest, RejectsOffsetsOutsideTheSlots) {
  std::vector<int32_t> tokens = {0, 1};
  std::vector<float> xd(2), w(1), yd(2);
  for (std::vector<int32_t> offsets :
       {std::vector<int32_t>{0, 3}, {-1, 2}, {0, 2, 1}}) {
    int64_t numExperts = offsets.size() - 1;
    std::vector<float> weights(numExperts);
    EXPECT_THROW(experts(xd.data(), tokens.data(), offsets.data(),
                         weights.data(), nullptr, weights.data(), nullptr,
                         yd.data(), numExperts, 2, 1, 1, Activation::None),
                 KernelError)
        << offsets[0] << " " << offsets[1];
  }
}

TEST(ExpertsTest, ExpertLongerThanOneTile) {
  // Expert 0 owns 700 slots with empty ones at 600 and 650: a 600-row run
  // (more than one 512-row work item) and two short runs. Expert 1 has 3.
  ExpertsCase c{2, 6, 10, {}, {0, 700, 703}};
  for (int i = 0; i < 703; ++i)
    c.tokens.push_back(i == 600 || i == 650 ? -1 : i % 300);
  checkExperts(c, "long expert");
}

TEST(CombineTest, MatchesReferenceWithDuplicatesAndUnnamedTokens) {
  const int64_t tokens = 9, d = 13;
  // Token 1 appears three times, tokens 5 and 8 never.
  std::vector<int32_t> slots = {1, 0, -1, 1, 2, 3, 4, 1, 6, 7, -1, 0};
  auto yd = randomFloats(slots.size() * d, 10);
  auto gates = randomFloats(slots.size(), 11, 0.0f, 1.0f);
  std::vector<float> out(tokens * d, 3.0f), expected(tokens * d);
  combine(yd.data(), slots.data(), gates.data(), out.data(), slots.size(),
          tokens, d);
  reference::combine(yd.data(), slots.data(), gates.data(), expected.data(),
                     slots.size(), tokens, d);
  expectClose(out, expected, kRelTol, "combine");
  for (int64_t j = 0; j < d; ++j) {
    EXPECT_EQ(out[5 * d + j], 0.0f);
    EXPECT_EQ(out[8 * d + j], 0.0f);
  }
}

TEST(CombineTest, RejectsTokensOutOfRange) {
  std::vector<int32_t> slots = {0, 4};
  std::vector<float> yd(2), gates(2, 1.0f), out(4);
  EXPECT_THROW(
      combine(yd.data(), slots.data(), gates.data(), out.data(), 2, 4, 1),
      KernelError);
}

TEST(CombineTest, ThreadCountDoesNotChangeBits) {
  const int64_t tokens = 3000, d = 40, slots = 4 * tokens;
  std::vector<int32_t> slotTokens(slots);
  for (int64_t i = 0; i < slots; ++i)
    slotTokens[i] = static_cast<int32_t>((i * 7919) % tokens);
  auto yd = randomFloats(slots * d, 12);
  auto gates = randomFloats(slots, 13);
  test::expectThreadCountIndependent(
      tokens * d,
      [&](float *out) {
        combine(yd.data(), slotTokens.data(), gates.data(), out, slots, tokens,
                d);
      },
      "combine");
}

TEST(MoePipelineTest, ExpertsChooseLayerMatchesReference) {
  // Route -> dispatch -> experts -> combine, optimized against reference,
  // G = 2 groups of 12 tokens, E = 4, C = 3, with probabilities from a
  // softmax of random router logits.
  const int64_t groups = 2, tpg = 12, numExperts = 4, capacity = 3, d = 8,
                f = 16, tokens = groups * tpg;
  const int64_t slots = numExperts * groups * capacity;
  auto x = randomFloats(tokens * d, 14);
  auto logits = randomFloats(tokens * numExperts, 15, -3.0f, 3.0f);
  std::vector<float> probs(logits.size());
  softmax(logits.data(), probs.data(), tokens, numExperts);
  auto w1 = randomFloats(numExperts * d * f, 16);
  auto b1 = randomFloats(numExperts * f, 17);
  auto w2 = randomFloats(numExperts * f * d, 18);
  auto b2 = randomFloats(numExperts * d, 19);

  auto layer = [&](auto route, auto dispatchFn, auto expertsFn,
                   auto combineFn) {
    Routing r(slots, numExperts);
    route(probs.data(), r.tokens.data(), r.gates.data(), r.offsets.data(),
          groups, tpg, numExperts, capacity);
    std::vector<float> xd(slots * d), yd(slots * d), out(tokens * d);
    dispatchFn(x.data(), r.tokens.data(), xd.data(), slots, tokens, d);
    expertsFn(xd.data(), r.tokens.data(), r.offsets.data(), w1.data(),
              b1.data(), w2.data(), b2.data(), yd.data(), numExperts, slots, d,
              f, Activation::Gelu);
    combineFn(yd.data(), r.tokens.data(), r.gates.data(), out.data(), slots,
              tokens, d);
    return out;
  };
  auto optimized =
      layer([](auto... a) { routeExpertsChoose(a...); },
            [](auto... a) { dispatch(a...); }, [](auto... a) { experts(a...); },
            [](auto... a) { combine(a...); });
  auto expected = layer([](auto... a) { reference::routeExpertsChoose(a...); },
                        [](auto... a) { reference::dispatch(a...); },
                        [](auto... a) { reference::experts(a...); },
                        [](auto... a) { reference::combine(a...); });
  expectClose(optimized, expected, kRelTol, "experts-choose MoE layer");
}

} // namespace
} // namespace mixer::cpu
