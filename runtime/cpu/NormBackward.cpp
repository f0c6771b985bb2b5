//===- NormBackward.cpp - Pointwise, LayerNorm and softmax gradients ------===//
//
// Row gradients (LayerNorm, softmax) run one row per iteration, pointwise
// gradients in fixed blocks, as their forward kernels do. The LayerNorm
// parameter gradients are column sums: each fixed block of rows writes its
// own partial sums, which are then added in block order.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Simd.h"
#include "runtime/cpu/TransformerGradients.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace mixer::cpu {
namespace {

using simd::VecF;
typedef double VecD __attribute__((vector_size(simd::kLanes * sizeof(double))));

/// Work below this many values stays on one thread.
constexpr int64_t kParallelValues = 1 << 15;
/// Values per block of the pointwise kernels.
constexpr int64_t kBlock = 1 << 14;
/// Rows per block of the LayerNorm parameter-gradient partial sums.
constexpr int64_t kRowBlock = 32;

/// dx = dy * derivative(v) over n values, in fixed blocks.
template <typename Derivative>
void scaleByDerivative(const float *v, const float *dy, float *dx, int64_t n,
                       Derivative derivative) {
  int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n >= kParallelValues)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    int64_t begin = blk * kBlock, end = std::min(n, begin + kBlock);
    simd::forChunks(end - begin, [&](int64_t i, int64_t count) {
      int64_t at = begin + i;
      simd::storeChunk(dx + at,
                       simd::loadChunk(dy + at, count) *
                           derivative(simd::loadChunk(v + at, count)),
                       count);
    });
  }
}

/// d/dx of GELU(x) = x * s with s = sigmoid(2u), u = c (x + a x^3):
/// s + 2 x s (1 - s) u', where 1 - s = e s with e = exp(-2u) does not cancel.
VecF geluDerivative(VecF x) {
  constexpr float c = 0.7978845608028654f, a = 0.044715f;
  VecF x2 = x * x;
  VecF e = simd::exp(-2.0f * c * (x + a * x * x2));
  VecF s = 1.0f / (1.0f + e);
  VecF du = c * (1.0f + 3.0f * a * x2);
  return s + 2.0f * x * s * (e * s) * du;
}

/// The derivative of the identity, and that of ReLU (0 at the kink).
VecF one(VecF) { return simd::splat(1.0f); }
VecF positive(VecF v) {
  return v > 0.0f ? simd::splat(1.0f) : simd::splat(0.0f);
}
/// tanh'(x) = 1 - tanh(x)^2 = 4e / (1 + e)^2 with e = exp(-2|x|), which
/// does not cancel where tanh saturates.
VecF tanhDerivative(VecF x) {
  VecF e = simd::exp(-2.0f * (x < 0.0f ? -x : x));
  VecF denominator = 1.0f + e;
  return 4.0f * e / (denominator * denominator);
}
/// tanh' from the output y = tanh(x).
VecF tanhDerivativeFromOutput(VecF y) { return 1.0f - y * y; }

/// Mean and 1/sqrt(var + eps) of one row of x + residual, summed in double
/// about the row's first value (no cancellation for a mean far from zero).
struct RowStats {
  float shift, meanOffset, rstd;
};

VecF loadSum(const float *x, const float *residual, int64_t i, int64_t count) {
  VecF v = simd::loadChunk(x + i, count);
  return residual ? v + simd::loadChunk(residual + i, count) : v;
}

RowStats rowStats(const float *x, const float *residual, int64_t cols,
                  float eps) {
  float shift = x[0] + (residual ? residual[0] : 0.0f);
  VecD sum = {}, squares = {};
  simd::forChunks(cols, [&](int64_t i, int64_t count) {
    VecF centred =
        simd::keepFirst(loadSum(x, residual, i, count) - shift, count);
    VecD wide = __builtin_convertvector(centred, VecD);
    sum += wide;
    squares += wide * wide;
  });
  double s1 = 0.0, s2 = 0.0;
  for (int64_t lane = 0; lane < simd::kLanes; ++lane) {
    s1 += sum[lane];
    s2 += squares[lane];
  }
  double meanOffset = s1 / static_cast<double>(cols);
  double variance =
      std::max(s2 / static_cast<double>(cols) - meanOffset * meanOffset, 0.0);
  return {shift, static_cast<float>(meanOffset),
          static_cast<float>(1.0 / std::sqrt(variance + eps))};
}

/// One row of the LayerNorm gradient. partialScale/partialBias (both or
/// neither null) receive dy * xhat and dy.
void layerNormBackwardRow(const float *x, const float *residual,
                          const float *scale, const float *dy, float *dx,
                          float *partialScale, float *partialBias, int64_t cols,
                          float eps) {
  RowStats stats = rowStats(x, residual, cols, eps);
  auto normalised = [&](int64_t i, int64_t count) {
    return ((loadSum(x, residual, i, count) - stats.shift) - stats.meanOffset) *
           stats.rstd;
  };
  // Tail lanes of dy load as zero, so they add nothing to the sums.
  VecF sumG = simd::splat(0.0f), sumGX = simd::splat(0.0f);
  simd::forChunks(cols, [&](int64_t i, int64_t count) {
    VecF xhat = normalised(i, count);
    VecF d = simd::loadChunk(dy + i, count);
    VecF g = d * simd::loadChunk(scale + i, count);
    sumG += g;
    sumGX += g * xhat;
    if (partialScale) {
      simd::storeChunk(partialScale + i,
                       simd::loadChunk(partialScale + i, count) + d * xhat,
                       count);
      simd::storeChunk(partialBias + i,
                       simd::loadChunk(partialBias + i, count) + d, count);
    }
  });
  float meanG = simd::reduceAdd(sumG) / static_cast<float>(cols);
  float meanGX = simd::reduceAdd(sumGX) / static_cast<float>(cols);
  if (!dx)
    return;
  simd::forChunks(cols, [&](int64_t i, int64_t count) {
    VecF g = simd::loadChunk(dy + i, count) * simd::loadChunk(scale + i, count);
    simd::storeChunk(dx + i,
                     stats.rstd * ((g - meanG) - normalised(i, count) * meanGX),
                     count);
  });
}

/// out[c] (+)= sum over blocks of partial[blk * stride + c], in block order.
void addPartials(const float *partial, int64_t blocks, int64_t stride,
                 int64_t cols, float *out, bool accumulate) {
  if (!out)
    return;
#pragma omp parallel for schedule(static) if (blocks * cols >= kParallelValues)
  for (int64_t c = 0; c < cols; ++c) {
    double sum = accumulate ? out[c] : 0.0;
    for (int64_t blk = 0; blk < blocks; ++blk)
      sum += partial[blk * stride + c];
    out[c] = static_cast<float>(sum);
  }
}

} // namespace

void activationBackward(const float *preact, const float *dy, float *dx,
                        int64_t n, Activation act) {
  switch (act) {
  case Activation::None:
    return scaleByDerivative(preact, dy, dx, n, one);
  case Activation::Gelu:
    return scaleByDerivative(preact, dy, dx, n, geluDerivative);
  case Activation::Tanh:
    return scaleByDerivative(preact, dy, dx, n, tanhDerivative);
  case Activation::Relu:
    return scaleByDerivative(preact, dy, dx, n, positive);
  case Activation::GeluErf:
    return scaleByDerivative(preact, dy, dx, n, simd::geluErfDerivative);
  }
}

void activationBackwardFromOutput(const float *y, const float *dy, float *dx,
                                  int64_t n, Activation act) {
  switch (act) {
  case Activation::None:
    return scaleByDerivative(y, dy, dx, n, one);
  case Activation::Gelu:
  case Activation::GeluErf:
    throw KernelError{"activation gradient from the output: gelu is not "
                      "invertible, keep its input instead"};
  case Activation::Tanh:
    return scaleByDerivative(y, dy, dx, n, tanhDerivativeFromOutput);
  case Activation::Relu:
    return scaleByDerivative(y, dy, dx, n, positive);
  }
}

void layerNormBackward(const float *x, const float *residual,
                       const float *scale, const float *dy, float *dx,
                       float *dscale, float *dbias, int64_t rows, int64_t cols,
                       float eps, bool accumulate) {
  if (cols == 0)
    return;
  bool parameters = dscale || dbias;
  int64_t blocks = (rows + kRowBlock - 1) / kRowBlock;
  // Per block: cols partial sums of dy * xhat, then cols of dy.
  std::vector<float> partial(parameters ? blocks * 2 * cols : 0, 0.0f);
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelValues)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    float *partialScale =
        parameters ? partial.data() + blk * 2 * cols : nullptr;
    float *partialBias = parameters ? partialScale + cols : nullptr;
    for (int64_t r = blk * kRowBlock; r < std::min(rows, (blk + 1) * kRowBlock);
         ++r)
      layerNormBackwardRow(x + r * cols,
                           residual ? residual + r * cols : nullptr, scale,
                           dy + r * cols, dx ? dx + r * cols : nullptr,
                           partialScale, partialBias, cols, eps);
  }
  if (!parameters)
    return;
  addPartials(partial.data(), blocks, 2 * cols, cols, dscale, accumulate);
  addPartials(partial.data() + cols, blocks, 2 * cols, cols, dbias, accumulate);
}

void softmaxBackward(const float *y, const float *dy, float *dx, int64_t rows,
                     int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelValues)
  for (int64_t r = 0; r < rows; ++r) {
    const float *yr = y + r * cols, *dyr = dy + r * cols;
    VecF dots = simd::splat(0.0f);
    simd::forChunks(cols, [&](int64_t i, int64_t count) {
      dots += simd::loadChunk(yr + i, count) * simd::loadChunk(dyr + i, count);
    });
    float dot = simd::reduceAdd(dots);
    simd::forChunks(cols, [&](int64_t i, int64_t count) {
      simd::storeChunk(dx + r * cols + i,
                       simd::loadChunk(yr + i, count) *
                           (simd::loadChunk(dyr + i, count) - dot),
                       count);
    });
  }
}

} // namespace mixer::cpu
