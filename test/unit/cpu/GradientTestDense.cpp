//===- GradientTestDense.cpp - denseBackward and activation gradients -----===//

#include "runtime/cpu/ReferenceGradients.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/cpu/TransformerGradients.h"
#include "test/unit/cpu/GradientTestUtil.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::expectClose;
using test::kRelTol;
using test::randomFloats;

struct DenseShape {
  int64_t m, k, n;
};

std::string describe(const DenseShape &s, bool transposeW, bool accumulate) {
  return "denseBackward m=" + std::to_string(s.m) +
         " k=" + std::to_string(s.k) + " n=" + std::to_string(s.n) +
         " transposeW=" + std::to_string(transposeW) +
         " accumulate=" + std::to_string(accumulate);
}

// Odd sizes, single rows and columns, more rows than one GEMM tile (512) and
// few rows with many columns (column tiles), and more rows and columns than
// one block of the bias gradient's column sums (256 x 1024).
const DenseShape kShapes[] = {{1, 1, 1},     {3, 7, 13},     {13, 3, 7},
                              {7, 13, 1},    {100, 64, 24},  {600, 40, 300},
                              {5, 300, 700}, {1030, 17, 33}, {300, 3, 1100}};

TEST(DenseBackwardTest, MatchesReferenceOnAllShapes) {
  for (const DenseShape &s : kShapes)
    for (bool transposeW : {false, true})
      for (bool accumulate : {false, true}) {
        auto x = randomFloats(s.m * s.k, 1);
        auto w = randomFloats(s.k * s.n, 2);
        auto dy = randomFloats(s.m * s.n, 3);
        // Accumulation starts from existing gradients.
        auto dwStart = randomFloats(s.k * s.n, 4);
        auto dbStart = randomFloats(s.n, 5);
        std::vector<float> dx(s.m * s.k), dw = dwStart, db = dbStart;
        std::vector<float> dxRef(s.m * s.k), dwRef = dwStart, dbRef = dbStart;
        denseBackward(x.data(), w.data(), dy.data(), dx.data(), dw.data(),
                      db.data(), s.m, s.k, s.n, transposeW, accumulate);
        reference::denseBackward(x.data(), w.data(), dy.data(), dxRef.data(),
                                 dwRef.data(), dbRef.data(), s.m, s.k, s.n,
                                 transposeW, accumulate);
        std::string what = describe(s, transposeW, accumulate);
        expectClose(dx, dxRef, kRelTol, what + " dx");
        expectClose(dw, dwRef, kRelTol, what + " dw");
        expectClose(db, dbRef, kRelTol, what + " db");
      }
}

TEST(DenseBackwardTest, HandComputedGradients) {
  // x = [[1,2],[3,4]], W = [[5,6,7],[8,9,10]], dy = [[1,0,-1],[2,1,0]]:
  // dx = dy W^T, dW = x^T dy, db = column sums of dy.
  std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> w = {5, 6, 7, 8, 9, 10};
  std::vector<float> dy = {1, 0, -1, 2, 1, 0};
  std::vector<float> dx(4), dw(6), db(3);
  denseBackward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(),
                2, 2, 3, false, false);
  EXPECT_EQ(dx, (std::vector<float>{-2, -2, 16, 25}));
  EXPECT_EQ(dw, (std::vector<float>{7, 3, -1, 10, 4, -2}));
  EXPECT_EQ(db, (std::vector<float>{3, 1, -1}));
  // The same W stored [n,k]: dW comes back in that layout, and accumulates.
  std::vector<float> wt = {5, 8, 6, 9, 7, 10};
  std::vector<float> dwt(6, 1.0f), dbAcc(3, 1.0f);
  denseBackward(x.data(), wt.data(), dy.data(), dx.data(), dwt.data(),
                dbAcc.data(), 2, 2, 3, true, true);
  EXPECT_EQ(dx, (std::vector<float>{-2, -2, 16, 25}));
  EXPECT_EQ(dwt, (std::vector<float>{8, 11, 4, 5, 0, -1}));
  EXPECT_EQ(dbAcc, (std::vector<float>{4, 2, 0}));
}

TEST(DenseBackwardTest, NullOutputsAndEmptyBatch) {
  // Only dW wanted; and m = 0 gives zero parameter gradients.
  std::vector<float> x = {1, 2}, w = {3, 4}, dy = {5};
  std::vector<float> dw(2);
  denseBackward(x.data(), w.data(), dy.data(), nullptr, dw.data(), nullptr, 1,
                2, 1, false, false);
  EXPECT_EQ(dw, (std::vector<float>{5, 10}));
  std::vector<float> db(1, 7.0f);
  denseBackward(nullptr, w.data(), nullptr, nullptr, dw.data(), db.data(), 0, 2,
                1, false, false);
  EXPECT_EQ(dw, (std::vector<float>{0, 0}));
  EXPECT_EQ(db, (std::vector<float>{0}));
}

TEST(DenseBackwardTest, ReferenceMatchesFiniteDifferences) {
  for (bool transposeW : {false, true}) {
    const int64_t m = 4, k = 5, n = 3;
    auto x = randomFloats(m * k, 11);
    auto w = randomFloats(k * n, 12);
    auto bias = randomFloats(n, 13);
    auto dy = randomFloats(m * n, 14);
    std::vector<float> dx(m * k), dw(k * n), db(n), y(m * n);
    reference::denseBackward(x.data(), w.data(), dy.data(), dx.data(),
                             dw.data(), db.data(), m, k, n, transposeW, false);
    auto objective = [&] {
      reference::dense(x.data(), w.data(), bias.data(), y.data(), m, k, n,
                       transposeW, Activation::None);
      return test::dot(dy, y);
    };
    std::string what = "dense transposeW=" + std::to_string(transposeW);
    test::expectGradientMatchesDifferences(x, dx, objective, what + " dx");
    test::expectGradientMatchesDifferences(w, dw, objective, what + " dw");
    test::expectGradientMatchesDifferences(bias, db, objective, what + " db");
  }
}

TEST(DenseBackwardTest, ThreadCountDoesNotChangeBits) {
  // Many GEMM tiles; then several row and column blocks of the column sums.
  for (const DenseShape &s : {DenseShape{1100, 70, 300}, {600, 5, 2100}}) {
    auto x = randomFloats(s.m * s.k, 21);
    auto w = randomFloats(s.k * s.n, 22);
    auto dy = randomFloats(s.m * s.n, 23);
    for (bool transposeW : {false, true})
      test::expectThreadCountIndependent(
          s.m * s.k + s.k * s.n + s.n,
          [&](float *out) {
            denseBackward(x.data(), w.data(), dy.data(), out, out + s.m * s.k,
                          out + s.m * s.k + s.k * s.n, s.m, s.k, s.n,
                          transposeW, false);
          },
          describe(s, transposeW, false));
  }
}

const Activation kActivations[] = {Activation::None, Activation::Gelu,
                                   Activation::Tanh, Activation::Relu,
                                   Activation::GeluErf};

std::string name(Activation act) {
  const char *names[] = {"none", "gelu", "tanh", "relu", "gelu_erf"};
  return names[static_cast<int>(act)];
}

TEST(ActivationBackwardTest, MatchesReference) {
  // Small and saturating inputs (GELU and tanh tails), odd count, and a
  // count spanning several blocks.
  for (int64_t n : {int64_t(1), int64_t(37), int64_t(40000)})
    for (Activation act : kActivations) {
      auto x = randomFloats(n, 31, -12.0f, 12.0f);
      auto dy = randomFloats(n, 32);
      std::vector<float> dx(n), expected(n);
      activationBackward(x.data(), dy.data(), dx.data(), n, act);
      reference::activationBackward(x.data(), dy.data(), expected.data(), n,
                                    act);
      expectClose(dx, expected, kRelTol,
                  "activationBackward " + name(act) +
                      " n=" + std::to_string(n));
    }
}

TEST(ActivationBackwardTest, HandComputedDerivatives) {
  // GELU'(0) = 0.5, tanh'(0) = 1, ReLU'(0) = 0, ReLU'(2) = 1;
  // tanh'(x) = 1 - tanh(x)^2 and GELU' tends to 1 and 0 in the tails.
  std::vector<float> x = {0.0f, 2.0f, -30.0f, 30.0f};
  std::vector<float> dy = {2.0f, 2.0f, 2.0f, 2.0f};
  std::vector<float> dx(4);
  activationBackward(x.data(), dy.data(), dx.data(), 4, Activation::Gelu);
  EXPECT_FLOAT_EQ(dx[0], 1.0f);
  EXPECT_NEAR(dx[2], 0.0f, 1e-30);
  EXPECT_FLOAT_EQ(dx[3], 2.0f);
  activationBackward(x.data(), dy.data(), dx.data(), 4, Activation::Tanh);
  EXPECT_FLOAT_EQ(dx[0], 2.0f);
  EXPECT_NEAR(dx[1], 2.0 * (1.0 - std::pow(std::tanh(2.0), 2)), 1e-6);
  activationBackward(x.data(), dy.data(), dx.data(), 4, Activation::Relu);
  EXPECT_EQ(dx, (std::vector<float>{0.0f, 2.0f, 0.0f, 2.0f}));
  // Exact GELU: Phi(x) + x phi(x); Phi(2) + 2 phi(2) = 0.9772498680518208 +
  // 2 * 0.05399096651318806.
  activationBackward(x.data(), dy.data(), dx.data(), 4, Activation::GeluErf);
  EXPECT_FLOAT_EQ(dx[0], 1.0f);
  EXPECT_NEAR(dx[1], 2.0 * (0.9772498680518208 + 2.0 * 0.05399096651318806),
              1e-6);
  EXPECT_NEAR(dx[2], 0.0f, 1e-30);
  EXPECT_FLOAT_EQ(dx[3], 2.0f);
}

TEST(ActivationBackwardTest, FromOutputMatchesReference) {
  const int64_t n = 1000;
  auto x = randomFloats(n, 41, -4.0f, 4.0f);
  auto dy = randomFloats(n, 42);
  for (Activation act :
       {Activation::None, Activation::Tanh, Activation::Relu}) {
    std::vector<float> y(n), dx(n), expected(n), fromInput(n);
    reference::activation(x.data(), y.data(), n, act);
    activationBackwardFromOutput(y.data(), dy.data(), dx.data(), n, act);
    reference::activationBackwardFromOutput(y.data(), dy.data(),
                                            expected.data(), n, act);
    expectClose(dx, expected, kRelTol, "from output " + name(act));
    // The same gradient as from the input, up to the rounding of y.
    reference::activationBackward(x.data(), dy.data(), fromInput.data(), n,
                                  act);
    expectClose(dx, fromInput, kRelTol, "from output vs input " + name(act));
  }
  std::vector<float> y(1), dx(1);
  EXPECT_THROW(activationBackwardFromOutput(y.data(), y.data(), dx.data(), 1,
                                            Activation::Gelu),
               KernelError);
  EXPECT_THROW(reference::activationBackwardFromOutput(
                   y.data(), y.data(), dx.data(), 1, Activation::Gelu),
               KernelError);
}

TEST(ActivationBackwardTest, InPlaceOnTheUpstreamGradient) {
  const int64_t n = 100;
  auto x = randomFloats(n, 51, -3.0f, 3.0f);
  auto dy = randomFloats(n, 52);
  std::vector<float> expected(n);
  activationBackward(x.data(), dy.data(), expected.data(), n, Activation::Gelu);
  activationBackward(x.data(), dy.data(), dy.data(), n, Activation::Gelu);
  test::expectBitwiseEqual(dy, expected, "activationBackward in place");
}

TEST(ActivationBackwardTest, ReferenceMatchesFiniteDifferences) {
  const int64_t n = 50;
  for (Activation act : kActivations) {
    auto x = test::floatsAwayFromZero(n, 61, -3.0f, 3.0f, 0.01f);
    auto dy = randomFloats(n, 62);
    std::vector<float> dx(n), y(n);
    reference::activationBackward(x.data(), dy.data(), dx.data(), n, act);
    test::expectGradientMatchesDifferences(
        x, dx,
        [&] {
          reference::activation(x.data(), y.data(), n, act);
          return test::dot(dy, y);
        },
        "activation " + name(act));
  }
}

TEST(ActivationBackwardTest, ThreadCountDoesNotChangeBits) {
  const int64_t n = 100000;
  auto x = randomFloats(n, 71, -5.0f, 5.0f);
  auto dy = randomFloats(n, 72);
  for (Activation act : kActivations)
    test::expectThreadCountIndependent(
        n,
        [&](float *dx) { activationBackward(x.data(), dy.data(), dx, n, act); },
        "activationBackward " + name(act));
}

} // namespace
} // namespace mixer::cpu
