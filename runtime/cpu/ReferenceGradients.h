//===- ReferenceGradients.h - Twins of the gradient kernels -----*- C++ -*-===//
//
// Single-threaded, obviously correct implementations of every kernel in
// TransformerGradients.h, written from the derivatives of the forward
// semantics rather than from the optimized code. Arithmetic is in double
// precision and rounded to float on output; signatures match
// TransformerGradients.h.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_REFERENCEGRADIENTS_H
#define MIXER_RUNTIME_CPU_REFERENCEGRADIENTS_H

#include "runtime/cpu/TransformerGradients.h"

#include <cstdint>

namespace mixer::cpu::reference {

/// See mixer::cpu::denseBackward.
void denseBackward(const float *x, const float *w, const float *dy, float *dx,
                   float *dw, float *db, int64_t m, int64_t k, int64_t n,
                   bool transposeW, bool accumulate);

/// See mixer::cpu::activationBackward.
void activationBackward(const float *preact, const float *dy, float *dx,
                        int64_t n, Activation act);

/// See mixer::cpu::activationBackwardFromOutput.
void activationBackwardFromOutput(const float *y, const float *dy, float *dx,
                                  int64_t n, Activation act);

/// See mixer::cpu::layerNormBackward (variance as E[v^2] - mean^2, clamped
/// at 0, as reference::layerNorm).
void layerNormBackward(const float *x, const float *residual,
                       const float *scale, const float *dy, float *dx,
                       float *dscale, float *dbias, int64_t rows, int64_t cols,
                       float eps, bool accumulate);

/// See mixer::cpu::softmaxBackward.
void softmaxBackward(const float *y, const float *dy, float *dx, int64_t rows,
                     int64_t cols);

/// See mixer::cpu::embedBackward (throws the same KernelError messages).
void embedBackward(const int32_t *ids, const int32_t *typeIds, const float *dy,
                   float *dword, float *dpos, float *dtype, int64_t batch,
                   int64_t seq, int64_t dEmb, int64_t vocab, int64_t posRows,
                   int64_t typeVocab, bool accumulate);

/// See mixer::cpu::attentionBackward: full rows of probabilities, with the
/// softmax correction taken as rowsum(dO o O) from the recomputed output
/// (the dropped probabilities' output under `dropout`).
void attentionBackward(const float *q, const float *k, const float *v,
                       const int32_t *ids, const float *dout, float *dq,
                       float *dk, float *dv, int64_t batch, int64_t seq,
                       int64_t heads, int64_t headDim, int32_t padId,
                       bool causal, const AttentionDropout &dropout = {});

/// See mixer::cpu::softmaxCrossEntropy.
float softmaxCrossEntropy(const float *logits, const int32_t *labels,
                          const float *weights, int64_t rows, int64_t classes,
                          float *dlogits, float lossScale);

/// See mixer::cpu::squaredError.
float squaredError(const float *pred, const float *target, int64_t rows,
                   float *dpred, float lossScale);

/// See mixer::cpu::gatherRows.
void gatherRows(const float *x, const int32_t *positions, float *y,
                int64_t batch, int64_t seq, int64_t d, int64_t numPositions);

/// See mixer::cpu::gatherRowsBackward.
void gatherRowsBackward(const float *dy, const int32_t *positions, float *dx,
                        int64_t batch, int64_t seq, int64_t d,
                        int64_t numPositions, bool accumulate);

} // namespace mixer::cpu::reference

#endif // MIXER_RUNTIME_CPU_REFERENCEGRADIENTS_H
