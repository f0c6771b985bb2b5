//===- Bf16RouterTest.cpp - The bfloat16 router's arithmetic --------------===//
//
// runtime/support/Bf16Router.h and the CPU kernels built on it against a
// plain scalar recipe written here: each step rounded by the reference
// rounding (the nearer of the two bfloat16 neighbours), exp from the C
// library in double, the sum in float32 in index order.
//
//===----------------------------------------------------------------------===//

#include "runtime/support/Bf16Router.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/ReferenceKernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

using namespace mixer;
using namespace mixer::cpu;

namespace {

uint32_t bitsOf(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

float fromBits(uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

float plainRound(float x) {
  float y;
  reference::roundToBf16(&x, &y, 1);
  return y;
}

float plainExp(float z) {
  return static_cast<float>(std::exp(static_cast<double>(z)));
}

float plainLogit(float product, float bias) {
  return plainRound(plainRound(product) + plainRound(bias));
}

std::vector<float> plainSoftmax(const std::vector<float> &logits) {
  float maximum = -INFINITY;
  for (float l : logits)
    maximum = std::max(maximum, l);
  std::vector<float> e(logits.size());
  float sum = 0.0f;
  for (size_t i = 0; i < logits.size(); ++i) {
    e[i] = plainRound(plainExp(plainRound(logits[i] - maximum)));
    sum += e[i];
  }
  float inverse = 1.0f / plainRound(sum);
  for (float &v : e)
    v = plainRound(v * inverse);
  return e;
}

/// Bit equality, NaNs compared as NaNs.
void expectSameBits(float got, float want, const std::string &what) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what;
    return;
  }
  EXPECT_EQ(bitsOf(got), bitsOf(want))
      << what << ": got " << got << ", want " << want;
}

TEST(Bf16RouterTest, RoundsAsTheReferenceOnTiesSubnormalsAndRandomBits) {
  std::vector<float> values = {
      1.0f + 0x1p-8f,        // tie: down to even 1.0
      1.0f + 0x3p-8f,        // tie: up to even 1 + 2^-6
      -(1.0f + 0x1p-8f),     // negative tie
      fromBits(0x00018000u), // subnormal tie, odd below: up
      fromBits(0x00028000u), // subnormal tie, even below: down
      fromBits(0x000116c2u), // subnormal
      fromBits(0x7f7f8000u), // tie at the largest bfloat16: to infinity
      std::numeric_limits<float>::max(),
      0.0f,
      -0.0f,
      INFINITY,
      -INFINITY};
  std::mt19937 rng(3);
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = rng();
    if ((bits & 0x7f800000u) != 0x7f800000u)
      values.push_back(fromBits(bits));
  }
  for (float x : values)
    expectSameBits(bf16::nearest(x), plainRound(x),
                   "nearest(" + std::to_string(x) + ")");
  EXPECT_EQ(bitsOf(bf16::nearest(1.0f + 0x3p-8f)), bitsOf(1.0f + 0x1p-6f));
  EXPECT_TRUE(std::isnan(bf16::nearest(fromBits(0x7f800001u))));
}

TEST(Bf16RouterTest, ExponentialIsTheLibraryDoubleExpRoundedToFloat) {
  // Every bfloat16 input (the softmax's) from below the underflow to above
  // the overflow, and arbitrary floats.
  std::vector<float> inputs;
  for (uint32_t high = 0; high < 0x10000u; ++high) {
    float z = fromBits(high << 16);
    if (!std::isnan(z))
      inputs.push_back(z);
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> uniform(-110.0f, 90.0f);
  for (int i = 0; i < 200000; ++i)
    inputs.push_back(uniform(rng));
  for (float z : inputs)
    expectSameBits(bf16::exponential(z), plainExp(z),
                   "exponential(" + std::to_string(z) + ")");
  EXPECT_EQ(bf16::exponential(0.0f), 1.0f);
  EXPECT_EQ(bf16::exponential(-INFINITY), 0.0f);
  EXPECT_TRUE(std::isinf(bf16::exponential(89.5f)));
}

TEST(Bf16RouterTest, LogitsRoundProductBiasAndSum) {
  // Products and biases that tie when rounded, sums that tie, subnormals and
  // a sum that overflows.
  const std::vector<float> products = {
      1.0f + 0x1p-8f, 1.0f + 0x3p-8f,  0.5f, fromBits(0x00018000u),
      3.0e38f,        -1.0f - 0x1p-8f, 0.0f, 1.0f + 0x1p-8f + 0x1p-20f};
  const std::vector<float> bias = {
      0.0f,    0x1p-8f, 0.5f + 0x1p-9f, fromBits(0x00008000u),
      3.0e38f, 0.0f,    -0.0f,          0.0f};
  int64_t cols = static_cast<int64_t>(bias.size());
  std::vector<float> y(products.size());
  routerLogitsBf16(products.data(), bias.data(), y.data(), 1, cols);
  for (int64_t c = 0; c < cols; ++c)
    expectSameBits(y[c], plainLogit(products[c], bias[c]),
                   "logit " + std::to_string(c));
  // 1 + 2^-8 ties down to 1; 1 + 3·2^-8 ties up to 1 + 2^-6, and the sum
  // with 2^-8 ties again, to 1 + 2^-6.
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], 1.0f + 0x1p-6f);
  EXPECT_TRUE(std::isinf(y[4]));
}

/// Runs the kernel on `rows` (each of `cols` values) and compares every
/// probability with the plain recipe, also with the output over the input.
void expectSoftmaxMatches(const std::vector<std::vector<float>> &rows) {
  int64_t cols = static_cast<int64_t>(rows[0].size());
  std::vector<float> x;
  for (const auto &row : rows)
    x.insert(x.end(), row.begin(), row.end());
  std::vector<float> y(x.size()), inPlace = x;
  routerSoftmaxBf16(x.data(), y.data(), static_cast<int64_t>(rows.size()),
                    cols);
  routerSoftmaxBf16(inPlace.data(), inPlace.data(),
                    static_cast<int64_t>(rows.size()), cols);
  for (size_t r = 0; r < rows.size(); ++r) {
    std::vector<float> want = plainSoftmax(rows[r]);
    for (int64_t c = 0; c < cols; ++c) {
      std::string what =
          "row " + std::to_string(r) + " col " + std::to_string(c);
      expectSameBits(y[r * cols + c], want[c], what);
      expectSameBits(inPlace[r * cols + c], want[c], what + " in place");
    }
  }
}

TEST(Bf16RouterTest, SoftmaxOnEdgeRows) {
  expectSoftmaxMatches({
      // z = -(1 + 2^-8) ties to -1 (even).
      {2.0f, 0.99609375f, 0.0f, -1.0f},
      // The maximum repeated.
      {1.5f, 1.5f, -2.0f, 0.25f},
      // Large logits: differences overflow to -inf, exp to 0.
      {3.0e38f, -3.0e38f, 1.0e38f, 3.0e38f},
      // Probabilities below the normal range (bfloat16 subnormals).
      {0.0f, -90.0f, -100.0f, -103.5f},
      // Subnormal logits.
      {fromBits(0x00000001u), -fromBits(0x00400000u), 0.0f,
       fromBits(0x00018000u)},
      // Equal logits: 1/4 each.
      {0.3f, 0.3f, 0.3f, 0.3f},
  });
  // The repeated maximum shares its probability exactly.
  std::vector<float> row = {-INFINITY, 7.0f, 7.0f, -INFINITY}, p(4);
  routerSoftmaxBf16(row.data(), p.data(), 1, 4);
  EXPECT_EQ(p[0], 0.0f);
  EXPECT_EQ(p[1], 0.5f);
  EXPECT_EQ(p[2], 0.5f);
}

TEST(Bf16RouterTest, SoftmaxOnRandomRouterLogits) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<std::vector<float>> rows(500, std::vector<float>(16));
  for (auto &row : rows)
    for (float &v : row)
      v = plainRound(normal(rng));
  expectSoftmaxMatches(rows);
}

} // namespace
