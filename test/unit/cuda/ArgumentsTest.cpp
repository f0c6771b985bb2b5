//===- ArgumentsTest.cpp - Argument checks of the CUDA kernels ------------===//
//
// Bad arguments are reported before anything is enqueued, so these tests need
// no GPU (null pointers are never touched).
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Gemm.h"
#include "runtime/cuda/Kernels.h"

#include <gtest/gtest.h>

namespace mixer::cuda {
namespace {

void expectError(const Status &status, const std::string &message) {
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(), message);
}

TEST(CudaArguments, ShapesAndRates) {
  expectError(layerNorm(static_cast<const float *>(nullptr), nullptr, nullptr,
                        nullptr, static_cast<float *>(nullptr), -1, 4, 1e-5f,
                        nullptr),
              "layer_norm: rows -1 is negative");
  expectError(softmax(static_cast<const float *>(nullptr),
                      static_cast<float *>(nullptr), 2, -3, nullptr),
              "softmax: cols -3 is negative");
  expectError(randomScale(static_cast<const float *>(nullptr),
                          static_cast<float *>(nullptr), 4, true, 1.0, {},
                          nullptr),
              "random_scale: rate 1.000000 is outside [0, 1) for dropout");
  expectError(softmaxCrossEntropy(static_cast<const float *>(nullptr), nullptr,
                                  nullptr, static_cast<float *>(nullptr),
                                  nullptr, 3, 0, 1.0f, nullptr),
              "softmax_cross_entropy: no classes");
}

TEST(CudaArguments, Optimizer) {
  AdamWConfig config;
  expectError(adamwStep(nullptr, nullptr, nullptr, nullptr, 4, 1e-3, 0, config,
                        nullptr, nullptr),
              "adamw: step 0 is not positive");
  config.b1 = 1.0;
  EXPECT_FALSE(adamwStep(nullptr, nullptr, nullptr, nullptr, 4, 1e-3, 1, config,
                         nullptr, nullptr)
                   .ok());
  expectError(clipScale(nullptr, 0.0, nullptr, nullptr),
              "clip_scale: the bound 0.000000 is not positive");
}

TEST(CudaArguments, Routing) {
  expectError(routeExpertsChoose(nullptr, nullptr, nullptr, nullptr, nullptr, 1,
                                 4, 2, 5, nullptr),
              "route_experts_choose: capacity 5 is outside [0, 4]");
  expectError(routeTokensChoose(nullptr, nullptr, nullptr, nullptr, 1, 4, 2, 3,
                                2, true, nullptr),
              "route_tokens_choose: k 3 is outside [0, 2]");
  expectError(
      routeSigmoidTopK(nullptr, nullptr, nullptr, nullptr, 4, 0, 1, nullptr),
      "route_sigmoid_topk: experts 0 is outside [1, 16777216]");
}

TEST(CudaArguments, Gemm) {
  // A context touches no device until its first valid product.
  GemmContext context(nullptr);
  float data = 0.0f;
  GemmProblem<float> p;
  p.n = 3;
  p.k = 2;
  p.a = p.b = &data;
  p.c = &data;
  p.lda = 2;
  p.ldb = 3;
  p.ldc = 3;
  p.m = -1;
  expectError(context.gemm(p), "gemm: m -1 is negative");
  p.m = 4;
  p.lda = 1;
  expectError(context.gemm(p), "gemm: lda 1 is less than the row length 2");
  p.lda = 2;
  // A transposed is stored [k, m]: its rows hold m values.
  p.transA = true;
  expectError(context.gemm(p), "gemm: lda 2 is less than the row length 4");
  p.transA = false;
  p.c = nullptr;
  expectError(context.gemm(p), "gemm: a null A, B or C");
}

TEST(CudaArguments, GemmEpilogues) {
  GemmContext context(nullptr);
  Bf16 data{0};
  GemmProblem<Bf16> p;
  p.m = 4;
  p.n = 12;
  p.k = 2;
  p.a = p.b = &data;
  p.c = &data;
  p.lda = 2;
  p.ldb = 12;
  p.ldc = 12;
  p.epilogue = GemmEpilogue::Bias;
  expectError(context.gemm(p), "gemm: epilogue bias needs a bias");
  p.epilogue = GemmEpilogue::GeluAux;
  p.aux = &data;
  p.ldAux = 12;
  expectError(context.gemm(p),
              "gemm: ldAux 12 is not a multiple of 8 at least n 12");
  p.epilogue = GemmEpilogue::BiasGradB;
  expectError(context.gemm(p), "gemm: epilogue bias_grad_b needs a bias "
                               "gradient");
  float grad = 0.0f;
  p.biasGrad = &grad;
  p.transB = true;
  p.ldb = 2;
  expectError(context.gemm(p),
              "gemm: epilogue bias_grad_b needs B untransposed");
  p.k = 0;
  expectError(context.gemm(p), "gemm: k is 0 for a [4, 12] product");
  // Empty products are no-ops, even without a device.
  p.m = 0;
  EXPECT_TRUE(context.gemm(p).ok());
}

TEST(CudaArguments, Attention) {
  AttentionConfig config;
  config.batch = 2;
  config.seq = 8;
  config.heads = 2;
  config.headDim = 129;
  const float *none = nullptr;
  expectError(attention(none, none, none, nullptr, nullptr, config, nullptr),
              "attention: head_dim 129 is outside [1, 128]");
  config.headDim = 64;
  config.seq = -3;
  expectError(attention(none, none, none, nullptr, nullptr, config, nullptr),
              "attention: seq -3 is negative");
  config.seq = 8;
  config.dropoutRate = 1.0;
  expectError(attentionBackward(none, none, none, none, none, nullptr, nullptr,
                                nullptr, nullptr, config, nullptr),
              "attention_backward: dropout rate 1.000000 is outside [0, 1)");
  config.dropoutRate = 0.1;
  float grad = 0.0f;
  expectError(attentionBackward(none, none, none, none, none, nullptr, &grad,
                                nullptr, nullptr, config, nullptr),
              "attention_backward: needs the forward's output, its gradient "
              "and the row logsumexp");
}

TEST(CudaArguments, SigmaMoe) {
  for (double rate : {-0.1, 1.0})
    expectError(dropExperts(nullptr, nullptr, 4, rate, 0.0f, {}, nullptr),
                "drop_experts: rate " + std::to_string(rate) +
                    " is outside [0, 1)");
  expectError(entropyRegularizer(nullptr, nullptr, 0, 4, nullptr, nullptr),
              "entropy_regularizer: 0 tokens and 4 experts, but at least one "
              "of each is needed");
  expectError(
      entropyRegularizerGrad(nullptr, nullptr, nullptr, 3, 0, nullptr, nullptr),
      "entropy_regularizer_grad: 3 tokens and 0 experts, but at least one of "
      "each is needed");
  GroupedExperts g;
  g.slots = 4, g.experts = 2, g.d = 3, g.f = 0;
  expectError(groupedExperts(static_cast<const float *>(nullptr), nullptr,
                             nullptr, nullptr, nullptr,
                             static_cast<float *>(nullptr), nullptr, g,
                             nullptr),
              "experts: the widths 3 x 0 must be at least 1");
  g.f = 2, g.experts = 70000;
  expectError(groupedExpertsBackward(static_cast<const Bf16 *>(nullptr),
                                     nullptr, nullptr, nullptr, nullptr,
                                     nullptr, nullptr, nullptr, nullptr,
                                     nullptr, nullptr, g, nullptr),
              "experts_grad: 4 slots, 70000 experts or the widths 3 x 2 "
              "exceed the grid limits");
  g.experts = 2, g.slots = -1;
  expectError(groupedExperts(static_cast<const float *>(nullptr), nullptr,
                             nullptr, nullptr, nullptr,
                             static_cast<float *>(nullptr), nullptr, g,
                             nullptr),
              "experts: slots -1 is negative");
}

TEST(CudaArguments, Mixing) {
  GemmContext gemm(nullptr);
  for (MixAlgorithm algorithm : {MixAlgorithm::Fft, MixAlgorithm::Matmul}) {
    SpectralMix spectral(2, 0, 4, false, algorithm);
    expectError(spectral.prepare(nullptr),
                "spectral_mix: shape [2, 0, 4] must be positive");
    StructuredMix structured(2, 3, -1, true, algorithm);
    expectError(structured.prepare(),
                "structured_mix: shape [2, 3, -1] must be positive");
  }
  // Running before prepare() made the device resources.
  expectError(
      SpectralMix(2, 3, 4, true, MixAlgorithm::Fft).run(nullptr, nullptr, gemm),
      "spectral_mix: prepare() has not made the cuFFT plan");
  expectError(SpectralMix(2, 3, 4, false, MixAlgorithm::Matmul)
                  .run(nullptr, nullptr, gemm),
              "spectral_mix: prepare() has not made the DFT matrices");
  expectError(StructuredMix(2, 3, 4, false, MixAlgorithm::Fft)
                  .run(nullptr, nullptr, nullptr, nullptr, gemm),
              "structured_mix: prepare() has not made the cuFFT plans");
  expectError(structuredMixBackward(nullptr, nullptr, nullptr, nullptr, nullptr,
                                    nullptr, nullptr, 0, 3, 4, false, gemm),
              "structured_mix_grad: shape [0, 3, 4] must be positive");
}

TEST(CudaArguments, StructuredMixTransformGrid) {
  // Circulant mixing transforms the [seq, d] grid itself.
  StructuredMix circulant(1, 11, 13, false, MixAlgorithm::Fft);
  EXPECT_EQ(circulant.fftRows(), 11);
  EXPECT_EQ(circulant.fftCols(), 13);
  // Toeplitz mixing: the smallest length >= 2n - 1 without a prime factor
  // above 7.
  for (auto [n, length] : {std::pair<int64_t, int64_t>{1, 1},
                           {5, 9},
                           {7, 14},
                           {12, 24},
                           {16, 32},
                           {27, 54},
                           {71, 144},
                           {128, 256}}) {
    StructuredMix toeplitz(1, n, 4, true, MixAlgorithm::Fft);
    EXPECT_EQ(toeplitz.fftRows(), length) << n;
    EXPECT_EQ(toeplitz.fftCols(), 7);
  }
}

} // namespace
} // namespace mixer::cuda
