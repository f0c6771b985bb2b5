//===- ReferenceMixingMoeGradients.h - Plain backward twins -----*- C++ -*-===//
//
// Single-threaded, obviously correct implementations of every kernel in
// MixingMoeGradients.h, written from the forward semantics by the chain rule
// rather than from the optimized code: explicit matrices and loops, arithmetic
// in double, rounded to float on output. The spectral backward sums the
// transposed forward kernel directly; it does not rely on self-adjointness.
//
// Signatures match MixingMoeGradients.h, except that the mixing classes
// become plain functions and no scratch buffers are needed.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_REFERENCEMIXINGMOEGRADIENTS_H
#define MIXER_RUNTIME_CPU_REFERENCEMIXINGMOEGRADIENTS_H

#include "runtime/cpu/Kernels.h"

#include <cstdint>

namespace mixer::cpu::reference {

/// See mixer::cpu::linearMixBackward.
void linearMixBackward(const float *x, const float *ws, const float *wh,
                       const float *dy, float *dx, float *dws, float *dwh,
                       int64_t batch, int64_t seq, int64_t d, bool accumulate);

/// See mixer::cpu::spectralMixBackward: dX[i,j] = sum_{n,k} dY[n,k] *
/// K(n,k; i,j), the transpose of the forward kernel K written out.
void spectralMixBackward(const float *dy, float *dx, int64_t batch, int64_t seq,
                         int64_t d, bool hartley);

/// See mixer::cpu::StructuredMixBackward.
void structuredMixBackward(const float *x, const float *vs, const float *vh,
                           const float *dy, float *dx, float *dvs, float *dvh,
                           int64_t batch, int64_t seq, int64_t d, bool toeplitz,
                           bool accumulate);

/// See mixer::cpu::combineBackward.
void combineBackward(const float *yd, const int32_t *tokens, const float *gates,
                     const float *dout, float *dyd, float *dgates,
                     int64_t slots, int64_t numTokens, int64_t d);

/// See mixer::cpu::expertsForwardTraining.
void expertsForwardTraining(const float *xd, const int32_t *tokens,
                            const int32_t *offsets, const float *w1,
                            const float *b1, const float *w2, const float *b2,
                            float *yd, float *hiddenPreact, int64_t numExperts,
                            int64_t slots, int64_t d, int64_t f,
                            Activation act);

/// See mixer::cpu::expertsBackward.
void expertsBackward(const float *xd, const int32_t *tokens,
                     const int32_t *offsets, const float *w1, const float *w2,
                     const float *hiddenPreact, const float *dyd, float *dxd,
                     float *dw1, float *db1, float *dw2, float *db2,
                     int64_t numExperts, int64_t slots, int64_t d, int64_t f,
                     Activation act, bool accumulate);

/// See mixer::cpu::dispatchBackward.
void dispatchBackward(const float *dxd, const int32_t *tokens, float *dx,
                      int64_t slots, int64_t numTokens, int64_t d);

/// See mixer::cpu::routerGateBackward.
void routerGateBackward(Routing routing, const float *logits,
                        const int32_t *tokens, const int32_t *offsets,
                        const float *dgates, float *dscores, int64_t numTokens,
                        int64_t experts);

} // namespace mixer::cpu::reference

#endif // MIXER_RUNTIME_CPU_REFERENCEMIXINGMOEGRADIENTS_H
