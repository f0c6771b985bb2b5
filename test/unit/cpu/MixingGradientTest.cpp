//===- MixingGradientTest.cpp - backward of the mixing sublayers ----------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/MixingMoeGradients.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/cpu/ReferenceMixingMoeGradients.h"
#include "test/unit/cpu/GradientCheck.h"
#include "test/unit/cpu/TestUtil.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using test::expectClose;
using test::finiteDifferences;
using test::kRelTol;
using test::randomFloats;
using test::weightedSum;

struct MixShape {
  int64_t batch, seq, d;
};

std::string describe(const std::string &what, const MixShape &s) {
  return what + " batch=" + std::to_string(s.batch) +
         " seq=" + std::to_string(s.seq) + " d=" + std::to_string(s.d);
}

// Odd and single sizes, sequences that are not powers of two.
const MixShape kShapes[] = {{1, 1, 1},    {2, 3, 8}, {3, 12, 7}, {2, 24, 13},
                            {1, 100, 12}, {2, 7, 1}, {3, 1, 5},  {2, 64, 64}};

// Small shapes for finite differences.
const MixShape kSmallShapes[] = {{2, 3, 4}, {1, 5, 3}};

/// Finite differences of the linear maps are exact up to the float rounding
/// of the forward outputs; the step is a power of two.
constexpr float kLinearStep = 0.125f;
/// Tolerance of the reference gradients against those differences.
constexpr double kDifferenceTol = 1e-4;

/// Gradient buffers pre-filled with values that accumulation must keep.
std::vector<float> prefilled(int64_t n, bool accumulate, uint32_t seed) {
  return accumulate ? randomFloats(n, seed) : std::vector<float>(n, NAN);
}

//===----------------------------------------------------------------------===//
// Linear mixing
//===----------------------------------------------------------------------===//

TEST(LinearMixBackwardTest, MatchesReference) {
  for (const MixShape &s : kShapes)
    for (bool accumulate : {false, true}) {
      int64_t n = s.batch * s.seq * s.d;
      auto x = randomFloats(n, 1);
      auto ws = randomFloats(s.seq * s.seq, 2);
      auto wh = randomFloats(s.d * s.d, 3);
      auto dy = randomFloats(n, 4);
      std::vector<float> dx(n, NAN), scratch(n), dxRef(n);
      auto dws = prefilled(s.seq * s.seq, accumulate, 5), dwsRef = dws;
      auto dwh = prefilled(s.d * s.d, accumulate, 6), dwhRef = dwh;
      linearMixBackward(x.data(), ws.data(), wh.data(), dy.data(), dx.data(),
                        dws.data(), dwh.data(), scratch.data(), s.batch, s.seq,
                        s.d, accumulate);
      reference::linearMixBackward(x.data(), ws.data(), wh.data(), dy.data(),
                                   dxRef.data(), dwsRef.data(), dwhRef.data(),
                                   s.batch, s.seq, s.d, accumulate);
      std::string what =
          describe(accumulate ? "linear accumulate" : "linear", s);
      expectClose(dx, dxRef, kRelTol, what + " dx");
      expectClose(dws, dwsRef, kRelTol, what + " dws");
      expectClose(dwh, dwhRef, kRelTol, what + " dwh");
    }
}

TEST(LinearMixBackwardTest, HandComputed) {
  // Y = W_s X W_h with X = [[1,2],[3,4]], W_s = [[0,1],[1,0]],
  // W_h = [[1,1],[0,2]], dY = [[1,0],[0,1]]:
  // dX = W_s^T dY W_h^T = W_s W_h^T = [[1,2],[1,0]] (rows of W_h^T
  // swapped);
  // dW_s = dY (X W_h)^T = [[1,3],[5,11]] with X W_h = [[1,5],[3,11]];
  // dW_h = (W_s X)^T dY = [[3,1],[4,2]] with W_s X = [[3,4],[1,2]].
  std::vector<float> x = {1, 2, 3, 4}, ws = {0, 1, 1, 0}, wh = {1, 1, 0, 2};
  std::vector<float> dy = {1, 0, 0, 1}, dx(4), dws(4), dwh(4), scratch(4);
  linearMixBackward(x.data(), ws.data(), wh.data(), dy.data(), dx.data(),
                    dws.data(), dwh.data(), scratch.data(), 1, 2, 2, false);
  EXPECT_EQ(dx, (std::vector<float>{1, 2, 1, 0}));
  EXPECT_EQ(dws, (std::vector<float>{1, 3, 5, 11}));
  EXPECT_EQ(dwh, (std::vector<float>{3, 1, 4, 2}));
}

TEST(LinearMixBackwardTest, ReferenceMatchesFiniteDifferences) {
  for (const MixShape &s : kSmallShapes) {
    int64_t n = s.batch * s.seq * s.d;
    auto x = randomFloats(n, 7);
    auto ws = randomFloats(s.seq * s.seq, 8);
    auto wh = randomFloats(s.d * s.d, 9);
    auto dy = randomFloats(n, 10);
    std::vector<float> dx(n), dws(s.seq * s.seq), dwh(s.d * s.d), y(n);
    reference::linearMixBackward(x.data(), ws.data(), wh.data(), dy.data(),
                                 dx.data(), dws.data(), dwh.data(), s.batch,
                                 s.seq, s.d, false);
    auto loss = [&] {
      reference::linearMix(x.data(), ws.data(), wh.data(), y.data(), s.batch,
                           s.seq, s.d);
      return weightedSum(y, dy);
    };
    std::string what = describe("linear finite differences", s);
    expectClose(dx, finiteDifferences(x, kLinearStep, loss), kDifferenceTol,
                what + " dx");
    expectClose(dws, finiteDifferences(ws, kLinearStep, loss), kDifferenceTol,
                what + " dws");
    expectClose(dwh, finiteDifferences(wh, kLinearStep, loss), kDifferenceTol,
                what + " dwh");
  }
}

TEST(LinearMixBackwardTest, ThreadCountDoesNotChangeBits) {
  const MixShape s{3, 200, 80};
  int64_t n = s.batch * s.seq * s.d;
  auto x = randomFloats(n, 11);
  auto ws = randomFloats(s.seq * s.seq, 12);
  auto wh = randomFloats(s.d * s.d, 13);
  auto dy = randomFloats(n, 14);
  int64_t total = n + s.seq * s.seq + s.d * s.d;
  test::expectThreadCountIndependent(
      total,
      [&](float *out) {
        std::vector<float> scratch(n);
        linearMixBackward(x.data(), ws.data(), wh.data(), dy.data(), out,
                          out + n, out + n + s.seq * s.seq, scratch.data(),
                          s.batch, s.seq, s.d, false);
      },
      "linearMixBackward");
}

//===----------------------------------------------------------------------===//
// Spectral mixing
//===----------------------------------------------------------------------===//

const char *spectralName(bool hartley, MixAlgorithm algorithm) {
  if (hartley)
    return algorithm == MixAlgorithm::Fft ? "hartley fft" : "hartley matmul";
  return algorithm == MixAlgorithm::Fft ? "fourier fft" : "fourier matmul";
}

TEST(SpectralMixBackwardTest, MatchesReference) {
  for (const MixShape &s : kShapes)
    for (bool hartley : {false, true})
      for (MixAlgorithm algorithm : {MixAlgorithm::Fft, MixAlgorithm::Matmul}) {
        // The reference costs (seq*d)^2 per example.
        if (s.seq * s.d > 1200)
          continue;
        int64_t n = s.batch * s.seq * s.d;
        auto dy = randomFloats(n, 15);
        std::vector<float> dx(n), expected(n);
        SpectralMix mix(s.batch, s.seq, s.d, hartley, algorithm);
        spectralMixBackward(mix, dy.data(), dx.data());
        reference::spectralMixBackward(dy.data(), expected.data(), s.batch,
                                       s.seq, s.d, hartley);
        expectClose(dx, expected, kRelTol,
                    describe(spectralName(hartley, algorithm), s));
      }
}

TEST(SpectralMixBackwardTest, ForwardIsSelfAdjoint) {
  // <M x, y> = <x, M y> for the optimized objects, in double.
  for (const MixShape &s : kShapes)
    for (bool hartley : {false, true})
      for (MixAlgorithm algorithm : {MixAlgorithm::Fft, MixAlgorithm::Matmul}) {
        int64_t n = s.batch * s.seq * s.d;
        auto x = randomFloats(n, 16), y = randomFloats(n, 17);
        std::vector<float> mx(n), my(n);
        SpectralMix mix(s.batch, s.seq, s.d, hartley, algorithm);
        mix.run(x.data(), mx.data());
        mix.run(y.data(), my.data());
        double left = weightedSum(mx, y), right = weightedSum(x, my);
        // Each product carries the rounding of outputs of size about
        // sqrt(seq*d) |x|: bound by the norms.
        double scale = std::sqrt(weightedSum(mx, mx) * weightedSum(y, y));
        EXPECT_NEAR(left, right, 1e-5 * scale)
            << describe(spectralName(hartley, algorithm), s);
      }
}

TEST(SpectralMixBackwardTest, ReferenceMatchesFiniteDifferences) {
  for (const MixShape &s : kSmallShapes)
    for (bool hartley : {false, true}) {
      int64_t n = s.batch * s.seq * s.d;
      auto x = randomFloats(n, 18), dy = randomFloats(n, 19);
      std::vector<float> dx(n), y(n);
      reference::spectralMixBackward(dy.data(), dx.data(), s.batch, s.seq, s.d,
                                     hartley);
      auto loss = [&] {
        reference::spectralMix(x.data(), y.data(), s.batch, s.seq, s.d,
                               hartley);
        return weightedSum(y, dy);
      };
      expectClose(dx, finiteDifferences(x, kLinearStep, loss), kDifferenceTol,
                  describe(hartley ? "hartley finite differences"
                                   : "fourier finite differences",
                           s));
    }
}

//===----------------------------------------------------------------------===//
// Structured mixing
//===----------------------------------------------------------------------===//

int64_t kernelSize(int64_t n, bool toeplitz) {
  return toeplitz ? 2 * n - 1 : n;
}

TEST(StructuredMixBackwardTest, MatchesReference) {
  for (const MixShape &s : kShapes)
    for (bool toeplitz : {false, true})
      for (bool accumulate : {false, true}) {
        int64_t n = s.batch * s.seq * s.d;
        int64_t ns = kernelSize(s.seq, toeplitz),
                nh = kernelSize(s.d, toeplitz);
        auto x = randomFloats(n, 20), dy = randomFloats(n, 21);
        auto vs = randomFloats(ns, 22), vh = randomFloats(nh, 23);
        std::vector<float> dx(n, NAN), dxRef(n);
        auto dvs = prefilled(ns, accumulate, 24), dvsRef = dvs;
        auto dvh = prefilled(nh, accumulate, 25), dvhRef = dvh;
        StructuredMixBackward backward(s.batch, s.seq, s.d, toeplitz);
        backward.run(x.data(), vs.data(), vh.data(), dy.data(), dx.data(),
                     dvs.data(), dvh.data(), accumulate);
        reference::structuredMixBackward(x.data(), vs.data(), vh.data(),
                                         dy.data(), dxRef.data(), dvsRef.data(),
                                         dvhRef.data(), s.batch, s.seq, s.d,
                                         toeplitz, accumulate);
        std::string what =
            describe(std::string(toeplitz ? "toeplitz" : "circulant") +
                         (accumulate ? " accumulate" : ""),
                     s);
        expectClose(dx, dxRef, kRelTol, what + " dx");
        expectClose(dvs, dvsRef, kRelTol, what + " dvs");
        expectClose(dvh, dvhRef, kRelTol, what + " dvh");
      }
}

TEST(StructuredMixBackwardTest, ReferenceMatchesFiniteDifferences) {
  // Also differentiates through the forward of both algorithms' shared
  // reference, so it covers layers run with the FFT algorithm.
  for (const MixShape &s : kSmallShapes)
    for (bool toeplitz : {false, true}) {
      int64_t n = s.batch * s.seq * s.d;
      int64_t ns = kernelSize(s.seq, toeplitz), nh = kernelSize(s.d, toeplitz);
      auto x = randomFloats(n, 26), dy = randomFloats(n, 27);
      auto vs = randomFloats(ns, 28), vh = randomFloats(nh, 29);
      std::vector<float> dx(n), dvs(ns), dvh(nh), y(n);
      reference::structuredMixBackward(
          x.data(), vs.data(), vh.data(), dy.data(), dx.data(), dvs.data(),
          dvh.data(), s.batch, s.seq, s.d, toeplitz, false);
      auto loss = [&] {
        reference::structuredMix(x.data(), vs.data(), vh.data(), y.data(),
                                 s.batch, s.seq, s.d, toeplitz);
        return weightedSum(y, dy);
      };
      std::string what = describe(toeplitz ? "toeplitz finite differences"
                                           : "circulant finite differences",
                                  s);
      expectClose(dx, finiteDifferences(x, kLinearStep, loss), kDifferenceTol,
                  what + " dx");
      expectClose(dvs, finiteDifferences(vs, kLinearStep, loss), kDifferenceTol,
                  what + " dvs");
      expectClose(dvh, finiteDifferences(vh, kLinearStep, loss), kDifferenceTol,
                  what + " dvh");
    }
}

TEST(StructuredMixBackwardTest, AdjointOfFftForward) {
  // dX is the adjoint of the FFT forward: <A X B^T, dY> = <X, dX>.
  const MixShape s{3, 24, 18};
  int64_t n = s.batch * s.seq * s.d;
  for (bool toeplitz : {false, true}) {
    auto x = randomFloats(n, 30), dy = randomFloats(n, 31);
    auto vs = randomFloats(kernelSize(s.seq, toeplitz), 32);
    auto vh = randomFloats(kernelSize(s.d, toeplitz), 33);
    std::vector<float> y(n), dx(n), dvs(vs.size()), dvh(vh.size());
    StructuredMix forward(s.batch, s.seq, s.d, toeplitz, MixAlgorithm::Fft);
    forward.run(x.data(), vs.data(), vh.data(), y.data());
    StructuredMixBackward backward(s.batch, s.seq, s.d, toeplitz);
    backward.run(x.data(), vs.data(), vh.data(), dy.data(), dx.data(),
                 dvs.data(), dvh.data(), false);
    double scale = std::sqrt(weightedSum(y, y) * weightedSum(dy, dy));
    EXPECT_NEAR(weightedSum(y, dy), weightedSum(x, dx), 1e-5 * scale)
        << (toeplitz ? "toeplitz" : "circulant");
  }
}

TEST(StructuredMixBackwardTest, ThreadCountDoesNotChangeBits) {
  const MixShape s{3, 200, 40};
  int64_t n = s.batch * s.seq * s.d;
  auto x = randomFloats(n, 34), dy = randomFloats(n, 35);
  for (bool toeplitz : {false, true}) {
    int64_t ns = kernelSize(s.seq, toeplitz), nh = kernelSize(s.d, toeplitz);
    auto vs = randomFloats(ns, 36), vh = randomFloats(nh, 37);
    StructuredMixBackward backward(s.batch, s.seq, s.d, toeplitz);
    test::expectThreadCountIndependent(
        n + ns + nh,
        [&](float *out) {
          backward.run(x.data(), vs.data(), vh.data(), dy.data(), out, out + n,
                       out + n + ns, false);
        },
        toeplitz ? "toeplitz backward" : "circulant backward");
  }
}

} // namespace
} // namespace mixer::cpu
