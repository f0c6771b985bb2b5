//===- Optimizer.cpp - AdamW and gradient clipping ------------------------===//

#include "runtime/cpu/Optimizer.h"

#include <algorithm>
#include <cassert>
#include <cmath>

namespace mixer::cpu {

namespace {

/// Below this many values a loop runs on one thread.
constexpr int64_t kParallelValues = 1 << 15;
/// globalNorm sums blocks of this many values independently; the block
/// boundaries, hence the rounding, depend only on the tensor sizes.
constexpr int64_t kNormBlock = 1 << 14;
/// Independent partial sums inside a block, so that the loop vectorizes
/// without reassociating a single sum.
constexpr int kNormLanes = 8;

/// The sum of squares of n values, in double.
double sumOfSquares(const float *x, int64_t n) {
  double lanes[kNormLanes] = {};
  int64_t i = 0;
  for (; i + kNormLanes <= n; i += kNormLanes)
    for (int k = 0; k < kNormLanes; ++k) {
      double value = x[i + k];
      lanes[k] += value * value;
    }
  for (int k = 0; i < n; ++i, ++k) {
    double value = x[i];
    lanes[k] += value * value;
  }
  double sum = 0.0;
  for (double lane : lanes)
    sum += lane;
  return sum;
}

/// Multiplies n values by f.
void scaleValues(float *x, int64_t n, float f) {
#pragma omp parallel for schedule(static) if (n >= kParallelValues)
  for (int64_t i = 0; i < n; ++i)
    x[i] *= f;
}

} // namespace

void adamwStep(float *param, const float *grad, float *m, float *v, int64_t n,
               double lr, int64_t step, const AdamWConfig &config,
               float gradScale) {
  assert(validateAdamW(config).ok() && step >= 1 && n >= 0 &&
         "adamwStep with an invalid configuration, step or size");
  // The scalars are computed in double and rounded to f32 once, as the
  // reference folds its Python-float constants into f32 operands.
  const float b1 = static_cast<float>(config.b1);
  const float b2 = static_cast<float>(config.b2);
  const float oneMinusB1 = static_cast<float>(1.0 - config.b1);
  const float oneMinusB2 = static_cast<float>(1.0 - config.b2);
  const float correction1 =
      static_cast<float>(1.0 - std::pow(config.b1, static_cast<double>(step)));
  const float correction2 =
      static_cast<float>(1.0 - std::pow(config.b2, static_cast<double>(step)));
  const float eps = static_cast<float>(config.eps);
  const float decay = static_cast<float>(config.weightDecay);
  const float rate = static_cast<float>(lr);
#pragma omp parallel for simd schedule(static) if (n >= kParallelValues)
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i] * gradScale;
    float mi = b1 * m[i] + oneMinusB1 * g;
    float vi = b2 * v[i] + oneMinusB2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    float mHat = mi / correction1;
    float vHat = vi / correction2;
    float update = mHat / (std::sqrt(vHat) + eps) + decay * param[i];
    param[i] -= rate * update;
  }
}

double globalNorm(const std::vector<ConstValues> &tensors) {
  std::vector<ConstValues> blocks;
  for (const auto &[data, n] : tensors)
    for (int64_t offset = 0; offset < n; offset += kNormBlock)
      blocks.emplace_back(data + offset, std::min(kNormBlock, n - offset));
  std::vector<double> partial(blocks.size());
  int64_t numBlocks = static_cast<int64_t>(blocks.size());
#pragma omp parallel for schedule(static) if (numBlocks > 1)
  for (int64_t b = 0; b < numBlocks; ++b)
    partial[b] = sumOfSquares(blocks[b].first, blocks[b].second);
  double total = 0.0;
  for (double sum : partial)
    total += sum;
  return std::sqrt(total);
}

void scaleGradients(const std::vector<Values> &tensors, double factor) {
  for (const auto &[data, n] : tensors)
    scaleValues(data, n, static_cast<float>(factor));
}

double clipByGlobalNorm(const std::vector<Values> &tensors, double maxNorm) {
  assert(maxNorm > 0.0 && "clipByGlobalNorm with a non-positive bound");
  double norm =
      globalNorm(std::vector<ConstValues>(tensors.begin(), tensors.end()));
  if (norm >= maxNorm)
    scaleGradients(tensors, maxNorm / norm);
  return norm;
}

void accumulate(float *dst, const float *src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelValues)
  for (int64_t i = 0; i < n; ++i)
    dst[i] += src[i];
}

void averageGradients(const std::vector<Values> &tensors, int64_t microSteps) {
  assert(microSteps >= 1 && "averageGradients over no micro-step");
  // A division rather than a multiplication by the reciprocal: the mean is
  // then correctly rounded.
  const float count = static_cast<float>(microSteps);
  for (const Values &tensor : tensors) {
    float *data = tensor.first;
    int64_t n = tensor.second;
#pragma omp parallel for schedule(static) if (n >= kParallelValues)
    for (int64_t i = 0; i < n; ++i)
      data[i] /= count;
  }
}

void accumulateGradient(float *accum, const float *grad, float *average,
                        int64_t n, int64_t microStep, int64_t microSteps) {
  assert(microStep >= 0 && microStep < microSteps &&
         "accumulateGradient outside the update's micro-steps");
  const float count = static_cast<float>(microSteps);
  const bool last = microStep == microSteps - 1;
#pragma omp parallel for simd schedule(static) if (n >= kParallelValues)
  for (int64_t i = 0; i < n; ++i) {
    float sum = accum[i] + grad[i];
    average[i] = sum / count;
    accum[i] = last ? 0.0f : sum;
  }
}

} // namespace mixer::cpu
