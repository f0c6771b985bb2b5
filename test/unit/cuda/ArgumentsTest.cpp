//===- ArgumentsTest.cpp - Argument checks of the CUDA kernels ------------===//
//
// Bad arguments are reported before anything is enqueued, so these tests need
// no GPU (null pointers are never touched).
//
//===----------------------------------------------------------------------===//

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
  train::AdamWConfig config;
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

} // namespace
} // namespace mixer::cuda
