//===- GroupedExpertsTest.cpp - GPU grouped experts against the references ===//

#include "CudaTestUtil.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/cpu/ReferenceMixingMoeGradients.h"

#include <cmath>

namespace mixer::cuda::test {
namespace {

/// The reference's activation for a kernel activation.
Activation cpuActivation(ExpertActivation act) {
  switch (act) {
  case ExpertActivation::Relu:
    return Activation::Relu;
  case ExpertActivation::Gelu:
    return Activation::Gelu;
  default:
    return Activation::None;
  }
}

/// A routing table: sigma-MoE's top-k of random logits (data-dependent
/// counts), or a capacity-style table with empty slots.
struct Layout {
  int64_t numTokens, experts, slots;
  std::vector<int32_t> tokens, offsets;
};

Layout topKLayout(int64_t numTokens, int64_t experts, int64_t k,
                  uint32_t seed) {
  std::vector<float> logits = randomFloats(numTokens * experts, seed, -3, 3);
  // Expert 1 never wins (it has no slots) when there are enough others.
  if (experts > k + 1)
    for (int64_t t = 0; t < numTokens; ++t)
      logits[t * experts + 1] = -10.0f;
  Layout l{numTokens, experts, numTokens * k,
           std::vector<int32_t>(numTokens * k),
           std::vector<int32_t>(experts + 1)};
  std::vector<float> gates(l.slots);
  cpu::reference::routeSigmoidTopK(logits.data(), l.tokens.data(), gates.data(),
                                   l.offsets.data(), numTokens, experts, k);
  return l;
}

/// Uneven runs (0, 5, 70 and 3 slots) with some empty slots (token -1).
Layout sparseLayout() {
  Layout l{50, 4, 78, {}, {0, 0, 5, 75, 78}};
  for (int64_t i = 0; i < l.slots; ++i)
    l.tokens.push_back(i % 7 == 3 ? -1 : static_cast<int32_t>(i * 13 % 50));
  return l;
}

struct Weights {
  std::vector<float> w1, b1, w2, b2;
};

Weights randomWeights(const Layout &l, int64_t d, int64_t f, uint32_t seed) {
  return {randomFloats(l.experts * d * f, seed, -0.5f, 0.5f),
          randomFloats(l.experts * f, seed + 1, -0.5f, 0.5f),
          randomFloats(l.experts * f * d, seed + 2, -0.5f, 0.5f),
          randomFloats(l.experts * d, seed + 3, -0.5f, 0.5f)};
}

/// The references on the dispatched rows: yd, then dxd, dw1, db1, dw2, db2.
struct References {
  std::vector<float> yd, dxd, dw1, db1, dw2, db2;
};

References reference(const Layout &l, const std::vector<float> &xd,
                     const Weights &w, bool biases,
                     const std::vector<float> &dyd, int64_t d, int64_t f,
                     ExpertActivation act) {
  References r{
      std::vector<float>(l.slots * d),       std::vector<float>(l.slots * d),
      std::vector<float>(l.experts * d * f), std::vector<float>(l.experts * f),
      std::vector<float>(l.experts * f * d), std::vector<float>(l.experts * d)};
  std::vector<float> preact(l.slots * f);
  const float *b1 = biases ? w.b1.data() : nullptr;
  const float *b2 = biases ? w.b2.data() : nullptr;
  cpu::reference::expertsForwardTraining(
      xd.data(), l.tokens.data(), l.offsets.data(), w.w1.data(), b1,
      w.w2.data(), b2, r.yd.data(), preact.data(), l.experts, l.slots, d, f,
      cpuActivation(act));
  cpu::reference::expertsBackward(
      xd.data(), l.tokens.data(), l.offsets.data(), w.w1.data(), w.w2.data(),
      preact.data(), dyd.data(), r.dxd.data(), r.dw1.data(), r.db1.data(),
      r.dw2.data(), r.db2.data(), l.experts, l.slots, d, f, cpuActivation(act),
      /*accumulate=*/false);
  return r;
}

/// Runs the grouped experts and their gradient in T on x (the dispatched
/// rows, or the token rows when `gather`) and compares with `expected`.
template <typename T>
void expectGrouped(const Layout &l, const std::vector<float> &x,
                   const Weights &w, bool biases, const std::vector<float> &dyd,
                   int64_t d, int64_t f, ExpertActivation act, bool gather,
                   const References &expected, double tol,
                   const std::string &what) {
  auto toT = [](const std::vector<float> &v) {
    if constexpr (std::is_same_v<T, Bf16>)
      return toBf16(v);
    else
      return v;
  };
  auto fromT = [](const std::vector<T> &v) {
    if constexpr (std::is_same_v<T, Bf16>)
      return fromBf16(v);
    else
      return v;
  };
  DeviceArray<int32_t> tokens(l.tokens), offsets(l.offsets);
  DeviceArray<T> dX(toT(x)), dDyd(toT(dyd)), yd(l.slots * d), dxd(l.slots * d);
  DeviceArray<float> w1(w.w1), b1(w.b1), w2(w.w2), b2(w.b2),
      dw1(expected.dw1.size(), 7.0f), db1(expected.db1.size(), 7.0f),
      dw2(expected.dw2.size(), 7.0f), db2(expected.db2.size(), 7.0f),
      scratch(std::max<int64_t>(1, 2 * l.slots * f));
  GroupedExperts g;
  g.tokens = tokens.get(), g.offsets = offsets.get();
  g.slots = l.slots, g.experts = l.experts, g.d = d, g.f = f;
  g.activation = act, g.gather = gather, g.numTokens = l.numTokens;
  ASSERT_OK(groupedExperts(dX.get(), w1.get(), biases ? b1.get() : nullptr,
                           w2.get(), biases ? b2.get() : nullptr, yd.get(),
                           scratch.get(), g, nullptr));
  expectClose(fromT(yd.read()), expected.yd, tol, what + ": yd");
  ASSERT_OK(groupedExpertsBackward(
      dX.get(), w1.get(), biases ? b1.get() : nullptr, w2.get(), dDyd.get(),
      dxd.get(), dw1.get(), db1.get(), dw2.get(), db2.get(), scratch.get(), g,
      nullptr));
  expectClose(fromT(dxd.read()), expected.dxd, tol, what + ": dxd");
  expectClose(dw1.read(), expected.dw1, tol, what + ": dw1");
  expectClose(db1.read(), expected.db1, tol, what + ": db1");
  expectClose(dw2.read(), expected.dw2, tol, what + ": dw2");
  expectClose(db2.read(), expected.db2, tol, what + ": db2");
  // Bitwise repeatable.
  std::vector<float> first = dw1.read();
  ASSERT_OK(groupedExpertsBackward(
      dX.get(), w1.get(), biases ? b1.get() : nullptr, w2.get(), dDyd.get(),
      dxd.get(), dw1.get(), db1.get(), dw2.get(), db2.get(), scratch.get(), g,
      nullptr));
  EXPECT_EQ(dw1.read(), first) << what;
}

TEST(CudaGroupedExperts, MatchesTheReferences) {
  struct Case {
    const char *name;
    Layout layout;
    int64_t d, f;
  };
  Case cases[] = {
      // sigma_moe_tiny's widths; a single token.
      {"top-2 tiny", topKLayout(72, 4, 2, 1), 20, 8},
      {"top-1 one token", topKLayout(1, 3, 1, 2), 5, 3},
      // Several row tiles per expert, widths off the tile sizes.
      {"top-4 wide", topKLayout(300, 8, 4, 3), 70, 130},
      {"empty slots", sparseLayout(), 33, 17},
  };
  for (const Case &c : cases)
    for (ExpertActivation act : {ExpertActivation::Relu, ExpertActivation::Gelu,
                                 ExpertActivation::None})
      for (bool biases : {true, false}) {
        const Layout &l = c.layout;
        std::string what = std::string(c.name) + " act " +
                           std::to_string(int(act)) +
                           (biases ? " with biases" : "");
        Weights w = randomWeights(l, c.d, c.f, 10);
        std::vector<float> x = randomFloats(l.numTokens * c.d, 4);
        std::vector<float> dyd = randomFloats(l.slots * c.d, 5);
        std::vector<float> xd(l.slots * c.d);
        cpu::reference::dispatch(x.data(), l.tokens.data(), xd.data(), l.slots,
                                 l.numTokens, c.d);
        References expected = reference(l, xd, w, biases, dyd, c.d, c.f, act);
        expectGrouped<float>(l, xd, w, biases, dyd, c.d, c.f, act, false,
                             expected, 1e-5, what);
        // The dispatch fused into the loads: the same results from x.
        expectGrouped<float>(l, x, w, biases, dyd, c.d, c.f, act, true,
                             expected, 1e-5, what + " gathered");
        // bf16 activations: the references on the rounded inputs.
        std::vector<float> xb = roundedToBf16(xd), dydb = roundedToBf16(dyd);
        References rounded = reference(l, xb, w, biases, dydb, c.d, c.f, act);
        expectGrouped<Bf16>(l, xb, w, biases, dydb, c.d, c.f, act, false,
                            rounded, kBf16Tol, what + " bf16");
        // Gathering bf16 token rows: the rounded token rows dispatch to xb.
        expectGrouped<Bf16>(l, roundedToBf16(x), w, biases, dydb, c.d, c.f, act,
                            true, rounded, kBf16Tol, what + " bf16 gathered");
      }
}

} // namespace
} // namespace mixer::cuda::test
