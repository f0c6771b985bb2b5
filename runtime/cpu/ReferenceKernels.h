//===- ReferenceKernels.h - Plain reference twins of the kernels -*- C++
//-*-===//
//
// Single-threaded, obviously correct implementations of every kernel in
// Kernels.h, written from the model semantics (docs/parameters.md and the
// routing rules of the mixer dialect) rather than from the optimized code.
// Arithmetic is in double precision and rounded to float on output, so they
// serve as the accuracy reference of the unit tests.
//
// Signatures match Kernels.h, except that the mixing classes become plain
// functions and linearMix needs no scratch buffer.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_REFERENCEKERNELS_H
#define MIXER_RUNTIME_CPU_REFERENCEKERNELS_H

#include "runtime/cpu/Kernels.h"

#include <cstdint>

namespace mixer::cpu::reference {

/// The activation in double precision (Gelu is the tanh approximation,
/// GeluErf the exact x * Phi(x)).
double applyActivation(double x, Activation act);

/// d applyActivation / dx at x, in double precision.
double activationDerivative(double x, Activation act);

/// See mixer::cpu::dense.
void dense(const float *x, const float *w, const float *bias, float *y,
           int64_t m, int64_t k, int64_t n, bool transposeW, Activation act);

/// See mixer::cpu::batchedMatmul.
void batchedMatmul(const float *a, const float *b, float *y, int64_t batch,
                   int64_t m, int64_t k, int64_t n, int64_t strideA,
                   int64_t strideB, int64_t strideY);

/// See mixer::cpu::layerNorm (variance as E[v^2] - mean^2, clamped at 0).
void layerNorm(const float *x, const float *residual, const float *scale,
               const float *bias, float *y, int64_t rows, int64_t cols,
               float eps);

/// See mixer::cpu::activation.
void activation(const float *x, float *y, int64_t n, Activation act);

/// See mixer::cpu::add.
void add(const float *a, const float *b, float *y, int64_t n);

/// See mixer::cpu::roundToBf16: picks the nearer of the two bfloat16 values
/// around x, the one with an even last bit on a tie.
void roundToBf16(const float *x, float *y, int64_t n);

/// See mixer::cpu::softmax.
void softmax(const float *x, float *y, int64_t rows, int64_t cols);

/// See mixer::cpu::takePosition.
void takePosition(const float *x, float *y, int64_t batch, int64_t seq,
                  int64_t d, int64_t index);

/// See mixer::cpu::pool.
void pool(const float *x, const int32_t *ids, float *y, int64_t batch,
          int64_t seq, int64_t d, PoolMode mode, bool normalize, int32_t padId);

/// See mixer::cpu::embed (throws the same KernelError messages).
void embed(const int32_t *ids, const int32_t *typeIds, const float *word,
           const float *pos, const float *type, float *y, int64_t batch,
           int64_t seq, int64_t dEmb, int64_t vocab, int64_t typeVocab);

/// See mixer::cpu::linearMix.
void linearMix(const float *x, const float *ws, const float *wh, float *y,
               int64_t batch, int64_t seq, int64_t d);

/// See mixer::cpu::SpectralMix: the 2-D DFT as direct sums, one axis at a
/// time.
void spectralMix(const float *x, float *y, int64_t batch, int64_t seq,
                 int64_t d, bool hartley);

/// See mixer::cpu::StructuredMix: explicit matrices multiplied out.
void structuredMix(const float *x, const float *vs, const float *vh, float *y,
                   int64_t batch, int64_t seq, int64_t d, bool toeplitz);

/// See mixer::cpu::circulantMatrix.
void circulantMatrix(const float *v, float *out, int64_t n);

/// See mixer::cpu::toeplitzMatrix.
void toeplitzMatrix(const float *t, float *out, int64_t n);

/// See mixer::cpu::attention.
void attention(const float *q, const float *k, const float *v,
               const int32_t *ids, float *out, int64_t batch, int64_t seq,
               int64_t heads, int64_t headDim, int32_t padId, bool causal,
               const AttentionDropout &dropout = {});

/// The factor of element `index` of the [batch, heads, seq, seq] attention
/// probabilities under `dropout`: 1 / (1 - rate) if kept, 0 if dropped, 1
/// when the dropout is inactive.
double attentionDropoutFactor(const AttentionDropout &dropout, uint64_t index);

/// See mixer::cpu::routeExpertsChoose.
void routeExpertsChoose(const float *probs, int32_t *tokens, float *gates,
                        int32_t *offsets, int64_t groups,
                        int64_t tokensPerGroup, int64_t experts,
                        int64_t capacity);

/// See mixer::cpu::routeTokensChoose; follows the one-hot / cumulative-sum
/// formulation of the reference router.
void routeTokensChoose(const float *probs, int32_t *tokens, float *gates,
                       int32_t *offsets, int64_t groups, int64_t tokensPerGroup,
                       int64_t experts, int64_t k, int64_t capacity,
                       bool batchPrioritized);

/// See mixer::cpu::routeSigmoidTopK.
void routeSigmoidTopK(const float *logits, int32_t *tokens, float *gates,
                      int32_t *offsets, int64_t numTokens, int64_t experts,
                      int64_t k);

/// See mixer::cpu::dispatch.
void dispatch(const float *x, const int32_t *tokens, float *xd, int64_t slots,
              int64_t numTokens, int64_t d);

/// See mixer::cpu::experts.
void experts(const float *xd, const int32_t *tokens, const int32_t *offsets,
             const float *w1, const float *b1, const float *w2, const float *b2,
             float *yd, int64_t numExperts, int64_t slots, int64_t d, int64_t f,
             Activation act);

/// See mixer::cpu::combine.
void combine(const float *yd, const int32_t *tokens, const float *gates,
             float *out, int64_t slots, int64_t numTokens, int64_t d);

/// See mixer::cpu::routerZLoss.
float routerZLoss(const float *logits, int64_t numTokens, int64_t experts);

/// See mixer::cpu::loadBalancingLoss: the one-hot mask and the per-group means
/// written out as arrays.
float loadBalancingLoss(const float *probs, int64_t groups,
                        int64_t tokensPerGroup, int64_t experts, int64_t k);

} // namespace mixer::cpu::reference

#endif // MIXER_RUNTIME_CPU_REFERENCEKERNELS_H
