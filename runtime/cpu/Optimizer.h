//===- Optimizer.h - AdamW and gradient clipping ----------------*- C++ -*-===//
//
// The optimizer of the reference training recipe, optax.adamw: Adam moments
// with bias correction, weight decay decoupled from them and applied to every
// parameter, the whole update scaled by the learning rate. Parameters,
// gradients and moments are f32 and the per-element arithmetic is the f32
// sequence the reference performs, one rounding per operation (no fused
// multiply-add), so results do not depend on the thread count or on the
// instruction set the library is built for.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_OPTIMIZER_H
#define MIXER_RUNTIME_CPU_OPTIMIZER_H

#include "runtime/support/KernelParameters.h"

#include <cstdint>
#include <vector>

namespace mixer::cpu {

/// Applies update number `step` (1-based: the first update is step 1) to the
/// `n` parameters, updating the moments `m` and `v` in place:
///   m = b1 m + (1 - b1) g            v = b2 v + (1 - b2) g^2
///   m_hat = m / (1 - b1^step)        v_hat = v / (1 - b2^step)
///   u = m_hat / (sqrt(v_hat) + eps) + weightDecay * param
///   param = param - lr * u
/// which is optax.adamw's chain scale_by_adam (eps_root 0), then
/// add_decayed_weights, then scale_by_learning_rate. The moments start at
/// zero before step 1. The reference evaluates its schedule at the count of
/// updates already applied: update `step` uses learningRate(schedule,
/// step - 1).
/// `gradScale` multiplies every gradient value first (global-norm clipping
/// inside a training plan); 1 leaves the gradients exactly as they are.
void adamwStep(float *param, const float *grad, float *m, float *v, int64_t n,
               double lr, int64_t step, const AdamWConfig &config,
               float gradScale = 1.0f);

/// The L2 norm of all the values together, sqrt(sum of squares), summed in
/// double in an order fixed by the tensor sizes alone (not by the thread
/// count).
double globalNorm(const std::vector<ConstValues> &tensors);

/// Multiplies every value by `factor` (rounded to f32 once).
void scaleGradients(const std::vector<Values> &tensors, double factor);

/// optax.clip_by_global_norm: when the global norm of the gradients is at
/// least `maxNorm`, scales them by maxNorm / norm, so that g becomes
/// g * min(1, maxNorm / norm). Returns the norm before clipping.
double clipByGlobalNorm(const std::vector<Values> &tensors, double maxNorm);

/// dst += src over n values (gradient accumulation over micro-steps).
void accumulate(float *dst, const float *src, int64_t n);

/// Divides every value by `microSteps` >= 1: the mean of gradients summed
/// over that many micro-steps with accumulate.
void averageGradients(const std::vector<Values> &tensors, int64_t microSteps);

/// Micro-step `microStep` (0-based) of an update of `microSteps` >= 2, over
/// n values: with s = accum + grad,
///   average = s / microSteps (correctly rounded)
///   accum   = microStep == microSteps - 1 ? 0 : s
/// so that on the last micro-step `average` is the mean gradient of the
/// update and the accumulator is zero for the next one.
void accumulateGradient(float *accum, const float *grad, float *average,
                        int64_t n, int64_t microStep, int64_t microSteps);

} // namespace mixer::cpu

#endif // MIXER_RUNTIME_CPU_OPTIMIZER_H
