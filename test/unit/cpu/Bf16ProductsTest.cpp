//===- Bf16ProductsTest.cpp - dense and experts with bf16 products --------===//
//
// DenseBf16 and ExpertsBf16 against the fp32 reference kernels. Rounding x and
// W to bf16 (2^-8 relative each) moves each term of a sum by at most 2^-7 of
// its size, so an output may differ from the fp32 result by 2^-7 of
// sum |x_k * w_k|, times the activation's largest slope (GELU's 1.13), plus a
// rounding of 2^-8 of the value where it is stored in bf16; on top, 1e-5 of
// the sum covers the fp32 accumulation and activation differences. The
// experts apply the same bound through both layers, with the hidden layer
// stored in bf16.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/support/Bf16Router.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::randomFloats;

constexpr double kProductBound = 0x1p-7 * 1.01;
constexpr double kStoreBound = 0x1p-8;
constexpr double kAccumulationBound = 1e-5;

double slopeOf(Activation act) { return act == Activation::Gelu ? 1.13 : 1.0; }

float fromBf16(uint16_t bits) { return bf16::floatOf(uint32_t(bits) << 16); }

std::vector<uint16_t> toBf16Vector(const std::vector<float> &x) {
  std::vector<uint16_t> y(x.size());
  toBf16(x.data(), y.data(), static_cast<int64_t>(x.size()));
  return y;
}

#define SKIP_WITHOUT_BF16()                                                    \
  if (!hasBf16Products())                                                      \
  GTEST_SKIP() << "this CPU has no bf16 products (AVX512_BF16 or AMX)"

TEST(Bf16ProductsTest, ToBf16RoundsToNearestEven) {
  std::vector<float> x = {1.0f,
                          bf16::floatOf(0x3f808000u),
                          bf16::floatOf(0x3f818000u),
                          bf16::floatOf(0x3f808001u),
                          -2.5f,
                          INFINITY,
                          NAN};
  std::vector<uint16_t> y = toBf16Vector(x);
  EXPECT_EQ(y[0], 0x3f80);
  EXPECT_EQ(y[1], 0x3f80); // a tie rounds to the even neighbour
  EXPECT_EQ(y[2], 0x3f82);
  EXPECT_EQ(y[3], 0x3f81);
  EXPECT_EQ(y[4], 0xc020);
  EXPECT_EQ(y[5], 0x7f80);
  EXPECT_TRUE(std::isnan(fromBf16(y[6])));
}

struct DenseCase {
  int64_t m, k, n;
};

// A single row, odd sizes, a short last row tile (600 = 512 + 88 rows) and
// more rows than two tiles.
const DenseCase kDenseCases[] = {
    {1, 1, 1}, {3, 7, 13}, {100, 64, 24}, {600, 40, 300}, {1030, 33, 17}};

TEST(Bf16ProductsTest, DenseMatchesReferenceWithinTheBf16Bound) {
  SKIP_WITHOUT_BF16();
  for (const DenseCase &s : kDenseCases)
    for (bool transposeW : {false, true})
      for (Activation act : {Activation::None, Activation::Gelu,
                             Activation::Tanh, Activation::Relu})
        for (bool withBias : {false, true})
          for (bool xBf16 : {false, true})
            for (bool yBf16 : {false, true}) {
              std::string where =
                  "m=" + std::to_string(s.m) + " k=" + std::to_string(s.k) +
                  " n=" + std::to_string(s.n) +
                  " transposeW=" + std::to_string(transposeW) +
                  " act=" + std::to_string(static_cast<int>(act)) +
                  " bias=" + std::to_string(withBias) +
                  " xBf16=" + std::to_string(xBf16) +
                  " yBf16=" + std::to_string(yBf16);
              std::vector<float> x = randomFloats(s.m * s.k, 1, -2.0f, 2.0f);
              std::vector<float> w = randomFloats(s.k * s.n, 2);
              std::vector<float> bias = randomFloats(s.n, 3);
              std::vector<uint16_t> xb = toBf16Vector(x);
              if (xBf16) // the reference sees the same inputs
                for (int64_t i = 0; i < s.m * s.k; ++i)
                  x[i] = fromBf16(xb[i]);
              const float *b = withBias ? bias.data() : nullptr;
              DenseBf16 kernel(s.m, s.k, s.n, transposeW, xBf16, yBf16,
                               withBias, act);
              std::vector<char> packed(kernel.packedBytes());
              kernel.pack(w.data(), packed.data());
              std::vector<float> y(s.m * s.n);
              std::vector<uint16_t> yb(s.m * s.n);
              kernel.run(xBf16 ? static_cast<const void *>(xb.data())
                               : static_cast<const void *>(x.data()),
                         packed.data(), b,
                         yBf16 ? static_cast<void *>(yb.data())
                               : static_cast<void *>(y.data()));
              std::vector<float> expected(s.m * s.n);
              reference::dense(x.data(), w.data(), b, expected.data(), s.m, s.k,
                               s.n, transposeW, act);
              int failures = 0;
              for (int64_t r = 0; r < s.m; ++r)
                for (int64_t c = 0; c < s.n; ++c) {
                  double sum = withBias ? std::fabs(bias[c]) : 0.0;
                  for (int64_t i = 0; i < s.k; ++i)
                    sum +=
                        std::fabs(x[r * s.k + i]) *
                        std::fabs(transposeW ? w[c * s.k + i] : w[i * s.n + c]);
                  double ref = expected[r * s.n + c];
                  double err = slopeOf(act) * kProductBound * sum;
                  double bound =
                      err + kAccumulationBound * (sum + 1.0) +
                      (yBf16 ? kStoreBound * (std::fabs(ref) + err) : 0.0);
                  double got =
                      yBf16 ? fromBf16(yb[r * s.n + c]) : y[r * s.n + c];
                  if (!(std::fabs(got - ref) <= bound) && failures++ < 3)
                    ADD_FAILURE()
                        << where << " at [" << r << "," << c << "]: " << got
                        << " vs " << ref << " (bound " << bound << ")";
                }
            }
}

TEST(Bf16ProductsTest, ExpertsMatchReferenceWithinTheBf16Bound) {
  SKIP_WITHOUT_BF16();
  // Experts with 3 rows, 600 rows (two tiles of 300), none, and 17 rows
  // followed by two empty slots.
  const int64_t numExperts = 4, d = 24, f = 40;
  std::vector<int32_t> offsets = {0, 3, 603, 603, 622};
  int64_t slots = offsets.back();
  std::vector<int32_t> tokens(slots);
  for (int64_t i = 0; i < slots; ++i)
    tokens[i] = i >= 620 ? -1 : static_cast<int32_t>(i % 97);
  for (Activation act :
       {Activation::None, Activation::Gelu, Activation::Tanh, Activation::Relu})
    for (bool withBias : {false, true}) {
      std::string where = "act=" + std::to_string(static_cast<int>(act)) +
                          " bias=" + std::to_string(withBias);
      std::vector<float> xd = randomFloats(slots * d, 4, -2.0f, 2.0f);
      std::vector<float> w1 = randomFloats(numExperts * d * f, 5);
      std::vector<float> w2 = randomFloats(numExperts * f * d, 6);
      std::vector<float> b1 = randomFloats(numExperts * f, 7);
      std::vector<float> b2 = randomFloats(numExperts * d, 8);
      const float *bias1 = withBias ? b1.data() : nullptr;
      const float *bias2 = withBias ? b2.data() : nullptr;
      ExpertsBf16 kernel(numExperts, slots, d, f, withBias, withBias, act);
      std::vector<char> packed(kernel.packedBytes());
      kernel.pack(w1.data(), w2.data(), packed.data());
      std::vector<float> yd(slots * d, 7.0f), expected(slots * d);
      kernel.run(xd.data(), tokens.data(), offsets.data(), packed.data(), bias1,
                 bias2, yd.data());
      reference::experts(xd.data(), tokens.data(), offsets.data(), w1.data(),
                         bias1, w2.data(), bias2, expected.data(), numExperts,
                         slots, d, f, act);
      int failures = 0;
      for (int64_t e = 0; e < numExperts; ++e)
        for (int64_t row = offsets[e]; row < offsets[e + 1]; ++row) {
          if (tokens[row] < 0) {
            for (int64_t c = 0; c < d; ++c)
              EXPECT_EQ(yd[row * d + c], 0.0f) << where << " empty slot";
            continue;
          }
          // The hidden layer's values and error bounds, in double.
          std::vector<double> hidden(f), hiddenError(f);
          for (int64_t j = 0; j < f; ++j) {
            double p = withBias ? b1[e * f + j] : 0.0;
            double sum = withBias ? std::fabs(b1[e * f + j]) : 0.0;
            for (int64_t i = 0; i < d; ++i) {
              double term = double(xd[row * d + i]) * w1[(e * d + i) * f + j];
              p += term;
              sum += std::fabs(term);
            }
            hidden[j] = reference::applyActivation(p, act);
            double err = slopeOf(act) * kProductBound * sum;
            hiddenError[j] = err + kAccumulationBound * (sum + 1.0) +
                             kStoreBound * (std::fabs(hidden[j]) + err);
          }
          for (int64_t c = 0; c < d; ++c) {
            double sum = withBias ? std::fabs(b2[e * d + c]) : 0.0;
            double bound = 0.0;
            for (int64_t j = 0; j < f; ++j) {
              double weight = std::fabs(w2[(e * f + j) * d + c]);
              sum += std::fabs(hidden[j]) * weight;
              // The hidden value's own error, and w2's rounding.
              bound += (hiddenError[j] +
                        kStoreBound * (std::fabs(hidden[j]) + hiddenError[j])) *
                       weight;
            }
            bound += kAccumulationBound * (sum + 1.0);
            double got = yd[row * d + c], ref = expected[row * d + c];
            if (!(std::fabs(got - ref) <= bound) && failures++ < 3)
              ADD_FAILURE()
                  << where << " at [" << row << "," << c << "]: " << got
                  << " vs " << ref << " (bound " << bound << ")";
          }
        }
    }
}

} // namespace
} // namespace mixer::cpu
