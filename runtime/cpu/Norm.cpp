//===- Norm.cpp - Normalisation and pointwise kernels ---------------------===//
//
// Row kernels (layerNorm, softmax) run one row per iteration with every pass
// over the row while it sits in L1; pointwise kernels run in fixed blocks.
// Both are split over the OpenMP threads; each value's arithmetic does not
// depend on the split.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Simd.h"
#include "runtime/support/Bf16Router.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace mixer::cpu {
namespace {

using simd::VecF;

/// Work below this many values stays on one thread.
constexpr int64_t kParallelValues = 1 << 15;
/// Values per block of the pointwise kernels.
constexpr int64_t kBlock = 1 << 14;

/// Runs `body(begin, end)` over [0, n) in blocks of kBlock, in parallel when
/// the work is large enough.
template <typename Body> void forBlocks(int64_t n, Body &&body) {
  int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n >= kParallelValues)
  for (int64_t blk = 0; blk < blocks; ++blk)
    body(blk * kBlock, std::min(n, (blk + 1) * kBlock));
}

template <Activation Act>
void activationImpl(const float *x, float *y, int64_t n) {
  forBlocks(n, [&](int64_t begin, int64_t end) {
    simd::forChunks(end - begin, [&](int64_t i, int64_t count) {
      simd::storeChunk(
          y + begin + i,
          simd::activate(simd::loadChunk(x + begin + i, count), Act), count);
    });
  });
}

void layerNormRow(const float *x, const float *residual, const float *scale,
                  const float *bias, float *y, int64_t cols, float eps) {
  // The statistics are taken about the row's first value, so that a mean far
  // from zero (relative to the spread) neither cancels the variance nor
  // rounds the centred values: v - mean = (v - shift) - meanOffset.
  const float *v = x;
  if (residual) {
    simd::forChunks(cols, [&](int64_t i, int64_t count) {
      simd::storeChunk(y + i,
                       simd::loadChunk(x + i, count) +
                           simd::loadChunk(residual + i, count),
                       count);
    });
    v = y;
  }
  float shift = v[0];
  VecF sum = simd::splat(0.0f);
  simd::forChunks(cols, [&](int64_t i, int64_t count) {
    sum += simd::loadChunk(v + i, count, shift) - shift;
  });
  float meanOffset = simd::reduceAdd(sum) / static_cast<float>(cols);
  // The variance about the mean equals E[v^2] - mean^2 without cancelling.
  VecF squares = simd::splat(0.0f);
  simd::forChunks(cols, [&](int64_t i, int64_t count) {
    VecF centred = (simd::loadChunk(v + i, count) - shift) - meanOffset;
    squares += simd::keepFirst(centred * centred, count);
  });
  float variance = simd::reduceAdd(squares) / static_cast<float>(cols);
  float rstd = 1.0f / std::sqrt(variance + eps);
  simd::forChunks(cols, [&](int64_t i, int64_t count) {
    VecF centred = (simd::loadChunk(v + i, count) - shift) - meanOffset;
    simd::storeChunk(y + i,
                     centred * rstd * simd::loadChunk(scale + i, count) +
                         simd::loadChunk(bias + i, count),
                     count);
  });
}

} // namespace

void layerNorm(const float *x, const float *residual, const float *scale,
               const float *bias, float *y, int64_t rows, int64_t cols,
               float eps) {
  if (cols == 0)
    return;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelValues)
  for (int64_t r = 0; r < rows; ++r)
    layerNormRow(x + r * cols, residual ? residual + r * cols : nullptr, scale,
                 bias, y + r * cols, cols, eps);
}

void activation(const float *x, float *y, int64_t n, Activation act) {
  switch (act) {
  case Activation::None:
    if (x != y)
      forBlocks(n, [&](int64_t begin, int64_t end) {
        std::memcpy(y + begin, x + begin, (end - begin) * sizeof(float));
      });
    return;
  case Activation::Gelu:
    return activationImpl<Activation::Gelu>(x, y, n);
  case Activation::Tanh:
    return activationImpl<Activation::Tanh>(x, y, n);
  case Activation::Relu:
    return activationImpl<Activation::Relu>(x, y, n);
  case Activation::GeluErf:
    return activationImpl<Activation::GeluErf>(x, y, n);
  }
}

void add(const float *a, const float *b, float *y, int64_t n) {
  forBlocks(n, [&](int64_t begin, int64_t end) {
    simd::forChunks(end - begin, [&](int64_t i, int64_t count) {
      int64_t at = begin + i;
      simd::storeChunk(y + at,
                       simd::loadChunk(a + at, count) +
                           simd::loadChunk(b + at, count),
                       count);
    });
  });
}

void roundToBf16(const float *x, float *y, int64_t n) {
  forBlocks(n, [&](int64_t begin, int64_t end) {
    simd::forChunks(end - begin, [&](int64_t i, int64_t count) {
      int64_t at = begin + i;
      simd::VecU bits = (simd::VecU)simd::loadChunk(x + at, count);
      // Round to nearest even on the upper 16 bits: add 0x7fff plus the
      // lowest kept bit, then clear the low half. NaNs are only quieted, so
      // the carry cannot turn them into infinities.
      simd::VecU rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
      auto isNan = (bits & 0x7fffffffu) > 0x7f800000u;
      simd::VecU quiet = (bits | 0x00400000u) & 0xffff0000u;
      simd::VecU result = isNan ? quiet : rounded;
      simd::storeChunk(y + at, (VecF)result, count);
    });
  });
}

void softmax(const float *x, float *y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelValues)
  for (int64_t r = 0; r < rows; ++r)
    simd::scaleRow(y + r * cols, y + r * cols, cols,
                   1.0f /
                       simd::exponentiateRow(x + r * cols, y + r * cols, cols));
}

void routerLogitsBf16(const float *products, const float *bias, float *y,
                      int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelValues)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      y[r * cols + c] = bf16::routerLogit(products[r * cols + c], bias[c]);
}

void routerSoftmaxBf16(const float *x, float *y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelValues)
  for (int64_t r = 0; r < rows; ++r)
    bf16::routerSoftmaxRow(x + r * cols, y + r * cols, cols);
}

void takePosition(const float *x, float *y, int64_t batch, int64_t seq,
                  int64_t d, int64_t index) {
  for (int64_t b = 0; b < batch; ++b)
    std::memcpy(y + b * d, x + (b * seq + index) * d, d * sizeof(float));
}

void pool(const float *x, const int32_t *ids, float *y, int64_t batch,
          int64_t seq, int64_t d, PoolMode mode, bool normalize,
          int32_t padId) {
  for (int64_t b = 0; b < batch; ++b) {
    float *out = y + b * d;
    const float *rows = x + b * seq * d;
    int64_t count = 1;
    if (mode == PoolMode::Cls) {
      std::memcpy(out, rows, d * sizeof(float));
    } else {
      std::fill_n(out, d, 0.0f);
      count = 0;
      for (int64_t s = 0; s < seq; ++s) {
        if (ids[b * seq + s] == padId)
          continue;
        ++count;
        simd::forChunks(d, [&](int64_t i, int64_t n) {
          simd::storeChunk(out + i,
                           simd::loadChunk(out + i, n) +
                               simd::loadChunk(rows + s * d + i, n),
                           n);
        });
      }
    }
    double sumSquares = 0.0;
    for (int64_t c = 0; c < d; ++c) {
      out[c] /= static_cast<float>(std::max<int64_t>(count, 1));
      sumSquares += double(out[c]) * out[c];
    }
    if (normalize)
      simd::scaleRow(
          out, out, d,
          static_cast<float>(1.0 / std::max(std::sqrt(sumSquares), 1e-12)));
  }
}

} // namespace mixer::cpu
