//===- MoeGradientTest.cpp - backward of dispatch, experts, combine -------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/MixingMoeGradients.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/cpu/ReferenceMixingMoeGradients.h"
#include "test/unit/cpu/GradientCheck.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::expectBitwiseEqual;
using test::expectClose;
using test::finiteDifferences;
using test::kRelTol;
using test::randomFloats;
using test::weightedSum;

/// An assignment table over numTokens tokens.
struct Table {
  std::string name;
  int64_t numTokens, experts;
  std::vector<int32_t> tokens, offsets;
  int64_t slots() const { return static_cast<int64_t>(tokens.size()); }
};

/// Tokens choose, top-2 of 3 experts, capacity 2 of groups of 7: dropped
/// assignments leave empty slots; tokens sit in two experts.
Table tokensChooseTable() {
  const int64_t groups = 2, tpg = 7, experts = 3, capacity = 2;
  auto probs = randomFloats(groups * tpg * experts, 40, 0.0f, 1.0f);
  Table t{"tokens-choose", groups * tpg, experts,
          std::vector<int32_t>(experts * groups * capacity),
          std::vector<int32_t>(experts + 1)};
  std::vector<float> gates(t.slots());
  routeTokensChoose(probs.data(), t.tokens.data(), gates.data(),
                    t.offsets.data(), groups, tpg, experts, 2, capacity, true);
  return t;
}

/// Experts choose with capacity = group size: every expert takes every token.
Table expertsChooseFullTable() {
  const int64_t groups = 2, tpg = 5, experts = 3;
  auto probs = randomFloats(groups * tpg * experts, 41, 0.0f, 1.0f);
  Table t{"experts-choose C=T", groups * tpg, experts,
          std::vector<int32_t>(experts * groups * tpg),
          std::vector<int32_t>(experts + 1)};
  std::vector<float> gates(t.slots());
  routeExpertsChoose(probs.data(), t.tokens.data(), gates.data(),
                     t.offsets.data(), groups, tpg, experts, tpg);
  return t;
}

/// sigma-MoE with k = E: every token in every expert, sorted by expert.
Table sigmoidAllExpertsTable() {
  const int64_t tokens = 6, experts = 4;
  auto logits = randomFloats(tokens * experts, 42, -3.0f, 3.0f);
  Table t{"sigmoid k=E", tokens, experts,
          std::vector<int32_t>(tokens * experts),
          std::vector<int32_t>(experts + 1)};
  std::vector<float> gates(t.slots());
  routeSigmoidTopK(logits.data(), t.tokens.data(), gates.data(),
                   t.offsets.data(), tokens, experts, experts);
  return t;
}

/// Hand-made: expert 1 empty, empty slots inside expert 0 and at its end.
Table emptyExpertTable() {
  return {"empty expert",
          7,
          3,
          {0, 4, -1, 2, -1, -1, -1, -1, -1, -1, -1, -1, 1, 3, 5, 6, -1, -1},
          {0, 6, 12, 18}};
}

/// Expert 0 owns 700 slots with empty ones at 600 and 650 (a run longer than
/// one 512-row tile); expert 1 has 3.
Table longExpertTable() {
  Table t{"long expert", 300, 2, {}, {0, 700, 703}};
  for (int i = 0; i < 703; ++i)
    t.tokens.push_back(i == 600 || i == 650 ? -1 : i % 300);
  return t;
}

std::vector<Table> allTables() {
  return {tokensChooseTable(), expertsChooseFullTable(),
          sigmoidAllExpertsTable(), emptyExpertTable(), longExpertTable()};
}

/// Rows of empty slots set to NaN: kernels must not read them.
void poisonEmptyRows(std::vector<float> &rows, const Table &t, int64_t cols) {
  for (int64_t i = 0; i < t.slots(); ++i)
    if (t.tokens[i] < 0)
      std::fill(rows.begin() + i * cols, rows.begin() + (i + 1) * cols, NAN);
}

/// Gradient buffers pre-filled with values that accumulation must keep.
std::vector<float> prefilled(int64_t n, bool accumulate, uint32_t seed) {
  return accumulate ? randomFloats(n, seed) : std::vector<float>(n, NAN);
}

std::string actName(Activation act) {
  const char *names[] = {"none", "gelu", "tanh", "relu", "gelu_erf"};
  return names[static_cast<int>(act)];
}

//===----------------------------------------------------------------------===//
// combine
//===----------------------------------------------------------------------===//

TEST(CombineBackwardTest, HandComputed) {
  // Slots {1, -1, 1, 0}: token 1 twice, one empty slot; d = 2.
  std::vector<int32_t> tokens = {1, -1, 1, 0};
  std::vector<float> yd = {1, 2, 9, 9, 3, -1, 0.5f, 4};
  std::vector<float> gates = {0.5f, 7, 2, 1};
  std::vector<float> dout = {1, -2, 3, 4};
  std::vector<float> dyd(8, NAN), dgates(4, NAN);
  combineBackward(yd.data(), tokens.data(), gates.data(), dout.data(),
                  dyd.data(), dgates.data(), 4, 2, 2);
  EXPECT_EQ(dyd, (std::vector<float>{1.5f, 2, 0, 0, 6, 8, 1, -2}));
  // <yd[i], dout[token]>: 1*3 + 2*4, 0, 3*3 - 1*4, 0.5*1 - 4*2.
  EXPECT_EQ(dgates, (std::vector<float>{11, 0, 5, -7.5f}));
}

TEST(CombineBackwardTest, MatchesReference) {
  const int64_t d = 13;
  for (const Table &t : allTables()) {
    auto yd = randomFloats(t.slots() * d, 43);
    auto gates = randomFloats(t.slots(), 44, 0.0f, 1.0f);
    auto dout = randomFloats(t.numTokens * d, 45);
    std::vector<float> dyd(t.slots() * d, NAN), dgates(t.slots(), NAN);
    std::vector<float> dydRef(dyd.size()), dgatesRef(dgates.size());
    combineBackward(yd.data(), t.tokens.data(), gates.data(), dout.data(),
                    dyd.data(), dgates.data(), t.slots(), t.numTokens, d);
    reference::combineBackward(yd.data(), t.tokens.data(), gates.data(),
                               dout.data(), dydRef.data(), dgatesRef.data(),
                               t.slots(), t.numTokens, d);
    expectClose(dyd, dydRef, kRelTol, t.name + " dyd");
    expectClose(dgates, dgatesRef, kRelTol, t.name + " dgates");
  }
}

TEST(CombineBackwardTest, ReferenceMatchesFiniteDifferences) {
  const int64_t d = 3;
  for (const Table &t : {tokensChooseTable(), emptyExpertTable()}) {
    auto yd = randomFloats(t.slots() * d, 46);
    auto gates = randomFloats(t.slots(), 47, 0.0f, 1.0f);
    auto dout = randomFloats(t.numTokens * d, 48);
    std::vector<float> dyd(yd.size()), dgates(gates.size());
    std::vector<float> out(t.numTokens * d);
    reference::combineBackward(yd.data(), t.tokens.data(), gates.data(),
                               dout.data(), dyd.data(), dgates.data(),
                               t.slots(), t.numTokens, d);
    auto loss = [&] {
      reference::combine(yd.data(), t.tokens.data(), gates.data(), out.data(),
                         t.slots(), t.numTokens, d);
      return weightedSum(out, dout);
    };
    // combine is bilinear: differences with a power-of-two step are exact up
    // to the rounding of its outputs.
    expectClose(dyd, finiteDifferences(yd, 0.125f, loss), 1e-4,
                t.name + " finite differences dyd");
    expectClose(dgates, finiteDifferences(gates, 0.125f, loss), 1e-4,
                t.name + " finite differences dgates");
  }
}

TEST(CombineBackwardTest, ThreadCountDoesNotChangeBits) {
  const int64_t tokens = 3000, d = 40, slots = 4 * tokens;
  std::vector<int32_t> slotTokens(slots);
  for (int64_t i = 0; i < slots; ++i)
    slotTokens[i] =
        i % 97 == 0 ? -1 : static_cast<int32_t>((i * 7919) % tokens);
  auto yd = randomFloats(slots * d, 49);
  auto gates = randomFloats(slots, 50);
  auto dout = randomFloats(tokens * d, 51);
  test::expectThreadCountIndependent(
      slots * d + slots,
      [&](float *out) {
        combineBackward(yd.data(), slotTokens.data(), gates.data(), dout.data(),
                        out, out + slots * d, slots, tokens, d);
      },
      "combineBackward");
}

//===----------------------------------------------------------------------===//
// experts
//===----------------------------------------------------------------------===//

/// Expert weights and biases.
struct ExpertParams {
  std::vector<float> w1, b1, w2, b2;
  ExpertParams(int64_t experts, int64_t d, int64_t f, uint32_t seed)
      : w1(randomFloats(experts * d * f, seed)),
        b1(randomFloats(experts * f, seed + 1)),
        w2(randomFloats(experts * f * d, seed + 2)),
        b2(randomFloats(experts * d, seed + 3)) {}
};

TEST(ExpertsForwardTrainingTest, SameOutputAsExpertsAndStoresPreactivations) {
  const int64_t d = 5, f = 7;
  for (const Table &t : allTables())
    for (Activation act : {Activation::Gelu, Activation::Relu})
      for (bool withBias : {false, true}) {
        ExpertParams p(t.experts, d, f, 52);
        const float *b1 = withBias ? p.b1.data() : nullptr;
        const float *b2 = withBias ? p.b2.data() : nullptr;
        auto xd = randomFloats(t.slots() * d, 56);
        std::vector<float> yd(t.slots() * d, NAN), preact(t.slots() * f, NAN);
        std::vector<float> ydPlain(yd.size()), ydRef(yd.size()),
            preactRef(preact.size());
        expertsForwardTraining(xd.data(), t.tokens.data(), t.offsets.data(),
                               p.w1.data(), b1, p.w2.data(), b2, yd.data(),
                               preact.data(), t.experts, t.slots(), d, f, act);
        experts(xd.data(), t.tokens.data(), t.offsets.data(), p.w1.data(), b1,
                p.w2.data(), b2, ydPlain.data(), t.experts, t.slots(), d, f,
                act);
        reference::expertsForwardTraining(
            xd.data(), t.tokens.data(), t.offsets.data(), p.w1.data(), b1,
            p.w2.data(), b2, ydRef.data(), preactRef.data(), t.experts,
            t.slots(), d, f, act);
        std::string what = t.name + " act=" + actName(act) +
                           " bias=" + std::to_string(withBias);
        expectBitwiseEqual(yd, ydPlain, what + " yd against experts");
        expectClose(preact, preactRef, kRelTol, what + " preactivations");
        expectClose(yd, ydRef, kRelTol, what + " yd");
      }
}

TEST(ExpertsBackwardTest, MatchesReference) {
  const int64_t d = 5, f = 7;
  for (const Table &t : allTables())
    for (Activation act : {Activation::None, Activation::Gelu, Activation::Tanh,
                           Activation::Relu, Activation::GeluErf})
      for (bool withBias : {false, true})
        for (bool accumulate : {false, true}) {
          ExpertParams p(t.experts, d, f, 57);
          const float *b1 = withBias ? p.b1.data() : nullptr;
          const float *b2 = withBias ? p.b2.data() : nullptr;
          auto xd = randomFloats(t.slots() * d, 61);
          auto dyd = randomFloats(t.slots() * d, 62);
          poisonEmptyRows(xd, t, d);
          poisonEmptyRows(dyd, t, d);
          std::vector<float> yd(t.slots() * d), preact(t.slots() * f),
              preactRef(preact.size());
          expertsForwardTraining(xd.data(), t.tokens.data(), t.offsets.data(),
                                 p.w1.data(), b1, p.w2.data(), b2, yd.data(),
                                 preact.data(), t.experts, t.slots(), d, f,
                                 act);
          reference::expertsForwardTraining(
              xd.data(), t.tokens.data(), t.offsets.data(), p.w1.data(), b1,
              p.w2.data(), b2, yd.data(), preactRef.data(), t.experts,
              t.slots(), d, f, act);

          std::vector<float> dxd(t.slots() * d, NAN), dxdRef(dxd.size());
          auto dw1 = prefilled(p.w1.size(), accumulate, 63), dw1Ref = dw1;
          auto dw2 = prefilled(p.w2.size(), accumulate, 64), dw2Ref = dw2;
          auto db1 = prefilled(p.b1.size(), accumulate, 65), db1Ref = db1;
          auto db2 = prefilled(p.b2.size(), accumulate, 66), db2Ref = db2;
          std::vector<float> scratch(2 * t.slots() * f);
          expertsBackward(xd.data(), t.tokens.data(), t.offsets.data(),
                          p.w1.data(), p.w2.data(), preact.data(), dyd.data(),
                          dxd.data(), dw1.data(),
                          withBias ? db1.data() : nullptr, dw2.data(),
                          withBias ? db2.data() : nullptr, scratch.data(),
                          t.experts, t.slots(), d, f, act, accumulate);
          reference::expertsBackward(
              xd.data(), t.tokens.data(), t.offsets.data(), p.w1.data(),
              p.w2.data(), preactRef.data(), dyd.data(), dxdRef.data(),
              dw1Ref.data(), withBias ? db1Ref.data() : nullptr, dw2Ref.data(),
              withBias ? db2Ref.data() : nullptr, t.experts, t.slots(), d, f,
              act, accumulate);
          std::string what = t.name + " act=" + actName(act) +
                             " bias=" + std::to_string(withBias) +
                             " accumulate=" + std::to_string(accumulate);
          expectClose(dxd, dxdRef, kRelTol, what + " dxd");
          expectClose(dw1, dw1Ref, kRelTol, what + " dw1");
          expectClose(dw2, dw2Ref, kRelTol, what + " dw2");
          if (withBias) {
            expectClose(db1, db1Ref, kRelTol, what + " db1");
            expectClose(db2, db2Ref, kRelTol, what + " db2");
          }
        }
}

TEST(ExpertsBackwardTest, EmptyExpertGetsZeroGradients) {
  Table t = emptyExpertTable();
  const int64_t d = 3, f = 4;
  ExpertParams p(t.experts, d, f, 67);
  auto xd = randomFloats(t.slots() * d, 71), dyd = randomFloats(xd.size(), 72);
  std::vector<float> yd(xd.size()), preact(t.slots() * f),
      scratch(2 * t.slots() * f), dxd(xd.size());
  std::vector<float> dw1(p.w1.size(), NAN), db1(p.b1.size(), NAN),
      dw2(p.w2.size(), NAN), db2(p.b2.size(), NAN);
  expertsForwardTraining(xd.data(), t.tokens.data(), t.offsets.data(),
                         p.w1.data(), p.b1.data(), p.w2.data(), p.b2.data(),
                         yd.data(), preact.data(), t.experts, t.slots(), d, f,
                         Activation::Gelu);
  expertsBackward(xd.data(), t.tokens.data(), t.offsets.data(), p.w1.data(),
                  p.w2.data(), preact.data(), dyd.data(), dxd.data(),
                  dw1.data(), db1.data(), dw2.data(), db2.data(),
                  scratch.data(), t.experts, t.slots(), d, f, Activation::Gelu,
                  false);
  for (int64_t i = 0; i < d * f; ++i) {
    EXPECT_EQ(dw1[d * f + i], 0.0f) << "dw1 of expert 1, entry " << i;
    EXPECT_EQ(dw2[f * d + i], 0.0f) << "dw2 of expert 1, entry " << i;
  }
  for (int64_t i = 0; i < f; ++i)
    EXPECT_EQ(db1[f + i], 0.0f) << "db1 of expert 1, entry " << i;
  for (int64_t i = 0; i < d; ++i)
    EXPECT_EQ(db2[d + i], 0.0f) << "db2 of expert 1, entry " << i;
}

TEST(ExpertsBackwardTest, ReferenceMatchesFiniteDifferences) {
  // Central differences with step 1e-2 on the smooth activations: truncation
  // and the float rounding of the forward stay below 1e-3 of the RMS.
  const int64_t d = 3, f = 4;
  const float step = 1e-2f;
  const double tol = 1e-3;
  for (const Table &t : {emptyExpertTable(), sigmoidAllExpertsTable()})
    for (Activation act :
         {Activation::None, Activation::Gelu, Activation::Tanh}) {
      ExpertParams p(t.experts, d, f, 73);
      auto xd = randomFloats(t.slots() * d, 77);
      auto dyd = randomFloats(t.slots() * d, 78);
      std::vector<float> yd(xd.size()), preact(t.slots() * f), dxd(xd.size());
      std::vector<float> dw1(p.w1.size()), db1(p.b1.size()), dw2(p.w2.size()),
          db2(p.b2.size());
      reference::expertsForwardTraining(
          xd.data(), t.tokens.data(), t.offsets.data(), p.w1.data(),
          p.b1.data(), p.w2.data(), p.b2.data(), yd.data(), preact.data(),
          t.experts, t.slots(), d, f, act);
      reference::expertsBackward(xd.data(), t.tokens.data(), t.offsets.data(),
                                 p.w1.data(), p.w2.data(), preact.data(),
                                 dyd.data(), dxd.data(), dw1.data(), db1.data(),
                                 dw2.data(), db2.data(), t.experts, t.slots(),
                                 d, f, act, false);
      auto loss = [&] {
        reference::experts(xd.data(), t.tokens.data(), t.offsets.data(),
                           p.w1.data(), p.b1.data(), p.w2.data(), p.b2.data(),
                           yd.data(), t.experts, t.slots(), d, f, act);
        return weightedSum(yd, dyd);
      };
      std::string what =
          t.name + " act=" + actName(act) + " finite differences";
      expectClose(dxd, finiteDifferences(xd, step, loss), tol, what + " dxd");
      expectClose(dw1, finiteDifferences(p.w1, step, loss), tol, what + " dw1");
      expectClose(db1, finiteDifferences(p.b1, step, loss), tol, what + " db1");
      expectClose(dw2, finiteDifferences(p.w2, step, loss), tol, what + " dw2");
      expectClose(db2, finiteDifferences(p.b2, step, loss), tol, what + " db2");
    }
}

TEST(ExpertsBackwardTest, ThreadCountDoesNotChangeBits) {
  Table t = longExpertTable();
  const int64_t d = 40, f = 72;
  ExpertParams p(t.experts, d, f, 79);
  auto xd = randomFloats(t.slots() * d, 83), dyd = randomFloats(xd.size(), 84);
  std::vector<float> yd(xd.size()), preact(t.slots() * f);
  expertsForwardTraining(xd.data(), t.tokens.data(), t.offsets.data(),
                         p.w1.data(), p.b1.data(), p.w2.data(), p.b2.data(),
                         yd.data(), preact.data(), t.experts, t.slots(), d, f,
                         Activation::Gelu);
  int64_t sizes[] = {t.slots() * d, t.experts * d * f, t.experts * f,
                     t.experts * f * d, t.experts * d};
  int64_t total = 0;
  for (int64_t size : sizes)
    total += size;
  test::expectThreadCountIndependent(
      total,
      [&](float *out) {
        std::vector<float> scratch(2 * t.slots() * f);
        float *dxd = out, *dw1 = dxd + sizes[0], *db1 = dw1 + sizes[1],
              *dw2 = db1 + sizes[2], *db2 = dw2 + sizes[3];
        expertsBackward(xd.data(), t.tokens.data(), t.offsets.data(),
                        p.w1.data(), p.w2.data(), preact.data(), dyd.data(),
                        dxd, dw1, db1, dw2, db2, scratch.data(), t.experts,
                        t.slots(), d, f, Activation::Gelu, false);
      },
      "expertsBackward");
}

/// The gradients of one expertsBackward(Recompute) call, concatenated: dxd,
/// dw1, db1, dw2, db2.
struct ExpertGrads {
  std::vector<float> dxd, dw1, db1, dw2, db2;
  ExpertGrads(const Table &t, const ExpertParams &p, int64_t d, bool accumulate)
      : dxd(t.slots() * d, NAN), dw1(prefilled(p.w1.size(), accumulate, 91)),
        db1(prefilled(p.b1.size(), accumulate, 92)),
        dw2(prefilled(p.w2.size(), accumulate, 93)),
        db2(prefilled(p.b2.size(), accumulate, 94)) {}
};

TEST(ExpertsBackwardRecomputeTest, SameBitsAsStoredPreactivations) {
  const int64_t d = 5, f = 7;
  for (const Table &t : allTables())
    for (Activation act : {Activation::None, Activation::Gelu, Activation::Tanh,
                           Activation::Relu})
      for (bool withBias : {false, true})
        for (bool accumulate : {false, true}) {
          ExpertParams p(t.experts, d, f, 87);
          const float *b1 = withBias ? p.b1.data() : nullptr;
          auto xd = randomFloats(t.slots() * d, 88);
          auto dyd = randomFloats(t.slots() * d, 89);
          poisonEmptyRows(xd, t, d);
          poisonEmptyRows(dyd, t, d);
          std::vector<float> yd(t.slots() * d), preact(t.slots() * f),
              scratch(2 * t.slots() * f);
          expertsForwardTraining(xd.data(), t.tokens.data(), t.offsets.data(),
                                 p.w1.data(), b1, p.w2.data(), nullptr,
                                 yd.data(), preact.data(), t.experts, t.slots(),
                                 d, f, act);
          ExpertGrads stored(t, p, d, accumulate), recomputed = stored;
          auto biasGrad = [&](std::vector<float> &g) {
            return withBias ? g.data() : nullptr;
          };
          expertsBackward(xd.data(), t.tokens.data(), t.offsets.data(),
                          p.w1.data(), p.w2.data(), preact.data(), dyd.data(),
                          stored.dxd.data(), stored.dw1.data(),
                          biasGrad(stored.db1), stored.dw2.data(),
                          biasGrad(stored.db2), scratch.data(), t.experts,
                          t.slots(), d, f, act, accumulate);
          expertsBackwardRecompute(
              xd.data(), t.tokens.data(), t.offsets.data(), p.w1.data(), b1,
              p.w2.data(), dyd.data(), recomputed.dxd.data(),
              recomputed.dw1.data(), biasGrad(recomputed.db1),
              recomputed.dw2.data(), biasGrad(recomputed.db2), scratch.data(),
              t.experts, t.slots(), d, f, act, accumulate);
          std::string what = t.name + " act=" + actName(act) +
                             " bias=" + std::to_string(withBias) +
                             " accumulate=" + std::to_string(accumulate);
          expectBitwiseEqual(recomputed.dxd, stored.dxd, what + " dxd");
          expectBitwiseEqual(recomputed.dw1, stored.dw1, what + " dw1");
          expectBitwiseEqual(recomputed.dw2, stored.dw2, what + " dw2");
          if (withBias) {
            expectBitwiseEqual(recomputed.db1, stored.db1, what + " db1");
            expectBitwiseEqual(recomputed.db2, stored.db2, what + " db2");
          }
        }
}

TEST(ExpertsBackwardRecomputeTest, ThreadCountDoesNotChangeBits) {
  Table t = longExpertTable();
  const int64_t d = 40, f = 72;
  ExpertParams p(t.experts, d, f, 95);
  auto xd = randomFloats(t.slots() * d, 96), dyd = randomFloats(xd.size(), 97);
  int64_t sizes[] = {t.slots() * d, t.experts * d * f, t.experts * f,
                     t.experts * f * d, t.experts * d};
  test::expectThreadCountIndependent(
      sizes[0] + sizes[1] + sizes[2] + sizes[3] + sizes[4],
      [&](float *out) {
        std::vector<float> scratch(2 * t.slots() * f);
        float *dxd = out, *dw1 = dxd + sizes[0], *db1 = dw1 + sizes[1],
              *dw2 = db1 + sizes[2], *db2 = dw2 + sizes[3];
        expertsBackwardRecompute(xd.data(), t.tokens.data(), t.offsets.data(),
                                 p.w1.data(), p.b1.data(), p.w2.data(),
                                 dyd.data(), dxd, dw1, db1, dw2, db2,
                                 scratch.data(), t.experts, t.slots(), d, f,
                                 Activation::Gelu, false);
      },
      "expertsBackwardRecompute");
}

//===----------------------------------------------------------------------===//
// dispatch
//===----------------------------------------------------------------------===//

TEST(DispatchBackwardTest, MatchesReferenceAndFiniteDifferences) {
  const int64_t d = 6;
  for (const Table &t : allTables()) {
    auto dxd = randomFloats(t.slots() * d, 85);
    poisonEmptyRows(dxd, t, d);
    std::vector<float> dx(t.numTokens * d, NAN), dxRef(dx.size());
    dispatchBackward(dxd.data(), t.tokens.data(), dx.data(), t.slots(),
                     t.numTokens, d);
    reference::dispatchBackward(dxd.data(), t.tokens.data(), dxRef.data(),
                                t.slots(), t.numTokens, d);
    expectClose(dx, dxRef, kRelTol, t.name + " dispatch backward");
  }
  Table t = tokensChooseTable();
  auto x = randomFloats(t.numTokens * d, 86);
  auto dxd = randomFloats(t.slots() * d, 87);
  std::vector<float> dx(x.size()), xd(dxd.size());
  reference::dispatchBackward(dxd.data(), t.tokens.data(), dx.data(), t.slots(),
                              t.numTokens, d);
  auto loss = [&] {
    reference::dispatch(x.data(), t.tokens.data(), xd.data(), t.slots(),
                        t.numTokens, d);
    return weightedSum(xd, dxd);
  };
  expectClose(dx, finiteDifferences(x, 0.125f, loss), 1e-4,
              "dispatch finite differences");
}

TEST(DispatchBackwardTest, ThreadCountDoesNotChangeBits) {
  const int64_t tokens = 3000, d = 40, slots = 4 * tokens;
  std::vector<int32_t> slotTokens(slots);
  for (int64_t i = 0; i < slots; ++i)
    slotTokens[i] = static_cast<int32_t>((i * 7919) % tokens);
  auto dxd = randomFloats(slots * d, 88);
  test::expectThreadCountIndependent(
      tokens * d,
      [&](float *dx) {
        dispatchBackward(dxd.data(), slotTokens.data(), dx, slots, tokens, d);
      },
      "dispatchBackward");
}

TEST(MoeBackwardTest, RejectsTokensOutOfRange) {
  std::vector<int32_t> tokens = {0, 4};
  std::vector<int32_t> offsets = {0, 2};
  std::vector<float> rows(2), gates(2, 1.0f), out(4), dgates(2);
  EXPECT_THROW(combineBackward(rows.data(), tokens.data(), gates.data(),
                               out.data(), rows.data(), dgates.data(), 2, 4, 1),
               KernelError);
  EXPECT_THROW(
      dispatchBackward(rows.data(), tokens.data(), out.data(), 2, 4, 1),
      KernelError);
  EXPECT_THROW(routerGateBackward(Routing::ExpertsChoose, nullptr,
                                  tokens.data(), offsets.data(), gates.data(),
                                  out.data(), 4, 1),
               KernelError);
  // Sigmoid gates need the logits.
  tokens[1] = 1;
  EXPECT_THROW(routerGateBackward(Routing::SigmoidTopK, nullptr, tokens.data(),
                                  offsets.data(), gates.data(), out.data(), 4,
                                  1),
               KernelError);
}

//===----------------------------------------------------------------------===//
// router gates
//===----------------------------------------------------------------------===//

/// One routing run: the table and gates it produces from the scores.
struct Routed {
  std::vector<int32_t> tokens;
  std::vector<float> gates;
  std::vector<int32_t> offsets;
};

/// Routes `scores` [numTokens, experts] with the reference router.
Routed routeReference(Routing routing, const std::vector<float> &scores,
                      int64_t groups, int64_t tpg, int64_t experts) {
  const int64_t capacity = 3, k = 2;
  int64_t slots = routing == Routing::SigmoidTopK ? groups * tpg * k
                                                  : experts * groups * capacity;
  Routed r{std::vector<int32_t>(slots), std::vector<float>(slots),
           std::vector<int32_t>(experts + 1)};
  switch (routing) {
  case Routing::ExpertsChoose:
    reference::routeExpertsChoose(scores.data(), r.tokens.data(),
                                  r.gates.data(), r.offsets.data(), groups, tpg,
                                  experts, capacity);
    break;
  case Routing::TokensChoose:
    reference::routeTokensChoose(scores.data(), r.tokens.data(), r.gates.data(),
                                 r.offsets.data(), groups, tpg, experts, k,
                                 capacity, true);
    break;
  case Routing::SigmoidTopK:
    reference::routeSigmoidTopK(scores.data(), r.tokens.data(), r.gates.data(),
                                r.offsets.data(), groups * tpg, experts, k);
    break;
  }
  return r;
}

const char *routingName(Routing routing) {
  const char *names[] = {"experts-choose", "tokens-choose", "sigmoid top-k"};
  return names[static_cast<int>(routing)];
}

TEST(RouterGateBackwardTest, MatchesReferenceAndFiniteDifferences) {
  const int64_t groups = 2, tpg = 6, experts = 4, numTokens = groups * tpg;
  for (Routing routing :
       {Routing::ExpertsChoose, Routing::TokensChoose, Routing::SigmoidTopK}) {
    bool sigmoid = routing == Routing::SigmoidTopK;
    auto scores = sigmoid ? randomFloats(numTokens * experts, 89, -3.0f, 3.0f)
                          : randomFloats(numTokens * experts, 90, 0.0f, 1.0f);
    Routed table = routeReference(routing, scores, groups, tpg, experts);
    auto dgates = randomFloats(table.gates.size(), 91);
    std::vector<float> dscores(scores.size(), NAN), expected(scores.size());
    routerGateBackward(routing, sigmoid ? scores.data() : nullptr,
                       table.tokens.data(), table.offsets.data(), dgates.data(),
                       dscores.data(), numTokens, experts);
    reference::routerGateBackward(routing, scores.data(), table.tokens.data(),
                                  table.offsets.data(), dgates.data(),
                                  expected.data(), numTokens, experts);
    expectClose(dscores, expected, kRelTol, routingName(routing));

    // The gates of the reference router as a function of the scores, with
    // the assignment table held fixed (checked: steps small enough not to
    // change any choice).
    auto loss = [&] {
      Routed again = routeReference(routing, scores, groups, tpg, experts);
      EXPECT_EQ(again.tokens, table.tokens) << "the step changed the routing";
      return weightedSum(again.gates, dgates);
    };
    // Capacity gates equal the probabilities (exact differences); sigmoid
    // gates are rounded to float, hence the larger step.
    float step = sigmoid ? 1e-2f : 1e-3f;
    expectClose(expected, finiteDifferences(scores, step, loss), 1e-3,
                std::string(routingName(routing)) + " finite differences");
  }
}

TEST(RouterGateBackwardTest, HandComputed) {
  // Two experts, three tokens; expert 0 holds token 2 and an empty slot,
  // expert 1 holds tokens 0 and 2.
  std::vector<int32_t> tokens = {2, -1, 0, 2}, offsets = {0, 2, 4};
  std::vector<float> dgates = {0.5f, 9, -1, 3};
  std::vector<float> dprobs(6, NAN);
  routerGateBackward(Routing::ExpertsChoose, nullptr, tokens.data(),
                     offsets.data(), dgates.data(), dprobs.data(), 3, 2);
  EXPECT_EQ(dprobs, (std::vector<float>{0, -1, 0, 0, 0.5f, 3}));
  // Sigmoid at logit 0 has slope 1/4.
  std::vector<float> logits(6, 0.0f), dlogits(6, NAN);
  routerGateBackward(Routing::SigmoidTopK, logits.data(), tokens.data(),
                     offsets.data(), dgates.data(), dlogits.data(), 3, 2);
  EXPECT_EQ(dlogits, (std::vector<float>{0, -0.25f, 0, 0, 0.125f, 0.75f}));
}

} // namespace
} // namespace mixer::cpu
