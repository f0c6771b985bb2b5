//===- RandomScale.h - Dropout and multiplicative jitter --------*- C++ -*-===//
//
// The noise of a training step as one kernel: y = x * r with r drawn per
// element from CounterUniforms, so that the gradient (the same kernel on dy)
// repeats the draw exactly.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_RANDOMSCALE_H
#define MIXER_RUNTIME_CPU_RANDOMSCALE_H

#include "runtime/cpu/CounterRandom.h"

#include <cstdint>

namespace mixer::cpu {

/// y[i] = x[i] * r_i over n values, u_i = uniforms.at(i):
///   dropout (inverted, rate in [0, 1)): y = u_i >= rate ? x / (1 - rate) : 0
///   jitter (rate in [0, 1]):            r = (1 - rate) + 2 rate u_i
/// in f32 arithmetic as the reference writes them. y may alias x.
void randomScale(const float *x, float *y, int64_t n, bool dropout, double rate,
                 const CounterUniforms &uniforms);

/// Inverted dropout of a run of n values whose element indices start at
/// `first`: y[i] = uniforms.at(first + i) >= rate ? x[i] / keep : 0 (keep
/// is 1 - rate, or 1 when the caller scales later). Single-threaded, for
/// kernels that drop within their own work items; y may alias x.
void dropoutRun(const float *x, float *y, int64_t n, uint64_t first,
                double rate, float keep, const CounterUniforms &uniforms);

} // namespace mixer::cpu

#endif // MIXER_RUNTIME_CPU_RANDOMSCALE_H
