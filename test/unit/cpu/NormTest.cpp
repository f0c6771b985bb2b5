//===- NormTest.cpp - layerNorm, softmax and pointwise kernels ------------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::expectClose;
using test::kRelTol;
using test::randomFloats;

struct RowShape {
  int64_t rows, cols;
};

const RowShape kRowShapes[] = {{1, 1},  {3, 7},    {13, 3},   {4, 16},
                               {7, 17}, {12, 100}, {100, 24}, {70, 768}};

std::string shapeName(const char *kernel, const RowShape &s) {
  return std::string(kernel) + " " + std::to_string(s.rows) + "x" +
         std::to_string(s.cols);
}

TEST(LayerNormTest, MatchesReferenceWithAndWithoutResidual) {
  for (const RowShape &s : kRowShapes)
    for (bool withResidual : {false, true}) {
      int64_t n = s.rows * s.cols;
      auto x = randomFloats(n, 1, -2.0f, 3.0f);
      auto residual = randomFloats(n, 2);
      auto scale = randomFloats(s.cols, 3, 0.5f, 1.5f);
      auto bias = randomFloats(s.cols, 4);
      const float *r = withResidual ? residual.data() : nullptr;
      std::vector<float> y(n), expected(n);
      layerNorm(x.data(), r, scale.data(), bias.data(), y.data(), s.rows,
                s.cols, 1e-12f);
      reference::layerNorm(x.data(), r, scale.data(), bias.data(),
                           expected.data(), s.rows, s.cols, 1e-12f);
      expectClose(
          y, expected, kRelTol,
          shapeName(withResidual ? "layerNorm+residual" : "layerNorm", s));
    }
}

TEST(LayerNormTest, OutputMayAliasEitherInput) {
  const int64_t rows = 9, cols = 37;
  auto x = randomFloats(rows * cols, 5);
  auto residual = randomFloats(rows * cols, 6);
  auto scale = randomFloats(cols, 7);
  auto bias = randomFloats(cols, 8);
  std::vector<float> expected(rows * cols);
  reference::layerNorm(x.data(), residual.data(), scale.data(), bias.data(),
                       expected.data(), rows, cols, 1e-6f);
  auto intoX = x;
  layerNorm(intoX.data(), residual.data(), scale.data(), bias.data(),
            intoX.data(), rows, cols, 1e-6f);
  expectClose(intoX, expected, kRelTol, "layerNorm y == x");
  auto intoResidual = residual;
  layerNorm(x.data(), intoResidual.data(), scale.data(), bias.data(),
            intoResidual.data(), rows, cols, 1e-6f);
  expectClose(intoResidual, expected, kRelTol, "layerNorm y == residual");
}

TEST(LayerNormTest, LargeMeanAndConstantRows) {
  // Mean 1000 with spread 0.01: the variance must not cancel away.
  const int64_t cols = 64;
  auto x = randomFloats(2 * cols, 9, 999.99f, 1000.01f);
  for (int64_t c = 0; c < cols; ++c)
    x[cols + c] = 5.0f; // constant row: variance 0, output = bias
  std::vector<float> scale(cols, 1.0f), bias(cols, 0.25f);
  std::vector<float> y(2 * cols), expected(2 * cols);
  layerNorm(x.data(), nullptr, scale.data(), bias.data(), y.data(), 2, cols,
            1e-12f);
  reference::layerNorm(x.data(), nullptr, scale.data(), bias.data(),
                       expected.data(), 2, cols, 1e-12f);
  expectClose(y, expected, 1e-4, "layerNorm large mean");
  for (int64_t c = 0; c < cols; ++c)
    EXPECT_EQ(y[cols + c], 0.25f);
}

TEST(SoftmaxTest, MatchesReference) {
  for (const RowShape &s : kRowShapes) {
    auto x = randomFloats(s.rows * s.cols, 10, -30.0f, 30.0f);
    std::vector<float> y(x.size()), expected(x.size());
    softmax(x.data(), y.data(), s.rows, s.cols);
    reference::softmax(x.data(), expected.data(), s.rows, s.cols);
    expectClose(y, expected, kRelTol, shapeName("softmax", s));
  }
}

TEST(SoftmaxTest, HandValuesAndMaskedEntries) {
  const float lowest = std::numeric_limits<float>::lowest();
  // Row 0: softmax([0, ln 3]) = [1/4, 3/4]; row 1: a masked entry gets 0;
  // row 2: all masked -> uniform.
  std::vector<float> x = {0.0f, std::log(3.0f), lowest, 1.0f, lowest, lowest};
  std::vector<float> y(6);
  softmax(x.data(), y.data(), 3, 2);
  EXPECT_NEAR(y[0], 0.25f, 1e-7);
  EXPECT_NEAR(y[1], 0.75f, 1e-7);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_EQ(y[3], 1.0f);
  EXPECT_EQ(y[4], 0.5f);
  EXPECT_EQ(y[5], 0.5f);
}

TEST(ActivationTest, GeluGoldens) {
  // Spec 14.3: GELU(tanh) at [-1, 0, 1, 2].
  std::vector<float> x = {-1.0f, 0.0f, 1.0f, 2.0f};
  std::vector<float> y(4);
  activation(x.data(), y.data(), 4, Activation::Gelu);
  const float expected[] = {-0.158808f, 0.0f, 0.841192f, 1.954598f};
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(y[i], expected[i], 1e-6) << "GELU(" << x[i] << ")";
}

TEST(ActivationTest, GeluErfGoldens) {
  // x * Phi(x) with Phi(-1) = 0.15865525393145707, Phi(1) =
  // 0.8413447460685429, Phi(2) = 0.9772498680518208 (normal tables).
  std::vector<float> x = {-1.0f, 0.0f, 1.0f, 2.0f};
  std::vector<float> y(4), reference(4);
  activation(x.data(), y.data(), 4, Activation::GeluErf);
  reference::activation(x.data(), reference.data(), 4, Activation::GeluErf);
  const double expected[] = {-0.15865525393145707, 0.0, 0.8413447460685429,
                             1.9544997361036416};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(y[i], expected[i], 2e-7) << "GELU_erf(" << x[i] << ")";
    EXPECT_NEAR(reference[i], expected[i], 1e-7) << "GELU_erf(" << x[i] << ")";
  }
}

TEST(ActivationTest, MatchesReferenceForEveryKind) {
  // A dense sweep of [-12, 12] plus odd lengths for the vector tails.
  std::vector<float> x;
  for (int i = -12000; i <= 12000; ++i)
    x.push_back(i * 1e-3f);
  for (float v : {1e-30f, -1e-30f, 1e-8f, 0.6249f, 0.6251f, -0.625f, 40.0f,
                  -40.0f, 100.0f, -100.0f})
    x.push_back(v);
  for (Activation act : {Activation::None, Activation::Gelu, Activation::Tanh,
                         Activation::Relu, Activation::GeluErf})
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(x.size())}) {
      std::vector<float> y(n), expected(n);
      activation(x.data(), y.data(), n, act);
      reference::activation(x.data(), expected.data(), n, act);
      // Pointwise: relative error against each value on its own, with an
      // absolute floor of 1e-7 for results near zero.
      for (int64_t i = 0; i < n; ++i)
        EXPECT_LE(std::fabs(y[i] - expected[i]),
                  2e-6 * std::fabs(expected[i]) + 1e-7)
            << "activation " << static_cast<int>(act) << " at " << x[i];
    }
}

TEST(ActivationTest, TanhIsAccurateNearZero) {
  // Relative accuracy for tiny inputs (where 1 - exp(-2x) would cancel).
  std::vector<float> x = {1e-3f, -2e-4f, 3e-6f, 0.1f, -0.3f};
  std::vector<float> y(x.size());
  activation(x.data(), y.data(), x.size(), Activation::Tanh);
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_NEAR(y[i] / std::tanh(static_cast<double>(x[i])), 1.0, 1e-6);
}

TEST(ActivationTest, InPlace) {
  auto x = randomFloats(1000, 11, -4.0f, 4.0f);
  std::vector<float> expected(x.size());
  reference::activation(x.data(), expected.data(), x.size(), Activation::Gelu);
  activation(x.data(), x.data(), x.size(), Activation::Gelu);
  expectClose(x, expected, kRelTol, "in-place GELU");
}

TEST(PoolTest, HandComputedRows) {
  // Two examples of three positions, d = 2; pad id 0.
  std::vector<float> x = {3, 4, 1, 1, 5, 5, /**/ 0, 2, 6, 8, 9, 9};
  std::vector<int32_t> ids = {7, 8, 0, /**/ 5, 6, 0};
  std::vector<float> y(4);
  pool(x.data(), ids.data(), y.data(), 2, 3, 2, PoolMode::Cls, false, 0);
  EXPECT_EQ(y, (std::vector<float>{3, 4, 0, 2}));
  pool(x.data(), ids.data(), y.data(), 2, 3, 2, PoolMode::Mean, false, 0);
  EXPECT_EQ(y, (std::vector<float>{2, 2.5f, 3, 5}));
  pool(x.data(), ids.data(), y.data(), 2, 3, 2, PoolMode::Cls, true, 0);
  EXPECT_EQ(y, (std::vector<float>{0.6f, 0.8f, 0, 1}));
  // Every token padding: zeros, normalised or not.
  std::vector<int32_t> pads = {0, 0, 0, 0, 0, 0};
  pool(x.data(), pads.data(), y.data(), 2, 3, 2, PoolMode::Mean, true, 0);
  EXPECT_EQ(y, (std::vector<float>{0, 0, 0, 0}));
}

TEST(PoolTest, MatchesReference) {
  const int64_t batch = 3, seq = 11, d = 37;
  auto x = randomFloats(batch * seq * d, 14);
  std::vector<int32_t> ids(batch * seq);
  for (int64_t i = 0; i < batch * seq; ++i)
    ids[i] = i % seq < 2 + 3 * (i / seq) ? 5 + int32_t(i % 4) : 3;
  for (PoolMode mode : {PoolMode::Cls, PoolMode::Mean})
    for (bool normalize : {false, true}) {
      std::vector<float> y(batch * d), expected(batch * d);
      pool(x.data(), ids.data(), y.data(), batch, seq, d, mode, normalize, 3);
      reference::pool(x.data(), ids.data(), expected.data(), batch, seq, d,
                      mode, normalize, 3);
      expectClose(y, expected, kRelTol,
                  "pool mode " + std::to_string(int(mode)) +
                      (normalize ? " normalized" : ""));
    }
}

TEST(AddTest, MatchesReference) {
  for (int64_t n : {1, 3, 17, 100000}) {
    auto a = randomFloats(n, 12);
    auto b = randomFloats(n, 13);
    std::vector<float> y(n), expected(n);
    add(a.data(), b.data(), y.data(), n);
    reference::add(a.data(), b.data(), expected.data(), n);
    test::expectBitwiseEqual(y, expected, "add n=" + std::to_string(n));
  }
}

float fromBits(uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

TEST(RoundToBf16Test, HandPickedValues) {
  struct Case {
    float in, out;
  };
  const Case cases[] = {
      {1.0f, 1.0f},
      // bf16 spacing at 1 is 2^-7: 1 + 2^-8 is a tie -> even (1.0).
      {1.0f + 0x1p-8f, 1.0f},
      // 1 + 3*2^-8 ties between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
      {1.0f + 0x3p-8f, 1.0f + 0x1p-6f},
      // Just above the tie rounds up.
      {1.0f + 0x1p-8f + 0x1p-20f, 1.0f + 0x1p-7f},
      {-(1.0f + 0x1p-8f), -1.0f},
      // 0.1f = 0x3dcccccd: low half 0xcccd > 0x8000 rounds up to 0x3dcd.
      {0.1f, fromBits(0x3dcd0000u)},
      // pi = 0x40490fdb: low half 0x0fdb rounds down to 3.140625.
      {3.14159265f, 3.140625f},
      // On the bf16 grid already (router probabilities of the reference).
      {0.2578125f, 0.2578125f},
      {0.50390625f, 0.50390625f},
      // Largest float overflows to infinity; infinities stay.
      {std::numeric_limits<float>::max(), INFINITY},
      {-INFINITY, -INFINITY},
      // Denormal 0x000116c2 rounds down to 0x00010000; -0 stays -0.
      {fromBits(0x000116c2u), fromBits(0x00010000u)},
      {-0.0f, -0.0f},
  };
  for (const Case &c : cases) {
    float y, expected;
    roundToBf16(&c.in, &y, 1);
    reference::roundToBf16(&c.in, &expected, 1);
    uint32_t got, want, ref;
    std::memcpy(&got, &y, 4);
    std::memcpy(&want, &c.out, 4);
    std::memcpy(&ref, &expected, 4);
    EXPECT_EQ(got, want) << "roundToBf16(" << c.in << ")";
    EXPECT_EQ(ref, want) << "reference::roundToBf16(" << c.in << ")";
  }
  float nan = std::numeric_limits<float>::quiet_NaN(), y;
  roundToBf16(&nan, &y, 1);
  EXPECT_TRUE(std::isnan(y));
  // A NaN whose payload lies only in the low half must stay NaN.
  float lowPayloadNan = fromBits(0x7f800001u);
  roundToBf16(&lowPayloadNan, &y, 1);
  EXPECT_TRUE(std::isnan(y));
}

TEST(RoundToBf16Test, MatchesReferenceOnRandomBits) {
  std::mt19937 rng(14);
  std::vector<float> x(100003);
  for (float &v : x) {
    uint32_t bits = rng();
    if ((bits & 0x7f800000u) == 0x7f800000u)
      bits &= 0xbfffffffu; // keep away from NaN/inf
    v = fromBits(bits);
  }
  std::vector<float> y(x.size()), expected(x.size());
  roundToBf16(x.data(), y.data(), x.size());
  reference::roundToBf16(x.data(), expected.data(), x.size());
  test::expectBitwiseEqual(y, expected, "roundToBf16 random bits");
}

TEST(TakePositionTest, CopiesOnePosition) {
  const int64_t batch = 3, seq = 5, d = 7;
  auto x = randomFloats(batch * seq * d, 15);
  for (int64_t index : {0, 4}) {
    std::vector<float> y(batch * d), expected(batch * d);
    takePosition(x.data(), y.data(), batch, seq, d, index);
    reference::takePosition(x.data(), expected.data(), batch, seq, d, index);
    test::expectBitwiseEqual(y, expected, "takePosition");
    EXPECT_EQ(y[d], x[(seq + index) * d]);
  }
}

} // namespace
} // namespace mixer::cpu
