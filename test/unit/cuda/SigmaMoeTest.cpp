//===- SigmaMoeTest.cpp - GPU sigma-MoE router kernels against the CPU ----===//

#include "CudaTestUtil.h"
#include "runtime/cpu/ReferenceAuxiliaryLosses.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/cpu/ReferenceMixingMoeGradients.h"
#include "runtime/cuda/ExecutorKernels.h"

#include <cmath>
#include <limits>

namespace mixer::cuda::test {
namespace {

TEST(CudaDropExperts, DropsTheCpuExpertsBitForBit) {
  const CounterKey keys[] = {{0, 0, 1}, {-1, 7, 123456}, {42, 3, 0}};
  for (CounterKey key : keys)
    for (int64_t n : {1, 3, 64, 1001, 70003})
      for (double rate : {0.0, 0.05, 0.5})
        for (float fill : {-std::numeric_limits<float>::infinity(), 0.0f}) {
          auto x = randomFloats(n, 1, -4.0f, 4.0f);
          std::vector<float> expected(n);
          cpu::reference::expertDropout(x.data(), expected.data(), n, key.seed,
                                        key.stream, key.step, rate, fill);
          std::string what = "n=" + std::to_string(n) +
                             " rate=" + std::to_string(rate) +
                             " fill=" + std::to_string(fill);
          DeviceArray<float> dX(x), dY(n, 7.0f);
          ASSERT_OK(
              dropExperts(dX.get(), dY.get(), n, rate, fill, key, nullptr));
          expectBitwiseEqual(dY.read(), expected, what);
          // In place.
          ASSERT_OK(
              dropExperts(dX.get(), dX.get(), n, rate, fill, key, nullptr));
          expectBitwiseEqual(dX.read(), expected, what + " in place");
        }
}

TEST(CudaEntropyRegularizer, MatchesTheReference) {
  struct Case {
    int64_t tokens, experts;
  };
  // One token; more than one block of 256 tokens; wide rows.
  for (Case c :
       {Case{1, 1}, Case{1, 5}, Case{300, 7}, Case{1000, 16}, Case{37, 300}})
    for (bool tied : {false, true}) {
      std::string what = std::to_string(c.tokens) + " x " +
                         std::to_string(c.experts) + (tied ? " tied" : "");
      int64_t n = c.tokens * c.experts;
      std::vector<float> logits =
          tied ? gridFloats(n, 3, 4) : randomFloats(n, 4, -6.0f, 6.0f);
      float expected = cpu::reference::entropyRegularizer(logits.data(),
                                                          c.tokens, c.experts);
      std::vector<float> grad(n);
      cpu::reference::entropyRegularizerGrad(logits.data(), c.tokens, c.experts,
                                             0.25f, grad.data());
      DeviceArray<float> dLogits(logits), loss(1, 7.0f),
          dloss(std::vector<float>{0.25f}), gGrad(n, 7.0f);
      DeviceArray<double> scratch(c.tokens + c.experts);
      ASSERT_OK(entropyRegularizer(dLogits.get(), loss.get(), c.tokens,
                                   c.experts, scratch.get(), nullptr));
      ASSERT_OK(entropyRegularizerGrad(dLogits.get(), dloss.get(), gGrad.get(),
                                       c.tokens, c.experts, scratch.get(),
                                       nullptr));
      // The negative entropy lies in [-log E, 0]: compare against its range.
      double range = std::max(1.0, std::log(double(c.experts)));
      EXPECT_NEAR(loss.read()[0], expected, 1e-5 * range) << what;
      expectClose(gGrad.read(), grad, 1e-4, what + ": gradient");
      // Bitwise repeatable.
      std::vector<float> first = gGrad.read();
      ASSERT_OK(entropyRegularizerGrad(dLogits.get(), dloss.get(), gGrad.get(),
                                       c.tokens, c.experts, scratch.get(),
                                       nullptr));
      EXPECT_EQ(gGrad.read(), first) << what;
    }
}

TEST(CudaSigmoidGateGrad, MatchesTheReference) {
  for (int64_t k : {1, 2, 4}) {
    int64_t numTokens = 77, experts = 6, slots = numTokens * k;
    // Some logits -inf, as after expert dropout.
    std::vector<float> logits =
        randomFloats(numTokens * experts, 5, -5.0f, 5.0f);
    for (size_t i = 3; i < logits.size(); i += 11)
      logits[i] = -std::numeric_limits<float>::infinity();
    std::vector<int32_t> tokens(slots), offsets(experts + 1);
    std::vector<float> gates(slots);
    cpu::reference::routeSigmoidTopK(logits.data(), tokens.data(), gates.data(),
                                     offsets.data(), numTokens, experts, k);
    std::vector<float> dgates = randomFloats(slots, 6);
    std::vector<float> expected(numTokens * experts);
    cpu::reference::routerGateBackward(
        Routing::SigmoidTopK, logits.data(), tokens.data(), offsets.data(),
        dgates.data(), expected.data(), numTokens, experts);
    DeviceArray<int32_t> dTokens(tokens), dOffsets(offsets);
    DeviceArray<float> dLogits(logits), dDgates(dgates),
        dScores(expected.size(), 7.0f);
    ASSERT_OK(scatterGateGrad(dTokens.get(), dOffsets.get(), dDgates.get(),
                              dScores.get(), slots, numTokens, experts, nullptr,
                              dLogits.get()));
    expectClose(dScores.read(), expected, kRelTol,
                "sigmoid gate gradient k=" + std::to_string(k));
  }
}

} // namespace
} // namespace mixer::cuda::test
