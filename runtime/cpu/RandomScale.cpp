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

} // namespace mixer::cpu
