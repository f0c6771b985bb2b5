//===- MixingMoeGradients.h - Backward of mixing and MoE --------*- C++ -*-===//
//
// Vector-Jacobian products of the token-mixing and mixture-of-experts kernels
// of Kernels.h, for training. Each backward kernel takes the forward operands
// it needs and the gradient of the loss with respect to the forward result,
// and produces the gradients with respect to the forward operands.
//
// Conventions:
//  - Gradients of activations (dx, dxd, dyd, dgates, dscores) are always
//    written. Gradients of parameters (mixing kernels, expert weights and
//    biases) are written, or added to the destination when `accumulate` is set
//    (gradient accumulation over micro-batches).
//  - The routing assignment table (tokens, offsets) is a constant of the
//    backward pass: gradients reach the router through the gate values only,
//    never through the top-k choices.
//  - As in Kernels.h, results are bitwise the same for any OpenMP thread
//    count; every reduction has a fixed order.
//
// Plain double-precision twins live in ReferenceMixingMoeGradients.h.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_MIXINGMOEGRADIENTS_H
#define MIXER_RUNTIME_CPU_MIXINGMOEGRADIENTS_H

#include "runtime/cpu/Kernels.h"

#include <cstdint>
#include <memory>

namespace mixer::cpu {

//===----------------------------------------------------------------------===//
// Mixing
//===----------------------------------------------------------------------===//

/// Backward of linearMix, Y[b] = W_s X[b] W_h, given dY [batch, seq, d]:
///   dX[b] = W_s^T dY[b] W_h^T                      (written),
///   dW_s  = sum_b dY[b] (X[b] W_h)^T   [seq, seq]   (written or added),
///   dW_h  = sum_b X[b]^T W_s^T dY[b]   [d, d]       (written or added).
/// `scratch` holds batch*seq*d floats. dx must not alias x or dy.
void linearMixBackward(const float *x, const float *ws, const float *wh,
                       const float *dy, float *dx, float *dws, float *dwh,
                       float *scratch, int64_t batch, int64_t seq, int64_t d,
                       bool accumulate);

/// Backward of spectral (Fourier or Hartley) mixing: dX = SpectralMix(dY),
/// computed by the forward object itself (`mix.run(dy, dx)`).
///
/// Why the forward map is its own adjoint: per example,
///   Y[n,k] = sum_{i,j} K(n,k; i,j) X[i,j],
///   K(n,k; i,j) = g(2 pi (n i / seq + k j / d)),
/// with g = cos for Fourier (Re(F_seq X F_d), the DFT matrices being
/// F[j,k] = exp(-2 pi i j k / n)) and g = cos + sin for Hartley (Re - Im).
/// K only depends on the products n*i and k*j, so swapping the output index
/// pair (n,k) with the input pair (i,j) leaves it unchanged: K is a symmetric
/// matrix on R^{seq*d}. The vector-Jacobian product of a linear map is its
/// transpose applied to dY, K^T dY = K dY, which is the forward map applied to
/// dY. The mixing has no parameters, so dX is the only gradient.
void spectralMixBackward(SpectralMix &mix, const float *dy, float *dx);

/// Backward of StructuredMix, Y[b] = A X[b] B^T with A = Circ(v_s) or
/// Toep(t_s) [seq, seq] and B = Circ(v_h) or Toep(t_h) [d, d]:
///   dX[b] = A^T dY[b] B                                     (written),
///   dA = sum_b dY[b] B X[b]^T,   dB = sum_b dY[b]^T A X[b],
/// folded onto the kernel vectors (written or added):
///   circulant: dv[j] = sum over (r - c) mod n == j of dM[r, c],
///   Toeplitz:  dt[(n - 1) + c - r] = sum of dM[r, c] on that diagonal,
/// for (M, n) = (A, seq) -> dvs and (B, d) -> dvh.
///
/// Always computed with GEMMs on the explicit matrices, whichever algorithm
/// the forward StructuredMix uses (the two forward algorithms compute the same
/// map, so their gradients agree). Holds its matrices and scratch: create it
/// once per shape.
class StructuredMixBackward {
public:
  StructuredMixBackward(int64_t batch, int64_t seq, int64_t d, bool toeplitz);
  ~StructuredMixBackward();
  void run(const float *x, const float *vs, const float *vh, const float *dy,
           float *dx, float *dvs, float *dvh, bool accumulate);

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

//===----------------------------------------------------------------------===//
// Mixture of experts (assignment tables as in Kernels.h)
//===----------------------------------------------------------------------===//

/// Backward of combine, out[t] = sum_{i: tokens[i] == t} gates[i] * yd[i],
/// given dout [numTokens, d]: for every entry i,
///   dyd[i] = gates[i] * dout[tokens[i]],   dgates[i] = <yd[i],
///   dout[tokens[i]]>,
/// and zeros (a zero row, a zero gate gradient) for empty slots. Throws
/// KernelError naming the slot of a token outside [0, numTokens).
void combineBackward(const float *yd, const int32_t *tokens, const float *gates,
                     const float *dout, float *dyd, float *dgates,
                     int64_t slots, int64_t numTokens, int64_t d);

/// `experts` for training: the same yd (bitwise), and in addition the
/// pre-activation hidden rows hiddenPreact[i] = xd[i] * w1[e] + b1[e]
/// [slots, f] that expertsBackward needs (zeros for empty slots).
///
/// Storing costs slots*f floats per layer from the forward to the backward;
/// expertsBackwardRecompute (what training plans run today, as their forward
/// keeps only xd) recomputes them instead, one more [rows, d] x [d, f] GEMM
/// per tile, a quarter more backward work (four GEMMs otherwise).
void expertsForwardTraining(const float *xd, const int32_t *tokens,
                            const int32_t *offsets, const float *w1,
                            const float *b1, const float *w2, const float *b2,
                            float *yd, float *hiddenPreact, int64_t numExperts,
                            int64_t slots, int64_t d, int64_t f,
                            Activation act);

/// Backward of `experts`, given dyd [slots, d] and the stored pre-activations.
/// For the occupied rows R of expert e, with H = act(hiddenPreact[R]) and
/// dP = (dyd[R] w2[e]^T) * act'(hiddenPreact[R]):
///   dxd[R] = dP w1[e]^T                                    (written),
///   dw1[e] = xd[R]^T dP,   db1[e] = sum of the rows of dP,
///   dw2[e] = H^T dyd[R],   db2[e] = sum of the rows of dyd[R]
///                                                 (written or added).
/// Empty slots are skipped (their dxd rows are zero and their xd, dyd rows
/// are not read); an expert without occupied rows gets zero gradients.
/// db1 and db2 may be null (experts without biases, e.g. sigma-MoE). GELU is
/// the tanh approximation of the forward. `scratch` holds 2*slots*f floats.
void expertsBackward(const float *xd, const int32_t *tokens,
                     const int32_t *offsets, const float *w1, const float *w2,
                     const float *hiddenPreact, const float *dyd, float *dxd,
                     float *dw1, float *db1, float *dw2, float *db2,
                     float *scratch, int64_t numExperts, int64_t slots,
                     int64_t d, int64_t f, Activation act, bool accumulate);

/// expertsBackward for a forward that kept only xd: each row tile first
/// recomputes its pre-activations xd[R] w1[e] + b1[e] with the products of
/// expertsForwardTraining (so every result is bitwise that of
/// expertsBackward on stored pre-activations), then goes on as
/// expertsBackward. The pre-activations live only in a per-thread tile
/// buffer. b1, db1 and db2 may be null. `scratch` holds 2*slots*f floats.
void expertsBackwardRecompute(const float *xd, const int32_t *tokens,
                              const int32_t *offsets, const float *w1,
                              const float *b1, const float *w2,
                              const float *dyd, float *dxd, float *dw1,
                              float *db1, float *dw2, float *db2,
                              float *scratch, int64_t numExperts, int64_t slots,
                              int64_t d, int64_t f, Activation act,
                              bool accumulate);

/// Backward of dispatch, xd[i] = x[tokens[i]]: dx[t] = sum over entries i with
/// tokens[i] == t of dxd[i], summed in entry order (combine with unit gates);
/// zero rows for tokens no entry names. Throws KernelError naming the slot of a
/// token outside [0, numTokens).
void dispatchBackward(const float *dxd, const int32_t *tokens, float *dx,
                      int64_t slots, int64_t numTokens, int64_t d);

/// Backward of the gate values of a routing, given dgates [slots] (from
/// combineBackward). The expert of entry i is the segment of `offsets` that
/// holds i; a (token, expert) pair occurs at most once in a table.
///  - ExpertsChoose / TokensChoose: gates are router probabilities, so
///    dscores = d(probs) [numTokens, experts]: dgates[i] at
///    (tokens[i], expert of i), zero elsewhere. `logits` is not read (may be
///    null); the softmax backward then gives d(logits).
///  - SigmoidTopK: gates are sigmoid(logits), so dscores = d(logits):
///    dgates[i] * s(1 - s) with s = sigmoid(logits[tokens[i], e]) (computed
///    as sigmoid(x) * sigmoid(-x), accurate for large |x|), zero elsewhere.
/// Throws KernelError naming the slot of a token outside [0, numTokens), or
/// when SigmoidTopK gets no logits.
void routerGateBackward(Routing routing, const float *logits,
                        const int32_t *tokens, const int32_t *offsets,
                        const float *dgates, float *dscores, int64_t numTokens,
                        int64_t experts);

} // namespace mixer::cpu

#endif // MIXER_RUNTIME_CPU_MIXINGMOEGRADIENTS_H
