//===- MixingTest.cpp - GPU token mixing against the CPU references -------===//
//
// Fourier and Hartley mixing and circulant and Toeplitz mixing by both
// algorithms (cuFFT and cuBLASLt), and their gradients, against the plain
// references of runtime/cpu (direct DFT sums and explicit matrices in
// double; the spectral gradient as the transposed kernel written out), on odd
// and even shapes: 1e-4 relative with the RMS floor of expectClose.
//
//===----------------------------------------------------------------------===//

#include "CudaTestUtil.h"
#include "runtime/cpu/ReferenceKernels.h"
#include "runtime/cpu/ReferenceMixingMoeGradients.h"
#include "runtime/cuda/Gemm.h"

#include <tuple>

namespace mixer::cuda::test {
namespace {

constexpr double kMixTol = 1e-4;

struct Shape {
  int64_t batch, seq, d;
};

/// Odd and even sizes (the Nyquist column of an even d, the mirror rows of
/// an odd seq) and a batch of one.
const Shape kShapes[] = {{3, 5, 7}, {2, 9, 16}, {1, 12, 11}, {2, 2, 3}};

const MixAlgorithm kAlgorithms[] = {MixAlgorithm::Fft, MixAlgorithm::Matmul};

std::string describe(const Shape &s, const char *kind, MixAlgorithm algorithm) {
  return std::string(kind) +
         (algorithm == MixAlgorithm::Fft ? " fft " : " matmul ") +
         std::to_string(s.batch) + "x" + std::to_string(s.seq) + "x" +
         std::to_string(s.d);
}

/// `mix` run once on `input`, prepared first.
std::vector<float> runSpectral(SpectralMix &mix, GemmContext &gemm,
                               const std::vector<float> &input) {
  EXPECT_TRUE(mix.prepare(nullptr).ok());
  DeviceArray<float> x(input), y(input.size(), -7.0f);
  Status status = mix.run(x.get(), y.get(), gemm);
  EXPECT_TRUE(status.ok()) << status.message();
  return y.read();
}

/// The plan's spectral gradient step is the same mixing applied to dY, so
/// one kernel serves both references: the forward and its adjoint.
TEST(CudaMixing, SpectralMixAndGradientMatchReferences) {
  using Reference =
      void (*)(const float *, float *, int64_t, int64_t, int64_t, bool);
  GemmContext gemm(nullptr);
  for (auto [name, reference] :
       {std::pair<const char *, Reference>{"forward",
                                           cpu::reference::spectralMix},
        {"gradient", cpu::reference::spectralMixBackward}})
    for (const Shape &s : kShapes)
      for (bool hartley : {false, true})
        for (MixAlgorithm algorithm : kAlgorithms) {
          std::string what =
              std::string(name) + " " +
              describe(s, hartley ? "hartley" : "fourier", algorithm);
          SCOPED_TRACE(what);
          int64_t n = s.batch * s.seq * s.d;
          std::vector<float> x = randomFloats(n, 1, -2.0f, 2.0f), expected(n);
          reference(x.data(), expected.data(), s.batch, s.seq, s.d, hartley);
          SpectralMix mix(s.batch, s.seq, s.d, hartley, algorithm);
          expectClose(runSpectral(mix, gemm, x), expected, kMixTol, what);
        }
}

TEST(CudaMixing, SpectralMixRepeatsBitForBit) {
  GemmContext gemm(nullptr);
  for (MixAlgorithm algorithm : kAlgorithms) {
    SpectralMix mix(2, 9, 16, true, algorithm);
    std::vector<float> x = randomFloats(2 * 9 * 16, 3);
    std::vector<float> first = runSpectral(mix, gemm, x);
    expectBitwiseEqual(runSpectral(mix, gemm, x), first, "second run");
  }
}

/// Kernel vectors of a structured mixer over [seq, d].
std::pair<std::vector<float>, std::vector<float>>
kernels(const Shape &s, bool toeplitz, uint32_t seed) {
  return {randomFloats(toeplitz ? 2 * s.seq - 1 : s.seq, seed),
          randomFloats(toeplitz ? 2 * s.d - 1 : s.d, seed + 1)};
}

TEST(CudaMixing, StructuredMixMatchesReference) {
  GemmContext gemm(nullptr);
  for (const Shape &s : kShapes)
    for (bool toeplitz : {false, true})
      for (MixAlgorithm algorithm : kAlgorithms) {
        std::string what =
            describe(s, toeplitz ? "toeplitz" : "circulant", algorithm);
        SCOPED_TRACE(what);
        int64_t n = s.batch * s.seq * s.d;
        std::vector<float> x = randomFloats(n, 4, -2.0f, 2.0f), expected(n);
        auto [vs, vh] = kernels(s, toeplitz, 5);
        cpu::reference::structuredMix(x.data(), vs.data(), vh.data(),
                                      expected.data(), s.batch, s.seq, s.d,
                                      toeplitz);
        StructuredMix mix(s.batch, s.seq, s.d, toeplitz, algorithm);
        ASSERT_OK(mix.prepare());
        DeviceArray<float> dx(x), dvs(vs), dvh(vh), dy(n, -7.0f);
        // Twice: the second run must not depend on the first's temporaries.
        for (int run = 0; run < 2; ++run) {
          ASSERT_OK(mix.run(dx.get(), dvs.get(), dvh.get(), dy.get(), gemm));
          expectClose(dy.read(), expected, kMixTol, what);
        }
      }
}

TEST(CudaMixing, StructuredGradientMatchesReference) {
  GemmContext gemm(nullptr);
  for (const Shape &s : kShapes)
    for (bool toeplitz : {false, true}) {
      std::string what = describe(s, toeplitz ? "toeplitz" : "circulant",
                                  MixAlgorithm::Matmul);
      SCOPED_TRACE(what);
      int64_t n = s.batch * s.seq * s.d;
      std::vector<float> x = randomFloats(n, 6), dy = randomFloats(n, 7);
      auto [vs, vh] = kernels(s, toeplitz, 8);
      std::vector<float> dx(n), dvs(vs.size()), dvh(vh.size());
      cpu::reference::structuredMixBackward(
          x.data(), vs.data(), vh.data(), dy.data(), dx.data(), dvs.data(),
          dvh.data(), s.batch, s.seq, s.d, toeplitz, /*accumulate=*/false);
      DeviceArray<float> gx(x), gvs(vs), gvh(vh), gdy(dy), gdx(n, -7.0f),
          gdvs(vs.size(), -7.0f), gdvh(vh.size(), -7.0f);
      ASSERT_OK(structuredMixBackward(gx.get(), gvs.get(), gvh.get(), gdy.get(),
                                      gdx.get(), gdvs.get(), gdvh.get(),
                                      s.batch, s.seq, s.d, toeplitz, gemm));
      expectClose(gdx.read(), dx, kMixTol, what + " dx");
      expectClose(gdvs.read(), dvs, kMixTol, what + " dvs");
      expectClose(gdvh.read(), dvh, kMixTol, what + " dvh");
      // Deterministic: a second run gives the same bits.
      std::vector<float> first = gdvs.read();
      ASSERT_OK(structuredMixBackward(gx.get(), gvs.get(), gvh.get(), gdy.get(),
                                      gdx.get(), gdvs.get(), gdvh.get(),
                                      s.batch, s.seq, s.d, toeplitz, gemm));
      expectBitwiseEqual(gdvs.read(), first, what + " dvs again");
    }
}

/// Toeplitz mixing worked by hand: with Toep(t)[r,c] = t[1 + c - r] over 2
/// positions, t_s = [2, 3, 5] gives L = [[3, 5], [2, 3]] and t_h = [0, 0.5,
/// 1] gives R = [[0.5, 1], [0, 0.5]]. For X = [[1, 4], [10, 40]], L X =
/// [[53, 212], [32, 128]] and Y = L X R^T = [[238.5, 106], [144, 64]].
TEST(CudaMixing, ToeplitzByHand) {
  GemmContext gemm(nullptr);
  for (MixAlgorithm algorithm : kAlgorithms) {
    StructuredMix mix(1, 2, 2, true, algorithm);
    ASSERT_OK(mix.prepare());
    DeviceArray<float> x(std::vector<float>{1.0f, 4.0f, 10.0f, 40.0f}),
        vs(std::vector<float>{2.0f, 3.0f, 5.0f}),
        vh(std::vector<float>{0.0f, 0.5f, 1.0f}), y(4, 0.0f);
    ASSERT_OK(mix.run(x.get(), vs.get(), vh.get(), y.get(), gemm));
    std::vector<float> out = y.read(),
                       expected = {238.5f, 106.0f, 144.0f, 64.0f};
    for (size_t i = 0; i < 4; ++i)
      EXPECT_NEAR(out[i], expected[i], 1e-4f) << i;
  }
}

} // namespace
} // namespace mixer::cuda::test
