//===- GradientTestLoss.cpp - softmaxCrossEntropy and squaredError --------===//

#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/TransformerGradients.h"
#include "test/unit/cpu/GradientTestUtil.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::expectClose;
using test::kRelTol;
using test::randomFloats;

/// Labels in [0, classes), every fifth one -1 (ignored).
std::vector<int32_t> randomLabels(int64_t rows, int64_t classes,
                                  uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> labels(rows);
  for (int64_t r = 0; r < rows; ++r)
    labels[r] = r % 5 == 4 ? -1 : static_cast<int32_t>(rng() % classes);
  return labels;
}

void expectRelativeNear(double actual, double expected, double rtol,
                        const std::string &what) {
  EXPECT_NEAR(actual, expected, rtol * std::fabs(expected)) << what;
}

TEST(SoftmaxCrossEntropyTest, HandComputedValues) {
  // Row 0: four equal logits, label 1: CE = ln 4, gradient 1/4 - onehot.
  // Row 1: logits [0, ln 3] (softmax [1/4, 3/4]), label 0, weight 2:
  // CE = ln 4, gradient 2 * ([1/4, 3/4] - [1, 0]).
  // Row 2: ignored.
  std::vector<float> logits = {0, 0, 0, 0, 0, std::log(3.0f),
                               0, 0, 7, 8, 9, 10};
  std::vector<int32_t> labels = {1, 0, -1};
  std::vector<float> weights = {1, 2, 5};
  std::vector<float> dlogits(12, 123.0f);
  float loss = softmaxCrossEntropy(logits.data(), labels.data(), weights.data(),
                                   3, 4, dlogits.data(), 0.5f);
  // The second row has four classes too: [0, ln 3, 0, 0] -> softmax
  // [1/6, 1/2, 1/6, 1/6], CE = ln 6.
  expectRelativeNear(loss, std::log(4.0) + 2.0 * std::log(6.0), 1e-6, "loss");
  expectClose(dlogits,
              {0.125f, -0.375f, 0.125f, 0.125f,        // 0.5 * (1/4 - onehot)
               1.0f / 6 - 1, 0.5f, 1.0f / 6, 1.0f / 6, // 0.5*2*(p - onehot)
               0, 0, 0, 0},
              1e-6, "dlogits");
}

TEST(SoftmaxCrossEntropyTest, MatchesReference) {
  // Odd class counts, weights and no weights, large logits that overflow
  // exp without the max subtraction.
  for (int64_t classes : {int64_t(1), int64_t(2), int64_t(17), int64_t(1000)})
    for (float range : {3.0f, 1000.0f})
      for (bool withWeights : {false, true}) {
        const int64_t rows = 37;
        auto logits = randomFloats(rows * classes, 1, -range, range);
        auto labels = randomLabels(rows, classes, 2);
        auto weights = randomFloats(rows, 3, 0.0f, 2.0f);
        const float *w = withWeights ? weights.data() : nullptr;
        std::vector<float> dlogits(logits.size()), expected(logits.size());
        float loss = softmaxCrossEntropy(logits.data(), labels.data(), w, rows,
                                         classes, dlogits.data(), 0.25f);
        float lossRef = reference::softmaxCrossEntropy(
            logits.data(), labels.data(), w, rows, classes, expected.data(),
            0.25f);
        std::string what =
            "softmaxCrossEntropy classes=" + std::to_string(classes) +
            " range=" + std::to_string(range) +
            " weights=" + std::to_string(withWeights);
        EXPECT_TRUE(std::isfinite(loss)) << what;
        EXPECT_NEAR(loss, lossRef, kRelTol * (std::fabs(lossRef) + rows))
            << what;
        expectClose(dlogits, expected, kRelTol, what + " dlogits");
        // Loss only, and the gradient written over the logits.
        EXPECT_EQ(softmaxCrossEntropy(logits.data(), labels.data(), w, rows,
                                      classes, nullptr, 0.25f),
                  loss)
            << what;
        std::vector<float> inPlace = logits;
        softmaxCrossEntropy(inPlace.data(), labels.data(), w, rows, classes,
                            inPlace.data(), 0.25f);
        test::expectBitwiseEqual(inPlace, dlogits, what + " in place");
      }
}

TEST(SoftmaxCrossEntropyTest, RejectsBadLabels) {
  std::vector<float> logits(6);
  for (int32_t bad : {-2, 3}) {
    std::vector<int32_t> labels = {0, bad};
    for (bool optimized : {true, false})
      try {
        (optimized ? softmaxCrossEntropy : reference::softmaxCrossEntropy)(
            logits.data(), labels.data(), nullptr, 2, 3, nullptr, 1.0f);
        ADD_FAILURE() << "no error for label " << bad;
      } catch (const KernelError &error) {
        EXPECT_EQ(error.message,
                  "cross-entropy: labels[1] = " + std::to_string(bad) +
                      " is outside the classes [0, 3) and not -1 (ignored)");
      }
  }
}

TEST(SoftmaxCrossEntropyTest, ReferenceMatchesFiniteDifferences) {
  const int64_t rows = 5, classes = 7;
  auto logits = randomFloats(rows * classes, 11, -3.0f, 3.0f);
  auto labels = randomLabels(rows, classes, 12);
  auto weights = randomFloats(rows, 13, 0.5f, 2.0f);
  std::vector<float> dlogits(logits.size());
  reference::softmaxCrossEntropy(logits.data(), labels.data(), weights.data(),
                                 rows, classes, dlogits.data(), 1.0f);
  test::expectGradientMatchesDifferences(
      logits, dlogits,
      [&] {
        return static_cast<double>(reference::softmaxCrossEntropy(
            logits.data(), labels.data(), weights.data(), rows, classes,
            nullptr, 1.0f));
      },
      "softmaxCrossEntropy");
}

TEST(SoftmaxCrossEntropyTest, ThreadCountDoesNotChangeBits) {
  const int64_t rows = 64, classes = 1000;
  auto logits = randomFloats(rows * classes, 21, -5.0f, 5.0f);
  auto labels = randomLabels(rows, classes, 22);
  auto weights = randomFloats(rows, 23);
  test::expectThreadCountIndependent(
      rows * classes + 1,
      [&](float *out) {
        out[0] =
            softmaxCrossEntropy(logits.data(), labels.data(), weights.data(),
                                rows, classes, out + 1, 1.0f / rows);
      },
      "softmaxCrossEntropy");
}

TEST(SquaredErrorTest, HandComputedValuesAndReference) {
  std::vector<float> pred = {1, 2, 3}, target = {1, 0, 4}, dpred(3);
  EXPECT_EQ(squaredError(pred.data(), target.data(), 3, dpred.data(), 0.5f),
            5.0f);
  EXPECT_EQ(dpred, (std::vector<float>{0, 2, -1}));
  const int64_t rows = 101;
  auto p = randomFloats(rows, 31), t = randomFloats(rows, 32);
  std::vector<float> d(rows), expected(rows);
  float loss = squaredError(p.data(), t.data(), rows, d.data(), 1.0f / 3);
  float lossRef = reference::squaredError(p.data(), t.data(), rows,
                                          expected.data(), 1.0f / 3);
  expectRelativeNear(loss, lossRef, kRelTol, "squaredError loss");
  expectClose(d, expected, kRelTol, "squaredError dpred");
}

TEST(SquaredErrorTest, ReferenceMatchesFiniteDifferences) {
  const int64_t rows = 9;
  auto pred = randomFloats(rows, 41), target = randomFloats(rows, 42);
  std::vector<float> dpred(rows);
  reference::squaredError(pred.data(), target.data(), rows, dpred.data(), 1.0f);
  test::expectGradientMatchesDifferences(
      pred, dpred,
      [&] {
        return static_cast<double>(reference::squaredError(
            pred.data(), target.data(), rows, nullptr, 1.0f));
      },
      "squaredError");
}

} // namespace
} // namespace mixer::cpu
