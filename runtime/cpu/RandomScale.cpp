//===- RandomScale.cpp - Dropout and multiplicative jitter ----------------===//

#include "runtime/cpu/RandomScale.h"

#include <algorithm>
#include <cmath>

namespace mixer::cpu {

void randomScale(const float *x, float *y, int64_t n, bool dropout, double rate,
                 const CounterUniforms &uniforms) {
  const float r = static_cast<float>(rate);
  // u is a multiple of 2^-24, so u >= rate exactly when u >= this float.
  const float keepFrom = static_cast<float>(std::ceil(rate * 0x1p24) * 0x1p-24);
  const float keep = static_cast<float>(1.0 - rate);
  // One rounding in the jitter factor, as the CUDA kernel computes it.
  const float low = 1.0f - r, width = 2.0f * r;
  constexpr int64_t kChunk = CounterUniforms::kBatchElements;
  int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks >= 256)
  for (int64_t c = 0; c < chunks; ++c) {
    float u[kChunk];
    uniforms.batch(c * (kChunk / 4), u);
    int64_t begin = c * kChunk, count = std::min(kChunk, n - begin);
    const float *xc = x + begin;
    float *yc = y + begin;
    if (dropout) {
      for (int64_t k = 0; k < count; ++k)
        yc[k] = u[k] >= keepFrom ? xc[k] / keep : 0.0f;
    } else {
      for (int64_t k = 0; k < count; ++k)
        yc[k] = xc[k] * std::fma(width, u[k], low);
    }
  }
}

void dropoutRun(const float *x, float *y, int64_t n, uint64_t first,
                double rate, float keep, const CounterUniforms &uniforms) {
  constexpr int64_t kBatch = CounterUniforms::kBatchElements;
  float batch[kBatch];
  for (int64_t i = 0; i < n;) {
    uint64_t index = first + i;
    // Whole batches of blocks where the run is aligned, single blocks at its
    // ends.
    std::array<float, 4> block;
    const float *u;
    int64_t count;
    if (index % 4 == 0 && n - i >= kBatch) {
      uniforms.batch(index / 4, batch);
      u = batch;
      count = kBatch;
    } else {
      block = uniforms.block(index / 4);
      u = block.data() + index % 4;
      count = std::min<int64_t>(4 - static_cast<int64_t>(index % 4), n - i);
    }
    for (int64_t j = 0; j < count; ++j)
      y[i + j] = u[j] >= rate ? x[i + j] / keep : 0.0f;
    i += count;
  }
}

} // namespace mixer::cpu
