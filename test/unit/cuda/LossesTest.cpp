//===- LossesTest.cpp - GPU softmax and cross-entropy against the CPU -----===//

#include "CudaTestUtil.h"
#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/ReferenceKernels.h"

#include <cmath>

namespace mixer::cuda::test {
namespace {

TEST(CudaSoftmax, MatchesReference) {
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{1, 1}, {4, 3}, {33, 1000}, {2, 30523}}) {
    int64_t n = rows * cols;
    // Large logits: the maximum must come out before the exponentials.
    auto x = randomFloats(n, 1, -80.0f, 90.0f);
    std::vector<float> expected(n);
    cpu::reference::softmax(x.data(), expected.data(), rows, cols);
    DeviceArray<float> dX(x);
    ASSERT_OK(softmax(dX.get(), dX.get(), rows, cols, nullptr));
    expectClose(dX.read(), expected, kRelTol, "softmax fp32");

    auto xb = roundedToBf16(x);
    cpu::reference::softmax(xb.data(), expected.data(), rows, cols);
    DeviceArray<Bf16> bX(toBf16(xb)), bY(n);
    ASSERT_OK(softmax(bX.get(), bY.get(), rows, cols, nullptr));
    expectClose(fromBf16(bY.read()), expected, kBf16Tol, "softmax bf16");
  }
}

TEST(CudaSoftmaxBackward, MatchesReference) {
  int64_t rows = 17, cols = 301, n = rows * cols;
  std::vector<float> y(n);
  auto x = randomFloats(n, 2, -3.0f, 3.0f);
  cpu::reference::softmax(x.data(), y.data(), rows, cols);
  auto dy = randomFloats(n, 3);
  std::vector<float> expected(n);
  cpu::reference::softmaxBackward(y.data(), dy.data(), expected.data(), rows,
                                  cols);
  DeviceArray<float> dY(y), dDy(dy);
  ASSERT_OK(
      softmaxBackward(dY.get(), dDy.get(), dDy.get(), rows, cols, nullptr));
  expectClose(dDy.read(), expected, kRelTol, "softmax_backward fp32");

  auto yb = roundedToBf16(y), dyb = roundedToBf16(dy);
  cpu::reference::softmaxBackward(yb.data(), dyb.data(), expected.data(), rows,
                                  cols);
  DeviceArray<Bf16> bY(toBf16(yb)), bDy(toBf16(dyb)), bDx(n);
  ASSERT_OK(
      softmaxBackward(bY.get(), bDy.get(), bDx.get(), rows, cols, nullptr));
  expectClose(fromBf16(bDx.read()), expected, kBf16Tol,
              "softmax_backward bf16");
}

TEST(CudaCrossEntropy, MatchesReferenceWithIgnoredRows) {
  int64_t rows = 23, classes = 1001, n = rows * classes;
  auto logits = randomFloats(n, 4, -10.0f, 10.0f);
  std::vector<int32_t> labels(rows);
  for (int64_t r = 0; r < rows; ++r)
    labels[r] = r % 4 == 1 ? -1 : static_cast<int32_t>((r * 37) % classes);
  labels[0] = static_cast<int32_t>(classes - 1);
  auto weights = randomFloats(rows, 5, 0.0f, 2.0f);
  for (bool weighted : {false, true}) {
    const float *w = weighted ? weights.data() : nullptr;
    std::vector<float> expected(n);
    float loss = cpu::reference::softmaxCrossEntropy(
        logits.data(), labels.data(), w, rows, classes, expected.data(), 0.25f);
    DeviceArray<float> dLogits(logits), dWeights(weights), gLoss(1);
    DeviceArray<int32_t> dLabels(labels);
    // The gradient overwrites the logits.
    ASSERT_OK(softmaxCrossEntropy(
        dLogits.get(), dLabels.get(), weighted ? dWeights.get() : nullptr,
        dLogits.get(), gLoss.get(), rows, classes, 0.25f, nullptr));
    expectClose(gLoss.read(), {loss}, kRelTol, "cross-entropy loss");
    expectClose(dLogits.read(), expected, kRelTol, "cross-entropy gradient");

    auto lb = roundedToBf16(logits);
    loss = cpu::reference::softmaxCrossEntropy(
        lb.data(), labels.data(), w, rows, classes, expected.data(), 0.25f);
    DeviceArray<Bf16> bLogits(toBf16(lb)), bGrad(n);
    ASSERT_OK(softmaxCrossEntropy(
        bLogits.get(), dLabels.get(), weighted ? dWeights.get() : nullptr,
        bGrad.get(), gLoss.get(), rows, classes, 0.25f, nullptr));
    expectClose(gLoss.read(), {loss}, kRelTol, "bf16 cross-entropy loss");
    expectClose(fromBf16(bGrad.read()), expected, kBf16Tol,
                "bf16 cross-entropy gradient");
  }
}

TEST(CudaCrossEntropy, AllRowsIgnored) {
  int64_t rows = 5, classes = 7;
  DeviceArray<float> logits(randomFloats(rows * classes, 6)),
      grad(rows * classes, 1.0f), loss(1, 3.0f);
  DeviceArray<int32_t> labels(rows, -1);
  ASSERT_OK(softmaxCrossEntropy(logits.get(), labels.get(), nullptr, grad.get(),
                                loss.get(), rows, classes, 1.0f, nullptr));
  expectBitwiseEqual(loss.read(), {0.0f}, "loss");
  expectBitwiseEqual(grad.read(), std::vector<float>(rows * classes, 0.0f),
                     "gradient");
}

TEST(CudaCrossEntropy, InvalidLabelPoisonsTheLoss) {
  DeviceArray<float> logits(randomFloats(6, 7)), loss(1);
  DeviceArray<int32_t> labels(std::vector<int32_t>{0, 3});
  ASSERT_OK(softmaxCrossEntropy(logits.get(), labels.get(), nullptr, nullptr,
                                loss.get(), 2, 3, 1.0f, nullptr));
  EXPECT_TRUE(std::isnan(loss.read()[0]));
}

} // namespace
} // namespace mixer::cuda::test
