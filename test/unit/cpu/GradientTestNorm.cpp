//===- GradientTestNorm.cpp - layerNormBackward and softmaxBackward -------===//

#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/cpu/TransformerGradients.h"
#include "test/unit/cpu/GradientTestUtil.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::expectClose;
using test::randomFloats;

/// The LayerNorm gradient subtracts two row means from each value; in fp32
/// that cancellation costs about one more digit than a plain product.
constexpr double kNormRelTol = 1e-4;

struct NormShape {
  int64_t rows, cols;
};

// Single values, odd widths, widths below, at and above the vector width,
// and more rows than one partial-sum block (32).
const NormShape kShapes[] = {{1, 1},   {3, 7},     {5, 16},  {33, 17},
                             {65, 33}, {100, 300}, {20, 768}};

struct LayerNormCase {
  std::vector<float> x, residual, scale, dy;
};

LayerNormCase makeCase(const NormShape &s, uint32_t seed, float offset) {
  LayerNormCase c{
      randomFloats(s.rows * s.cols, seed, offset - 1.0f, offset + 1.0f),
      randomFloats(s.rows * s.cols, seed + 1),
      randomFloats(s.cols, seed + 2, 0.5f, 1.5f),
      randomFloats(s.rows * s.cols, seed + 3)};
  return c;
}

TEST(LayerNormBackwardTest, MatchesReference) {
  for (const NormShape &s : kShapes)
    for (bool withResidual : {false, true})
      for (bool accumulate : {false, true})
        // A mean far from zero relative to the spread must not cost
        // accuracy.
        for (float offset : {0.0f, 50.0f}) {
          LayerNormCase c = makeCase(s, 1, offset);
          const float *residual = withResidual ? c.residual.data() : nullptr;
          auto start = randomFloats(2 * s.cols, 9);
          std::vector<float> dx(s.rows * s.cols),
              dscale(start.begin(), start.begin() + s.cols),
              dbias(start.begin() + s.cols, start.end());
          std::vector<float> dxRef(dx.size()), dscaleRef = dscale,
                                               dbiasRef = dbias;
          layerNormBackward(c.x.data(), residual, c.scale.data(), c.dy.data(),
                            dx.data(), dscale.data(), dbias.data(), s.rows,
                            s.cols, 1e-6f, accumulate);
          reference::layerNormBackward(c.x.data(), residual, c.scale.data(),
                                       c.dy.data(), dxRef.data(),
                                       dscaleRef.data(), dbiasRef.data(),
                                       s.rows, s.cols, 1e-6f, accumulate);
          std::string what =
              "layerNormBackward rows=" + std::to_string(s.rows) +
              " cols=" + std::to_string(s.cols) +
              " residual=" + std::to_string(withResidual) +
              " accumulate=" + std::to_string(accumulate) +
              " offset=" + std::to_string(offset);
          expectClose(dx, dxRef, kNormRelTol, what + " dx");
          expectClose(dscale, dscaleRef, kNormRelTol, what + " dscale");
          expectClose(dbias, dbiasRef, test::kRelTol, what + " dbias");
        }
}

TEST(LayerNormBackwardTest, ConstantRowAndHandComputedValues) {
  // A constant row has xhat = 0: dx = rstd * (g - mean(g)) with
  // rstd = 1/sqrt(eps), dscale gets nothing and dbias gets dy.
  std::vector<float> x = {3, 3, 3, 3}, scale = {1, 2, 1, 2};
  std::vector<float> dy = {1, 0, 0, 0};
  std::vector<float> dx(4), dscale(4), dbias(4);
  layerNormBackward(x.data(), nullptr, scale.data(), dy.data(), dx.data(),
                    dscale.data(), dbias.data(), 1, 4, 0.25f, false);
  // g = [1,0,0,0], mean 0.25, rstd = 2.
  EXPECT_EQ(dx, (std::vector<float>{1.5f, -0.5f, -0.5f, -0.5f}));
  EXPECT_EQ(dscale, (std::vector<float>{0, 0, 0, 0}));
  EXPECT_EQ(dbias, (std::vector<float>{1, 0, 0, 0}));
  // Row [-1, 1], eps 0: xhat = [-1, 1], rstd = 1. With dy = [1, 0] and
  // scale 1: g - mean(g) = [0.5, -0.5], mean(g xhat) = -0.5, so
  // dx = [0.5 - 0.5, -0.5 + 0.5] = 0 (shifting and scaling the row leaves
  // xhat unchanged); dscale = dy * xhat.
  std::vector<float> x2 = {-1, 1}, ones = {1, 1}, dy2 = {1, 0};
  std::vector<float> dx2(2), dscale2(2), dbias2(2);
  layerNormBackward(x2.data(), nullptr, ones.data(), dy2.data(), dx2.data(),
                    dscale2.data(), dbias2.data(), 1, 2, 0.0f, false);
  EXPECT_EQ(dx2, (std::vector<float>{0, 0}));
  EXPECT_EQ(dscale2, (std::vector<float>{-1, 0}));
  EXPECT_EQ(dbias2, (std::vector<float>{1, 0}));
}

TEST(LayerNormBackwardTest, InPlaceAndWithoutParameterGradients) {
  const NormShape s{40, 50};
  LayerNormCase c = makeCase(s, 21, 0.0f);
  std::vector<float> expected(c.dy.size()), dscale(s.cols), dbias(s.cols);
  layerNormBackward(c.x.data(), c.residual.data(), c.scale.data(), c.dy.data(),
                    expected.data(), dscale.data(), dbias.data(), s.rows,
                    s.cols, 1e-12f, false);
  std::vector<float> dy = c.dy;
  layerNormBackward(c.x.data(), c.residual.data(), c.scale.data(), dy.data(),
                    dy.data(), nullptr, nullptr, s.rows, s.cols, 1e-12f, false);
  test::expectBitwiseEqual(dy, expected, "layerNormBackward in place");
}

TEST(LayerNormBackwardTest, ReferenceMatchesFiniteDifferences) {
  const NormShape s{3, 6};
  LayerNormCase c = makeCase(s, 31, 0.5f);
  auto bias = randomFloats(s.cols, 35);
  std::vector<float> dx(s.rows * s.cols), dscale(s.cols), dbias(s.cols),
      y(s.rows * s.cols);
  const float eps = 1e-3f;
  reference::layerNormBackward(c.x.data(), c.residual.data(), c.scale.data(),
                               c.dy.data(), dx.data(), dscale.data(),
                               dbias.data(), s.rows, s.cols, eps, false);
  auto objective = [&] {
    reference::layerNorm(c.x.data(), c.residual.data(), c.scale.data(),
                         bias.data(), y.data(), s.rows, s.cols, eps);
    return test::dot(c.dy, y);
  };
  test::expectGradientMatchesDifferences(c.x, dx, objective, "layerNorm dx");
  test::expectGradientMatchesDifferences(c.residual, dx, objective,
                                         "layerNorm dresidual");
  test::expectGradientMatchesDifferences(c.scale, dscale, objective,
                                         "layerNorm dscale");
  test::expectGradientMatchesDifferences(bias, dbias, objective,
                                         "layerNorm dbias");
}

TEST(LayerNormBackwardTest, ThreadCountDoesNotChangeBits) {
  const NormShape s{1000, 100};
  LayerNormCase c = makeCase(s, 41, 0.0f);
  int64_t size = s.rows * s.cols;
  test::expectThreadCountIndependent(
      size + 2 * s.cols,
      [&](float *out) {
        layerNormBackward(c.x.data(), c.residual.data(), c.scale.data(),
                          c.dy.data(), out, out + size, out + size + s.cols,
                          s.rows, s.cols, 1e-12f, false);
      },
      "layerNormBackward");
}

TEST(SoftmaxBackwardTest, MatchesReference) {
  for (const NormShape &s : kShapes) {
    auto x = randomFloats(s.rows * s.cols, 51, -4.0f, 4.0f);
    auto dy = randomFloats(s.rows * s.cols, 52);
    std::vector<float> y(x.size()), dx(x.size()), expected(x.size());
    reference::softmax(x.data(), y.data(), s.rows, s.cols);
    softmaxBackward(y.data(), dy.data(), dx.data(), s.rows, s.cols);
    reference::softmaxBackward(y.data(), dy.data(), expected.data(), s.rows,
                               s.cols);
    expectClose(dx, expected, test::kRelTol,
                "softmaxBackward rows=" + std::to_string(s.rows) +
                    " cols=" + std::to_string(s.cols));
  }
}

TEST(SoftmaxBackwardTest, HandComputedValues) {
  // y = [0.25, 0.75], dy = [1, 0]: sum y dy = 0.25,
  // dx = [0.25 * 0.75, 0.75 * -0.25]; in place on dy.
  std::vector<float> y = {0.25f, 0.75f}, dy = {1.0f, 0.0f};
  softmaxBackward(y.data(), dy.data(), dy.data(), 1, 2);
  EXPECT_EQ(dy, (std::vector<float>{0.1875f, -0.1875f}));
}

TEST(SoftmaxBackwardTest, ReferenceMatchesFiniteDifferences) {
  const NormShape s{3, 7};
  auto x = randomFloats(s.rows * s.cols, 61, -2.0f, 2.0f);
  auto dy = randomFloats(s.rows * s.cols, 62);
  std::vector<float> y(x.size()), dx(x.size());
  reference::softmax(x.data(), y.data(), s.rows, s.cols);
  reference::softmaxBackward(y.data(), dy.data(), dx.data(), s.rows, s.cols);
  test::expectGradientMatchesDifferences(
      x, dx,
      [&] {
        reference::softmax(x.data(), y.data(), s.rows, s.cols);
        return test::dot(dy, y);
      },
      "softmax");
}

TEST(SoftmaxBackwardTest, ThreadCountDoesNotChangeBits) {
  const NormShape s{500, 129};
  auto y = randomFloats(s.rows * s.cols, 71, 0.0f, 1.0f);
  auto dy = randomFloats(s.rows * s.cols, 72);
  test::expectThreadCountIndependent(
      s.rows * s.cols,
      [&](float *dx) {
        softmaxBackward(y.data(), dy.data(), dx, s.rows, s.cols);
      },
      "softmaxBackward");
}

} // namespace
} // namespace mixer::cpu
