//===- TransformerGradients.h - Transformer backward kernels ----*- C++ -*-===//
//
// Gradients of the dense, pointwise, normalisation, embedding and attention
// kernels of Kernels.h, and the training losses with their gradients. The
// backward graph the compiler builds calls these; each has a plain
// double-precision twin in ReferenceGradients.h.
//
// Conventions: arrays are row-major f32 (ids and labels int32); a gradient
// output named d<x> receives dLoss/d<x>. Gradients of activations are always
// overwritten. Gradients of parameters are overwritten, or added into the
// existing contents when `accumulate` is set (tied or shared weights receive
// several contributions). Any gradient output may be null when it is not
// needed. As in Kernels.h, results are bitwise independent of the thread
// count: every reduction runs in an order fixed by the shapes alone.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_TRANSFORMERGRADIENTS_H
#define MIXER_RUNTIME_CPU_TRANSFORMERGRADIENTS_H

#include "runtime/cpu/Kernels.h"

#include <cstdint>

namespace mixer::cpu {

//===----------------------------------------------------------------------===//
// Dense, pointwise and normalisation gradients
//===----------------------------------------------------------------------===//

/// Gradient of y[m,n] = x[m,k] * W + b (the `dense` kernel without its
/// activation; chain activationBackward first). W is [k,n], or [n,k] when
/// `transposeW`. dx[m,k] = dy * W^T; dw = x^T * dy in W's own layout ([k,n],
/// or dy^T * x [n,k] when `transposeW`); db[n] = column sums of dy. dx is
/// overwritten; dw and db are added into when `accumulate`.
void denseBackward(const float *x, const float *w, const float *dy, float *dx,
                   float *dw, float *db, int64_t m, int64_t k, int64_t n,
                   bool transposeW, bool accumulate);

/// dx = dy * act'(preact) over n values, from the pre-activation values
/// (GELU is the tanh approximation of `activation`; ReLU' is 0 at 0). dx may
/// alias dy or preact.
void activationBackward(const float *preact, const float *dy, float *dx,
                        int64_t n, Activation act);

/// dx = dy * act'(x) from the activation's output y = act(x), for a forward
/// that did not keep its input (a dense layer with a fused activation, such
/// as the tanh pooler): tanh' = 1 - y^2, ReLU' = [y > 0], None' = 1. GELU is
/// not invertible and throws KernelError. dx may alias dy or y.
void activationBackwardFromOutput(const float *y, const float *dy, float *dx,
                                  int64_t n, Activation act);

/// Gradient of y = LayerNorm(x + residual) (the `layerNorm` kernel; residual
/// may be null). The statistics are recomputed from x + residual. dx[rows,
/// cols] is the gradient of the normalised sum, hence of x and of the
/// residual alike (overwritten); dscale[cols] = sum_rows dy * xhat and
/// dbias[cols] = sum_rows dy (added into when `accumulate`). dx may alias dy.
void layerNormBackward(const float *x, const float *residual,
                       const float *scale, const float *dy, float *dx,
                       float *dscale, float *dbias, int64_t rows, int64_t cols,
                       float eps, bool accumulate);

/// Gradient of the row softmax y = softmax(x) over [rows, cols]:
/// dx = y * (dy - sum_c y * dy). dx may alias dy.
void softmaxBackward(const float *y, const float *dy, float *dx, int64_t rows,
                     int64_t cols);

//===----------------------------------------------------------------------===//
// Embedding and attention gradients
//===----------------------------------------------------------------------===//

/// Gradient of `embed`: scatter-adds dy[batch, seq, dEmb] into the tables.
/// dword[vocab, dEmb] row i gets the sum of dy over the tokens with id i,
/// dpos[posRows, dEmb] row s the sum over the examples of position s (rows
/// from seq on get nothing), dtype[typeVocab, dEmb] row i the sum over the
/// tokens of type i (typeIds may be null: all type 0). Rows nobody names
/// are zero, or keep their contents when `accumulate`; the contributions to
/// one row are added in token order. Throws KernelError, as `embed` does,
/// for an id outside its table.
void embedBackward(const int32_t *ids, const int32_t *typeIds, const float *dy,
                   float *dword, float *dpos, float *dtype, int64_t batch,
                   int64_t seq, int64_t dEmb, int64_t vocab, int64_t posRows,
                   int64_t typeVocab, bool accumulate);

/// Gradient of `attention` (same layouts, mask and scaling). The
/// probabilities are recomputed per (example, head, block of queries); then
/// dV = P^T dO, dP = dO V^T, dS = P o (dP - rowsum(P o dP)),
/// dQ = dS K / sqrt(headDim), dK = dS^T Q / sqrt(headDim). Masked logits are
/// constants, so they pass no gradient to Q and K; a fully masked (pad) query
/// row attends uniformly to every key and so still passes its gradient to V.
/// With `dropout` (the forward's, redrawn) P' = P o mask / (1 - rate) takes
/// P's place in the product with V: dV = P'^T dO and dP = (dO V^T) o mask /
/// (1 - rate) enters dS. dq, dk, dv are overwritten.
void attentionBackward(const float *q, const float *k, const float *v,
                       const int32_t *ids, const float *dout, float *dq,
                       float *dk, float *dv, int64_t batch, int64_t seq,
                       int64_t heads, int64_t headDim, int32_t padId,
                       bool causal, const AttentionDropout &dropout = {});

//===----------------------------------------------------------------------===//
// Losses and head plumbing
//===----------------------------------------------------------------------===//

/// Weighted softmax cross-entropy over logits [rows, classes]: returns
/// sum_r w[r] * (logsumexp(logits[r]) - logits[r, labels[r]]) and writes
/// dlogits = lossScale * w[r] * (softmax(logits[r]) - onehot(labels[r])).
/// `weights` may be null (all 1); a row with label -1 is ignored (no loss,
/// zero gradient). dlogits may be null (loss only) and may alias logits.
/// Throws KernelError for a label outside [-1, classes).
float softmaxCrossEntropy(const float *logits, const int32_t *labels,
                          const float *weights, int64_t rows, int64_t classes,
                          float *dlogits, float lossScale);

/// Sum of squared errors over `rows` values: returns sum (pred - target)^2
/// and writes dpred = lossScale * 2 * (pred - target) (dpred may be null).
float squaredError(const float *pred, const float *target, int64_t rows,
                   float *dpred, float lossScale);

/// y[b*numPositions + p, :] = x[b, positions[b,p], :] for x [batch, seq, d]
/// and positions [batch, numPositions] (the masked-LM gather). Throws
/// KernelError for a position outside [0, seq).
void gatherRows(const float *x, const int32_t *positions, float *y,
                int64_t batch, int64_t seq, int64_t d, int64_t numPositions);

/// Gradient of gatherRows: dx[b, positions[b,p], :] += dy[b*numPositions +
/// p, :], repeated positions adding up in p order. dx [batch, seq, d] is
/// zeroed first unless `accumulate`. Throws KernelError as gatherRows.
void gatherRowsBackward(const float *dy, const int32_t *positions, float *dx,
                        int64_t batch, int64_t seq, int64_t d,
                        int64_t numPositions, bool accumulate);

} // namespace mixer::cpu

#endif // MIXER_RUNTIME_CPU_TRANSFORMERGRADIENTS_H
