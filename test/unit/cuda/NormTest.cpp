//===- NormTest.cpp - GPU LayerNorm against the CPU references ------------===//

#include "CudaTestUtil.h"
#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/ReferenceKernels.h"

namespace mixer::cuda::test {
namespace {

struct Shape {
  int64_t rows, cols;
};

const Shape kShapes[] = {{1, 1}, {3, 7}, {37, 768}, {5, 1025}, {300, 33}};

TEST(CudaLayerNorm, MatchesReferenceFp32) {
  for (Shape s : kShapes)
    for (bool withResidual : {false, true}) {
      int64_t n = s.rows * s.cols;
      auto x = randomFloats(n, 1, -2.0f, 3.0f);
      auto residual = randomFloats(n, 2);
      auto scale = randomFloats(s.cols, 3, 0.5f, 1.5f);
      auto bias = randomFloats(s.cols, 4);
      std::vector<float> expected(n);
      cpu::reference::layerNorm(
          x.data(), withResidual ? residual.data() : nullptr, scale.data(),
          bias.data(), expected.data(), s.rows, s.cols, 1e-5f);
      DeviceArray<float> dX(x), dR(residual), dScale(scale), dBias(bias), dY(n);
      ASSERT_OK(layerNorm(dX.get(), withResidual ? dR.get() : nullptr,
                          dScale.get(), dBias.get(), dY.get(), s.rows, s.cols,
                          1e-5f, nullptr));
      expectClose(dY.read(), expected, kRelTol,
                  "layer_norm " + std::to_string(s.rows) + "x" +
                      std::to_string(s.cols));
    }
}

TEST(CudaLayerNorm, FarMeanConstantRowsAndAliasing) {
  // Row 0: a mean of 1000 with a spread of 1e-2; row 1: constant (variance
  // 0, so y = bias). The output overwrites x.
  int64_t cols = 129;
  std::vector<float> x = randomFloats(2 * cols, 5, -0.01f, 0.01f);
  for (int64_t c = 0; c < cols; ++c) {
    x[c] += 1000.0f;
    x[cols + c] = 4.0f;
  }
  std::vector<float> scale(cols, 1.0f), bias = randomFloats(cols, 6);
  std::vector<float> expected(2 * cols);
  cpu::reference::layerNorm(x.data(), nullptr, scale.data(), bias.data(),
                            expected.data(), 2, cols, 1e-12f);
  DeviceArray<float> dX(x), dScale(scale), dBias(bias);
  ASSERT_OK(layerNorm(dX.get(), nullptr, dScale.get(), dBias.get(), dX.get(), 2,
                      cols, 1e-12f, nullptr));
  std::vector<float> y = dX.read();
  // The far-mean row carries the rounding of its inputs (1000 in fp32 has a
  // 6e-5 step against a spread of 1e-2): 1e-3 relative.
  expectClose(std::vector<float>(y.begin(), y.begin() + cols),
              std::vector<float>(expected.begin(), expected.begin() + cols),
              1e-3, "far-mean row");
  expectClose(std::vector<float>(y.begin() + cols, y.end()),
              std::vector<float>(bias.begin(), bias.end()), kRelTol,
              "constant row");
}

TEST(CudaLayerNorm, MatchesReferenceBf16) {
  int64_t rows = 19, cols = 515;
  auto x = roundedToBf16(randomFloats(rows * cols, 7, -3.0f, 3.0f));
  auto residual = roundedToBf16(randomFloats(rows * cols, 8));
  auto scale = randomFloats(cols, 9, 0.5f, 1.5f);
  auto bias = randomFloats(cols, 10);
  std::vector<float> expected(rows * cols);
  cpu::reference::layerNorm(x.data(), residual.data(), scale.data(),
                            bias.data(), expected.data(), rows, cols, 1e-12f);
  DeviceArray<Bf16> dX(toBf16(x)), dR(toBf16(residual)), dY(rows * cols);
  DeviceArray<float> dScale(scale), dBias(bias);
  ASSERT_OK(layerNorm(dX.get(), dR.get(), dScale.get(), dBias.get(), dY.get(),
                      rows, cols, 1e-12f, nullptr));
  expectClose(fromBf16(dY.read()), expected, kBf16Tol, "bf16 layer_norm");
}

TEST(CudaLayerNormBackward, MatchesReferenceFp32) {
  for (Shape s : kShapes)
    for (bool accumulate : {false, true}) {
      int64_t n = s.rows * s.cols;
      auto x = randomFloats(n, 11, -2.0f, 2.0f);
      auto residual = randomFloats(n, 12);
      auto scale = randomFloats(s.cols, 13, 0.5f, 1.5f);
      auto dy = randomFloats(n, 14);
      auto initial = randomFloats(s.cols, 15);
      std::vector<float> dx(n), dscale = initial, dbias = initial;
      cpu::reference::layerNormBackward(
          x.data(), residual.data(), scale.data(), dy.data(), dx.data(),
          dscale.data(), dbias.data(), s.rows, s.cols, 1e-5f, accumulate);
      DeviceArray<float> dX(x), dR(residual), dScale(scale), dDy(dy),
          gScale(initial), gBias(initial);
      // dx overwrites dy.
      ASSERT_OK(layerNormBackward(dX.get(), dR.get(), dScale.get(), dDy.get(),
                                  dDy.get(), gScale.get(), gBias.get(), s.rows,
                                  s.cols, 1e-5f, accumulate, nullptr));
      std::string what = "layer_norm_backward " + std::to_string(s.rows) + "x" +
                         std::to_string(s.cols);
      expectClose(dDy.read(), dx, kRelTol, what + " dx");
      expectClose(gScale.read(), dscale, kRelTol, what + " dscale");
      expectClose(gBias.read(), dbias, kRelTol, what + " dbias");
    }
}

TEST(CudaLayerNormBackward, MatchesReferenceBf16) {
  int64_t rows = 600, cols = 97; // several column-sum row blocks
  auto x = roundedToBf16(randomFloats(rows * cols, 16, -2.0f, 2.0f));
  auto dy = roundedToBf16(randomFloats(rows * cols, 17));
  auto scale = randomFloats(cols, 18, 0.5f, 1.5f);
  std::vector<float> dx(rows * cols), dscale(cols), dbias(cols);
  cpu::reference::layerNormBackward(x.data(), nullptr, scale.data(), dy.data(),
                                    dx.data(), dscale.data(), dbias.data(),
                                    rows, cols, 1e-12f, false);
  DeviceArray<Bf16> dX(toBf16(x)), dDy(toBf16(dy)), gX(rows * cols);
  DeviceArray<float> dScale(scale), gScale(cols), gBias(cols);
  ASSERT_OK(layerNormBackward(dX.get(), nullptr, dScale.get(), dDy.get(),
                              gX.get(), gScale.get(), gBias.get(), rows, cols,
                              1e-12f, false, nullptr));
  expectClose(fromBf16(gX.read()), dx, kBf16Tol, "bf16 dx");
  expectClose(gScale.read(), dscale, kRelTol, "bf16 dscale");
  expectClose(gBias.read(), dbias, kRelTol, "bf16 dbias");
}

TEST(CudaLayerNormBackward, ZeroRowsZeroTheParameterGradients) {
  DeviceArray<float> empty(1), scale(std::vector<float>(4, 1.0f)),
      dscale(std::vector<float>(4, 7.0f));
  ASSERT_OK(layerNormBackward(empty.get(), nullptr, scale.get(), empty.get(),
                              empty.get(), dscale.get(), nullptr, 0, 4, 1e-5f,
                              false, nullptr));
  expectBitwiseEqual(dscale.read(), std::vector<float>(4, 0.0f), "dscale");
}

} // namespace
} // namespace mixer::cuda::test
