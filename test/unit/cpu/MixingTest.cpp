//===- MixingTest.cpp - linear, spectral and structured mixing ------------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::expectClose;
using test::kRelTol;
using test::randomFloats;

struct MixShape {
  int64_t batch, seq, d;
};

std::string describe(const char *what, const MixShape &s) {
  return std::string(what) + " batch=" + std::to_string(s.batch) +
         " seq=" + std::to_string(s.seq) + " d=" + std::to_string(s.d);
}

// Odd and single sizes, sequences that are not powers of two.
const MixShape kShapes[] = {{1, 1, 1},    {2, 3, 8}, {3, 12, 7}, {2, 24, 13},
                            {1, 100, 12}, {2, 7, 1}, {3, 1, 5},  {2, 64, 64}};

std::vector<float> arange(int64_t n) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), 0.0f);
  return v;
}

TEST(LinearMixTest, MatchesReference) {
  for (const MixShape &s : kShapes) {
    int64_t n = s.batch * s.seq * s.d;
    auto x = randomFloats(n, 1);
    auto ws = randomFloats(s.seq * s.seq, 2);
    auto wh = randomFloats(s.d * s.d, 3);
    std::vector<float> y(n), scratch(n), expected(n);
    linearMix(x.data(), ws.data(), wh.data(), y.data(), scratch.data(), s.batch,
              s.seq, s.d);
    reference::linearMix(x.data(), ws.data(), wh.data(), expected.data(),
                         s.batch, s.seq, s.d);
    expectClose(y, expected, kRelTol, describe("linearMix", s));
  }
}

TEST(LinearMixTest, HandComputed) {
  // W_s = [[0,1],[1,0]] swaps the two tokens, W_h = [[1,1],[0,2]].
  std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> ws = {0, 1, 1, 0}, wh = {1, 1, 0, 2};
  std::vector<float> y(4), scratch(4);
  linearMix(x.data(), ws.data(), wh.data(), y.data(), scratch.data(), 1, 2, 2);
  // X*W_h = [[1,5],[3,11]], swapped.
  EXPECT_EQ(y, (std::vector<float>{3, 11, 1, 5}));
}

TEST(SpectralMixTest, MatchesReference) {
  for (const MixShape &s : kShapes)
    for (bool hartley : {false, true})
      for (MixAlgorithm algorithm : {MixAlgorithm::Fft, MixAlgorithm::Matmul}) {
        int64_t n = s.batch * s.seq * s.d;
        auto x = randomFloats(n, 4);
        std::vector<float> y(n), expected(n);
        SpectralMix mix(s.batch, s.seq, s.d, hartley, algorithm);
        mix.run(x.data(), y.data());
        reference::spectralMix(x.data(), expected.data(), s.batch, s.seq, s.d,
                               hartley);
        std::string what =
            describe(hartley ? "hartley" : "fourier", s) +
            (algorithm == MixAlgorithm::Fft ? " fft" : " matmul");
        expectClose(y, expected, kRelTol, what);
        // A second run reuses the plans and buffers.
        std::vector<float> again(n);
        mix.run(x.data(), again.data());
        test::expectBitwiseEqual(again, y, what + " second run");
      }
}

// f_net fourier_test input (spec 14.1).
const std::vector<float> kFourierInput = {1, 0, 0, 11, 9, 2, 0.4f, 2, //
                                          1, 1, 0, 1,  0, 2, 8,    1, //
                                          1, 4, 0, 5,  5, 0, -3,   1};

TEST(SpectralMixTest, FourierGolden) {
  const float row0[] = {52.4f, -19.48528f, 11.6f, -2.51472f,
                        -7.6f, -2.51472f,  11.6f, -19.48528f};
  const float row1[] = {11.9f, 1.11301f, 6.00192f,  -3.09031f,
                        -3.1f, 4.93955f, 11.19808f, -28.96225f};
  for (MixAlgorithm algorithm : {MixAlgorithm::Fft, MixAlgorithm::Matmul}) {
    std::vector<float> y(24);
    SpectralMix mix(1, 3, 8, /*hartley=*/false, algorithm);
    mix.run(kFourierInput.data(), y.data());
    for (int k = 0; k < 8; ++k) {
      EXPECT_NEAR(y[k], row0[k], 1e-4) << "row 0 column " << k;
      EXPECT_NEAR(y[8 + k], row1[k], 1e-4) << "row 1 column " << k;
      // Row 2 is row 1 with columns 1..7 reversed.
      EXPECT_NEAR(y[16 + k], row1[k == 0 ? 0 : 8 - k], 1e-4)
          << "row 2 column " << k;
    }
  }
}

TEST(SpectralMixTest, HartleyGolden) {
  const float row0[] = {52.4f, -14.98579f, -0.4f, 12.78478f,
                        -7.6f, -17.81421f, 23.6f, -23.98478f};
  for (MixAlgorithm algorithm : {MixAlgorithm::Fft, MixAlgorithm::Matmul}) {
    std::vector<float> y(24);
    SpectralMix mix(1, 3, 8, /*hartley=*/true, algorithm);
    mix.run(kFourierInput.data(), y.data());
    for (int k = 0; k < 8; ++k)
      EXPECT_NEAR(y[k], row0[k], 1e-4) << "column " << k;
  }
}

TEST(SpectralMixTest, UnalignedInput) {
  // The FFT plans are made for aligned arrays; an input at an odd offset must
  // still transform correctly.
  const MixShape s{3, 12, 10};
  int64_t n = s.batch * s.seq * s.d;
  auto storage = randomFloats(n + 1, 5);
  std::vector<float> y(n), expected(n);
  SpectralMix mix(s.batch, s.seq, s.d, false, MixAlgorithm::Fft);
  mix.run(storage.data() + 1, y.data());
  reference::spectralMix(storage.data() + 1, expected.data(), s.batch, s.seq,
                         s.d, false);
  expectClose(y, expected, kRelTol, "spectralMix unaligned");
}

TEST(SpectralMixTest, ThreadCountDoesNotChangeBits) {
  const MixShape s{5, 24, 40};
  int64_t n = s.batch * s.seq * s.d;
  auto x = randomFloats(n, 6);
  for (MixAlgorithm algorithm : {MixAlgorithm::Fft, MixAlgorithm::Matmul}) {
    SpectralMix mix(s.batch, s.seq, s.d, true, algorithm);
    test::expectThreadCountIndependent(
        n, [&](float *y) { mix.run(x.data(), y); }, "spectralMix");
  }
}

TEST(StructuredMixTest, MatchesReference) {
  for (const MixShape &s : kShapes)
    for (bool toeplitz : {false, true})
      for (MixAlgorithm algorithm : {MixAlgorithm::Fft, MixAlgorithm::Matmul}) {
        int64_t n = s.batch * s.seq * s.d;
        auto x = randomFloats(n, 7);
        auto vs = randomFloats(toeplitz ? 2 * s.seq - 1 : s.seq, 8);
        auto vh = randomFloats(toeplitz ? 2 * s.d - 1 : s.d, 9);
        std::vector<float> y(n), expected(n);
        StructuredMix mix(s.batch, s.seq, s.d, toeplitz, algorithm);
        mix.run(x.data(), vs.data(), vh.data(), y.data());
        reference::structuredMix(x.data(), vs.data(), vh.data(),
                                 expected.data(), s.batch, s.seq, s.d,
                                 toeplitz);
        std::string what =
            describe(toeplitz ? "toeplitz" : "circulant", s) +
            (algorithm == MixAlgorithm::Fft ? " fft" : " matmul");
        expectClose(y, expected, kRelTol, what);
        // Kernels are operands of run: new ones must take effect.
        auto vs2 = randomFloats(vs.size(), 10);
        mix.run(x.data(), vs2.data(), vh.data(), y.data());
        reference::structuredMix(x.data(), vs2.data(), vh.data(),
                                 expected.data(), s.batch, s.seq, s.d,
                                 toeplitz);
        expectClose(y, expected, kRelTol, what + " new kernel");
      }
}

TEST(StructuredMixTest, CirculantMatrixGolden) {
  // Spec 14.1: circulant matrix of arange(4).
  auto v = arange(4);
  const std::vector<float> expected = {0, 3, 2, 1, 1, 0, 3, 2,
                                       2, 1, 0, 3, 3, 2, 1, 0};
  std::vector<float> out(16);
  circulantMatrix(v.data(), out.data(), 4);
  EXPECT_EQ(out, expected);
  reference::circulantMatrix(v.data(), out.data(), 4);
  EXPECT_EQ(out, expected);
}

TEST(StructuredMixTest, ToeplitzMatrixGolden) {
  // Spec 14.1: Toeplitz matrix of arange(7).
  auto t = arange(7);
  const std::vector<float> expected = {3, 4, 5, 6, 2, 3, 4, 5,
                                       1, 2, 3, 4, 0, 1, 2, 3};
  std::vector<float> out(16);
  toeplitzMatrix(t.data(), out.data(), 4);
  EXPECT_EQ(out, expected);
  reference::toeplitzMatrix(t.data(), out.data(), 4);
  EXPECT_EQ(out, expected);
}

TEST(StructuredMixTest, CirculantGolden) {
  // Spec 14.1: x = arange(24) as [4,6], v_s = arange(4), v_h = arange(6).
  auto x = arange(24), vs = arange(4), vh = arange(6);
  const std::vector<float> expected = {
      1110, 1164, 1182, 1164, 1110, 1020, 1290, 1344, 1362, 1344, 1290, 1200,
      1110, 1164, 1182, 1164, 1110, 1020, 570,  624,  642,  624,  570,  480};
  for (MixAlgorithm algorithm : {MixAlgorithm::Fft, MixAlgorithm::Matmul}) {
    std::vector<float> y(24);
    StructuredMix mix(1, 4, 6, false, algorithm);
    mix.run(x.data(), vs.data(), vh.data(), y.data());
    for (int i = 0; i < 24; ++i)
      EXPECT_NEAR(y[i], expected[i], 1e-3) << "element " << i;
  }
}

TEST(StructuredMixTest, ToeplitzGolden) {
  // Spec 14.1: x = arange(12) as [4,3], t_s = arange(7), t_h = arange(5).
  auto x = arange(12), ts = arange(7), th = arange(5);
  const std::vector<float> expected = {1062, 720, 378, 856, 580, 304,
                                       650,  440, 230, 444, 300, 156};
  for (MixAlgorithm algorithm : {MixAlgorithm::Fft, MixAlgorithm::Matmul}) {
    std::vector<float> y(12);
    StructuredMix mix(1, 4, 3, true, algorithm);
    mix.run(x.data(), ts.data(), th.data(), y.data());
    for (int i = 0; i < 12; ++i)
      EXPECT_NEAR(y[i], expected[i], 1e-3) << "element " << i;
  }
}

TEST(StructuredMixTest, ThreadCountDoesNotChangeBits) {
  const MixShape s{4, 24, 18};
  int64_t n = s.batch * s.seq * s.d;
  auto x = randomFloats(n, 11);
  auto vs = randomFloats(2 * s.seq - 1, 12);
  auto vh = randomFloats(2 * s.d - 1, 13);
  for (MixAlgorithm algorithm : {MixAlgorithm::Fft, MixAlgorithm::Matmul}) {
    StructuredMix mix(s.batch, s.seq, s.d, true, algorithm);
    test::expectThreadCountIndependent(
        n, [&](float *y) { mix.run(x.data(), vs.data(), vh.data(), y); },
        "structuredMix");
  }
}

} // namespace
} // namespace mixer::cpu
