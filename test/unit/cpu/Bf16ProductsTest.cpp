//===- Bf16ProductsTest.cpp - The kernels with bf16 products --------------===//
//
// DenseBf16, ExpertsBf16, AttentionBf16 and LinearMixBf16 against the fp32
// reference kernels. For dense and experts: rounding x and W to bf16 (2^-8
// relative each) moves each term of a sum by at most 2^-7 of its size, so an
// output may differ from the fp32 result by 2^-7 of sum |x_k * w_k|, times
// the activation's largest slope (GELU's 1.13), plus a rounding of 2^-8 of
// the value where it is stored in bf16; on top, 1e-5 of the sum covers the
// fp32 accumulation and activation differences. The experts apply the same
// bound through both layers, with the hidden layer stored in bf16. The bounds
// of attention and linear mixing are stated with their tests.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/support/Bf16Router.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <array>
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

/// The values of `x` rounded to bf16, as floats.
std::vector<float> roundedToBf16(const std::vector<float> &x) {
  std::vector<float> y(x.size());
  roundToBf16(x.data(), y.data(), static_cast<int64_t>(x.size()));
  return y;
}

std::vector<float> absolute(const std::vector<float> &x) {
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    y[i] = std::fabs(x[i]);
  return y;
}

/// `got` (fp32, or bf16 words when `bf16`) against `expected` within
/// `bound[i]`; reports the first three failures.
void expectWithin(const std::string &where, const void *got, bool bf16,
                  const std::vector<float> &expected,
                  const std::vector<double> &bound) {
  int failures = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    double value = bf16 ? fromBf16(static_cast<const uint16_t *>(got)[i])
                        : static_cast<const float *>(got)[i];
    if (!(std::fabs(value - expected[i]) <= bound[i]) && failures++ < 3)
      ADD_FAILURE() << where << " at " << i << ": " << value << " vs "
                    << expected[i] << " (bound " << bound[i] << ")";
  }
}

// Attention against the fp32 reference on the same bf16-rounded q, k and v
// (rounding fp32 operands is the kernel's first step; given as fp32 or bf16):
// the logits are then exact products summed in fp32, and the weights, each
// rounded to bf16, move an output by at most 2^-8 of sum_j p_j |v_j| (the
// reference attention of |v|), plus 2^-8 of the value where it is stored in
// bf16; 1e-4 of that sum covers the fp32 differences of logits and softmax.
TEST(Bf16ProductsTest, AttentionMatchesReferenceWithinTheBf16Bound) {
  SKIP_WITHOUT_BF16();
  // Three query blocks (128, 128, 44 rows), pad tokens (a pad query
  // included) or no ids, causal or not.
  const int64_t batch = 2, seq = 300, heads = 3, headDim = 16;
  const int32_t padId = 3;
  int64_t size = batch * seq * heads * headDim;
  std::vector<float> q = roundedToBf16(randomFloats(size, 11, -2.0f, 2.0f));
  std::vector<float> k = roundedToBf16(randomFloats(size, 12, -2.0f, 2.0f));
  std::vector<float> v = roundedToBf16(randomFloats(size, 13));
  std::vector<uint16_t> qb = toBf16Vector(q), kb = toBf16Vector(k),
                        vb = toBf16Vector(v);
  std::vector<int32_t> ids(batch * seq);
  for (int64_t i = 0; i < batch * seq; ++i)
    ids[i] = i % 7 == 5 ? padId : 10 + static_cast<int32_t>(i % 50);
  std::vector<float> vAbs = absolute(v);
  for (bool causal : {false, true})
    for (bool withIds : {false, true})
      for (std::array<bool, 3> inBf16 :
           {std::array<bool, 3>{true, true, true},
            std::array<bool, 3>{false, false, false},
            std::array<bool, 3>{true, false, true}})
        for (bool outBf16 : {false, true}) {
          std::string where =
              "causal=" + std::to_string(causal) +
              " ids=" + std::to_string(withIds) +
              " in=" + std::to_string(inBf16[0]) + std::to_string(inBf16[1]) +
              std::to_string(inBf16[2]) + " outBf16=" + std::to_string(outBf16);
          const int32_t *idsPtr = withIds ? ids.data() : nullptr;
          AttentionBf16 kernel(batch, seq, heads, headDim, causal, inBf16,
                               outBf16);
          std::vector<uint16_t> scratch(kernel.scratchWords());
          auto operand = [&](int i, const std::vector<float> &x,
                             const std::vector<uint16_t> &xb) {
            return inBf16[i] ? static_cast<const void *>(xb.data())
                             : static_cast<const void *>(x.data());
          };
          std::vector<float> out(size);
          std::vector<uint16_t> outb(size);
          kernel.run(operand(0, q, qb), operand(1, k, kb), operand(2, v, vb),
                     idsPtr,
                     outBf16 ? static_cast<void *>(outb.data())
                             : static_cast<void *>(out.data()),
                     padId, {}, scratch.data());
          std::vector<float> expected(size), spread(size);
          reference::attention(q.data(), k.data(), v.data(), idsPtr,
                               expected.data(), batch, seq, heads, headDim,
                               padId, causal);
          reference::attention(q.data(), k.data(), vAbs.data(), idsPtr,
                               spread.data(), batch, seq, heads, headDim, padId,
                               causal);
          std::vector<double> bound(size);
          for (int64_t i = 0; i < size; ++i) {
            double err = (kStoreBound * 1.01 + 1e-4) * spread[i];
            bound[i] =
                err +
                (outBf16 ? kStoreBound * (std::fabs(expected[i]) + err) : 0.0);
          }
          expectWithin(where,
                       outBf16 ? static_cast<void *>(outb.data())
                               : static_cast<void *>(out.data()),
                       outBf16, expected, bound);
        }
}

// Linear mixing against the fp32 reference: X * W_h with x and W_h rounded
// to bf16 is off by 2^-7 of |X| |W_h| and is stored in bf16 (2^-8 more);
// W_s rounded to bf16 adds 2^-8, so an output may differ by
// (2^-7 + 2^-8 + 2^-8) * 1.01 of |W_s| |X| |W_h| (the reference mixing of the
// absolute values), plus 1e-5 of it for the fp32 accumulation, plus 2^-8 of
// the value where it is stored in bf16.
TEST(Bf16ProductsTest, LinearMixMatchesReferenceWithinTheBf16Bound) {
  SKIP_WITHOUT_BF16();
  // seq 300: a full 256-row tile of W_s and a short one; seq 5: one tile.
  for (auto [batch, seq, d] :
       {std::array<int64_t, 3>{3, 300, 24}, std::array<int64_t, 3>{2, 5, 7}})
    for (bool xBf16 : {false, true})
      for (bool yBf16 : {false, true}) {
        std::string where =
            "batch=" + std::to_string(batch) + " seq=" + std::to_string(seq) +
            " d=" + std::to_string(d) + " xBf16=" + std::to_string(xBf16) +
            " yBf16=" + std::to_string(yBf16);
        int64_t size = batch * seq * d;
        std::vector<float> x = randomFloats(size, 21, -2.0f, 2.0f);
        std::vector<float> ws = randomFloats(seq * seq, 22);
        std::vector<float> wh = randomFloats(d * d, 23);
        std::vector<uint16_t> xb = toBf16Vector(x);
        if (xBf16) // the reference sees the same inputs
          x = roundedToBf16(x);
        LinearMixBf16 kernel(batch, seq, d, xBf16, yBf16);
        std::vector<char> packed(kernel.packedBytes());
        kernel.pack(ws.data(), wh.data(), packed.data());
        std::vector<uint16_t> scratch(kernel.scratchWords());
        std::vector<float> y(size);
        std::vector<uint16_t> yb(size);
        kernel.run(xBf16 ? static_cast<const void *>(xb.data())
                         : static_cast<const void *>(x.data()),
                   packed.data(),
                   yBf16 ? static_cast<void *>(yb.data())
                         : static_cast<void *>(y.data()),
                   scratch.data());
        std::vector<float> expected(size), spread(size);
        reference::linearMix(x.data(), ws.data(), wh.data(), expected.data(),
                             batch, seq, d);
        reference::linearMix(absolute(x).data(), absolute(ws).data(),
                             absolute(wh).data(), spread.data(), batch, seq, d);
        std::vector<double> bound(size);
        for (int64_t i = 0; i < size; ++i) {
          double err = (0x1p-7 + 2 * kStoreBound) * 1.01 * spread[i];
          bound[i] =
              err + kAccumulationBound * (spread[i] + 1.0) +
              (yBf16 ? kStoreBound * (std::fabs(expected[i]) + err) : 0.0);
        }
        expectWithin(where,
                     yBf16 ? static_cast<void *>(yb.data())
                           : static_cast<void *>(y.data()),
                     yBf16, expected, bound);
      }
}

} // namespace
} // namespace mixer::cpu
