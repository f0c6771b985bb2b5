//===- DenseTest.cpp - dense and batchedMatmul ----------------------------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/ReferenceKernels.h"
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

std::string describe(const DenseShape &s, bool transposeW, Activation act,
                     bool bias) {
  return "dense m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) +
         " n=" + std::to_string(s.n) +
         " transposeW=" + std::to_string(transposeW) +
         " act=" + std::to_string(static_cast<int>(act)) +
         " bias=" + std::to_string(bias);
}

// Odd sizes, a single row/column, more rows than one tile (512) and few rows
// with many columns (column tiles).
const DenseShape kShapes[] = {{1, 1, 1},     {3, 7, 13},    {13, 3, 7},
                              {7, 13, 1},    {100, 64, 24}, {600, 40, 300},
                              {5, 300, 700}, {1030, 17, 33}};

TEST(DenseTest, MatchesReferenceOnAllShapesAndEpilogues) {
  for (const DenseShape &s : kShapes)
    for (bool transposeW : {false, true})
      for (Activation act :
           {Activation::None, Activation::Gelu, Activation::Tanh,
            Activation::Relu, Activation::GeluErf})
        for (bool withBias : {false, true}) {
          auto x = randomFloats(s.m * s.k, 1);
          auto w = randomFloats(s.k * s.n, 2);
          auto bias = randomFloats(s.n, 3);
          std::vector<float> y(s.m * s.n), expected(s.m * s.n);
          const float *b = withBias ? bias.data() : nullptr;
          dense(x.data(), w.data(), b, y.data(), s.m, s.k, s.n, transposeW,
                act);
          reference::dense(x.data(), w.data(), b, expected.data(), s.m, s.k,
                           s.n, transposeW, act);
          expectClose(y, expected, kRelTol,
                      describe(s, transposeW, act, withBias));
        }
}

TEST(DenseTest, EmptyInnerDimensionGivesActivatedBias) {
  // k = 0: the product is empty, y = act(bias).
  std::vector<float> bias = {-1.0f, 0.5f, 2.0f};
  std::vector<float> y(2 * 3, 123.0f);
  dense(nullptr, nullptr, bias.data(), y.data(), 2, 0, 3, false,
        Activation::Relu);
  EXPECT_EQ(y, (std::vector<float>{0.0f, 0.5f, 2.0f, 0.0f, 0.5f, 2.0f}));
}

TEST(DenseTest, HandComputedProduct) {
  // [[1,2],[3,4]] x [[5,6,7],[8,9,10]] + [1,1,-100], ReLU.
  std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> w = {5, 6, 7, 8, 9, 10};
  std::vector<float> bias = {1, 1, -100};
  std::vector<float> y(6);
  dense(x.data(), w.data(), bias.data(), y.data(), 2, 2, 3, false,
        Activation::Relu);
  EXPECT_EQ(y, (std::vector<float>{22, 25, 0, 48, 55, 0}));
  // The same W stored transposed [n,k].
  std::vector<float> wt = {5, 8, 6, 9, 7, 10};
  dense(x.data(), wt.data(), bias.data(), y.data(), 2, 2, 3, true,
        Activation::Relu);
  EXPECT_EQ(y, (std::vector<float>{22, 25, 0, 48, 55, 0}));
}

TEST(DenseTest, ThreadCountDoesNotChangeBits) {
  const int64_t m = 1100, k = 70, n = 300;
  auto x = randomFloats(m * k, 4);
  auto w = randomFloats(k * n, 5);
  auto bias = randomFloats(n, 6);
  test::expectThreadCountIndependent(
      m * n,
      [&](float *y) {
        dense(x.data(), w.data(), bias.data(), y, m, k, n, false,
              Activation::Gelu);
      },
      "dense");
}

TEST(DenseTest, RunsInsideAParallelRegion) {
  // Each thread of an outer region runs its own dense; the results must be
  // those of a plain call.
  const int64_t m = 600, k = 32, n = 64;
  auto x = randomFloats(2 * m * k, 7);
  auto w = randomFloats(k * n, 8);
  std::vector<float> inside(2 * m * n), outside(2 * m * n);
#pragma omp parallel for num_threads(2)
  for (int i = 0; i < 2; ++i)
    dense(x.data() + i * m * k, w.data(), nullptr, inside.data() + i * m * n, m,
          k, n, false, Activation::None);
  for (int i = 0; i < 2; ++i)
    dense(x.data() + i * m * k, w.data(), nullptr, outside.data() + i * m * n,
          m, k, n, false, Activation::None);
  test::expectBitwiseEqual(inside, outside, "dense inside a parallel region");
}

struct BatchedCase {
  const char *name;
  int64_t batch, m, k, n, strideA, strideB, strideY;
};

TEST(BatchedMatmulTest, MatchesReferenceForAllStrideKinds) {
  const BatchedCase cases[] = {
      {"dense strides", 3, 7, 5, 13, 7 * 5, 5 * 13, 7 * 13},
      {"shared A", 4, 12, 12, 9, 0, 12 * 9, 12 * 9},
      {"shared B, packed A and Y", 3, 13, 6, 11, 13 * 6, 0, 13 * 11},
      {"shared B, padded Y", 2, 5, 4, 3, 5 * 4, 0, 5 * 3 + 7},
      {"single product", 1, 100, 24, 100, 0, 0, 0},
      {"one by one", 5, 1, 1, 1, 1, 1, 1}};
  for (const BatchedCase &c : cases) {
    int64_t aSize = std::max(c.strideA * (c.batch - 1), int64_t(0)) + c.m * c.k;
    int64_t bSize = std::max(c.strideB * (c.batch - 1), int64_t(0)) + c.k * c.n;
    int64_t ySize = std::max(c.strideY * (c.batch - 1), int64_t(0)) + c.m * c.n;
    auto a = randomFloats(aSize, 11);
    auto b = randomFloats(bSize, 12);
    std::vector<float> y(ySize, 0.0f), expected(ySize, 0.0f);
    batchedMatmul(a.data(), b.data(), y.data(), c.batch, c.m, c.k, c.n,
                  c.strideA, c.strideB, c.strideY);
    reference::batchedMatmul(a.data(), b.data(), expected.data(), c.batch, c.m,
                             c.k, c.n, c.strideA, c.strideB, c.strideY);
    expectClose(y, expected, kRelTol, c.name);
  }
}

} // namespace
} // namespace mixer::cpu
