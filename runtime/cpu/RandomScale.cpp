//===- RandomScale.cpp - Dropout and multiplicative jitter ----------------===//

#include "runtime/cpu/RandomScale.h"

#include <algorithm>

namespace mixer::cpu {

void randomScale(const float *x, float *y, int64_t n, bool dropout, double rate,
                 const CounterUniforms &uniforms) {
  const float r = static_cast<float>(rate);
  const float keep = static_cast<float>(1.0 - rate);
  const float low = 1.0f - r, width = 2.0f * r;
  int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (blocks >= 4096)
  for (int64_t b = 0; b < blocks; ++b) {
    std::array<float, 4> u = uniforms.block(b);
    for (int64_t i = 4 * b, k = 0; i < std::min(n, 4 * b + 4); ++i, ++k)
      y[i] = dropout ? (u[k] >= rate ? x[i] / keep : 0.0f)
                     : x[i] * (low + width * u[k]);
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
