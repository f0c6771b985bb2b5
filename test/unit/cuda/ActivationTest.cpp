//===- ActivationTest.cpp - GPU bias + GELU against the CPU references ----===//

#include "CudaTestUtil.h"
#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/ReferenceKernels.h"

namespace mixer::cuda::test {
namespace {

/// x + bias broadcast over rows, in fp32 as the kernel adds them.
std::vector<float> addBias(const std::vector<float> &x,
                           const std::vector<float> &bias, int64_t cols) {
  std::vector<float> out(x);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] += bias[i % cols];
  return out;
}

TEST(CudaBiasGelu, SpecGoldens) {
  // GELU(tanh) at [-1, 0, 1, 2] (the spec's hand-checkable values).
  DeviceArray<float> x(std::vector<float>{-1.0f, 0.0f, 1.0f, 2.0f}), y(4);
  ASSERT_OK(biasGelu(x.get(), nullptr, y.get(), 1, 4, nullptr));
  std::vector<float> got = y.read();
  const float expected[] = {-0.158808f, 0.0f, 0.841192f, 1.954598f};
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(got[i], expected[i], 1e-6) << "element " << i;
}

TEST(CudaBiasGelu, MatchesReference) {
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{1, 1}, {7, 13}, {64, 3072}}) {
    auto x = randomFloats(rows * cols, 1, -6.0f, 6.0f);
    auto bias = randomFloats(cols, 2);
    std::vector<float> expected(rows * cols);
    auto pre = addBias(x, bias, cols);
    cpu::reference::activation(pre.data(), expected.data(), rows * cols,
                               Activation::Gelu);
    DeviceArray<float> dX(x), dBias(bias);
    // In place.
    ASSERT_OK(biasGelu(dX.get(), dBias.get(), dX.get(), rows, cols, nullptr));
    expectClose(dX.read(), expected, kRelTol, "bias_gelu fp32");

    auto xb = roundedToBf16(x);
    auto preb = addBias(xb, bias, cols);
    cpu::reference::activation(preb.data(), expected.data(), rows * cols,
                               Activation::Gelu);
    DeviceArray<Bf16> bX(toBf16(xb)), bY(rows * cols);
    ASSERT_OK(biasGelu(bX.get(), dBias.get(), bY.get(), rows, cols, nullptr));
    expectClose(fromBf16(bY.read()), expected, kBf16Tol, "bias_gelu bf16");
  }
}

TEST(CudaBiasGeluBackward, MatchesReference) {
  for (auto [rows, cols] :
       {std::pair<int64_t, int64_t>{1, 1}, {9, 31}, {700, 64}})
    for (bool accumulate : {false, true}) {
      int64_t n = rows * cols;
      auto x = randomFloats(n, 3, -6.0f, 6.0f);
      auto bias = randomFloats(cols, 4);
      auto dy = randomFloats(n, 5);
      auto initial = randomFloats(cols, 6);
      auto pre = addBias(x, bias, cols);
      std::vector<float> dx(n);
      cpu::reference::activationBackward(pre.data(), dy.data(), dx.data(), n,
                                         Activation::Gelu);
      std::vector<float> dbias(cols);
      for (int64_t c = 0; c < cols; ++c) {
        double sum = accumulate ? initial[c] : 0.0;
        for (int64_t r = 0; r < rows; ++r)
          sum += dx[r * cols + c];
        dbias[c] = static_cast<float>(sum);
      }
      DeviceArray<float> dX(x), dBias(bias), dDy(dy), gBias(initial);
      // dx overwrites dy.
      ASSERT_OK(biasGeluBackward(dX.get(), dBias.get(), dDy.get(), dDy.get(),
                                 gBias.get(), rows, cols, accumulate, nullptr));
      expectClose(dDy.read(), dx, kRelTol, "bias_gelu_backward dx");
      expectClose(gBias.read(), dbias, kRelTol, "bias_gelu_backward dbias");
    }
}

TEST(CudaBiasGeluBackward, Bf16WithoutBias) {
  int64_t rows = 5, cols = 77, n = rows * cols;
  auto x = roundedToBf16(randomFloats(n, 7, -4.0f, 4.0f));
  auto dy = roundedToBf16(randomFloats(n, 8));
  std::vector<float> dx(n);
  cpu::reference::activationBackward(x.data(), dy.data(), dx.data(), n,
                                     Activation::Gelu);
  DeviceArray<Bf16> dX(toBf16(x)), dDy(toBf16(dy)), gX(n);
  ASSERT_OK(biasGeluBackward(dX.get(), nullptr, dDy.get(), gX.get(), nullptr,
                             rows, cols, false, nullptr));
  expectClose(fromBf16(gX.read()), dx, kBf16Tol, "bf16 bias_gelu_backward");
}

} // namespace
} // namespace mixer::cuda::test
