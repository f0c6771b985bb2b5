//===- ExecutorKernels.h - Glue kernels of the CUDA executor ----*- C++ -*-===//
//
// Small device kernels that adapt the plan's value types to the kernel
// library's (Kernels.h), and the plan kernels too simple for a family of
// their own: scalar arithmetic of the losses, the head plumbing (position
// slices and gathers), the embedding sum and its gradient, the MoE gathers
// and scatters, tanh, argmax and the bf16 conversions around the fp32
// products. Each follows the CPU kernel
// of the same plan name (runtime/cpu/KernelTable*.cpp) and enqueues on
// `stream`. Activation operands come as float or Bf16 (explicitly
// instantiated); scalars, masks and parameter gradients are float.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CUDA_EXECUTORKERNELS_H
#define MIXER_RUNTIME_CUDA_EXECUTORKERNELS_H

#include "runtime/cuda/Kernels.h"

namespace mixer::cuda {

/// *out = float(*in) (round to nearest).
Status narrowToFloat(const double *in, float *out, cudaStream_t stream);

/// *scale = float(maxNorm / double(*norm)) when double(*norm) >= maxNorm,
/// else 1: the CPU adamw kernel's clipping factor, bit for bit.
Status clipFactor(const float *norm, double maxNorm, float *scale,
                  cudaStream_t stream);

/// y[i] = float(x[i]) over n values (exact).
Status widenBf16(const Bf16 *x, float *y, int64_t n, cudaStream_t stream);
/// y[i] = bf16(x[i]), nearest, ties to even.
Status narrowToBf16(const float *x, Bf16 *y, int64_t n, cudaStream_t stream);

/// y[i] = value over n floats (`fill`).
Status fillValues(float *y, int64_t n, float value, cudaStream_t stream);

/// Micro-step `microStep` of `microSteps` over n values, as
/// cpu::accumulateGradient: with s = accum + grad, average = s / microSteps
/// (correctly rounded) and accum = s, or 0 on the last micro-step
/// (`accumulate_gradient`).
Status accumulateGradient(float *accum, const float *grad, float *average,
                          int64_t n, int64_t microStep, int64_t microSteps,
                          cudaStream_t stream);
/// y[i] = *x over n floats (`broadcast`).
Status broadcastScalar(const float *x, float *y, int64_t n,
                       cudaStream_t stream);
/// *y = float(sum of x in index order, in double) (`reduce_sum`).
Status sumValues(const float *x, float *y, int64_t n, cudaStream_t stream);
/// y[i] = x[i] * factor (`scale`).
Status scaleValues(const float *x, float *y, int64_t n, float factor,
                   cudaStream_t stream);
/// y[i] = labels[i] >= 0 ? 1 : 0 (`label_mask`).
Status labelMask(const int32_t *labels, float *y, int64_t n,
                 cudaStream_t stream);

/// y[i] = x[i] rounded to the nearest bf16 value (ties to even; NaNs only
/// quieted), kept as a float (`round_bf16`, cpu::roundToBf16's bits).
Status roundToBf16Values(const float *x, float *y, int64_t n,
                         cudaStream_t stream);
/// The bfloat16 router's logits bf16(bf16(products) + bf16(bias)) of
/// products [rows, cols] and bias [cols] (`router_logits_bf16`,
/// cpu::routerLogitsBf16's bits: the same bf16::routerLogit).
Status routerLogitsBf16(const float *products, const float *bias, float *y,
                        int64_t rows, int64_t cols, cudaStream_t stream);
/// The bfloat16 router's softmax of each row of x [rows, cols], a thread per
/// row (`softmax` with `bf16`, cpu::routerSoftmaxBf16's bits: the same
/// bf16::routerSoftmaxRow). y may alias x.
Status routerSoftmaxBf16(const float *x, float *y, int64_t rows, int64_t cols,
                         cudaStream_t stream);
/// *loss = float(sum over i of double(p[i] - t[i])^2, in index order)
/// (`squared_error`, cpu::squaredError).
Status squaredError(const float *prediction, const float *target, float *loss,
                    int64_t n, cudaStream_t stream);

/// *loss = the mean over the tokens of lse_t^2, lse_t the logsumexp of row t
/// of logits [numTokens, experts] (`router_z_loss`, cpu::routerZLoss: the
/// squares added in double in blocks of 256 tokens, then the blocks in
/// order). `scratch` holds numTokens doubles.
Status routerZLoss(const float *logits, float *loss, int64_t numTokens,
                   int64_t experts, double *scratch, cudaStream_t stream);
/// dlogits[t, e] = *dloss * 2 * lse_t * softmax(logits[t])_e / numTokens
/// (`router_z_loss_grad`, cpu::routerZLossGrad); may alias logits.
Status routerZLossGrad(const float *logits, const float *dloss, float *dlogits,
                       int64_t numTokens, int64_t experts, cudaStream_t stream);

/// The elementwise binary plan kernels.
enum class BinaryOp { Add, Multiply, Divide };
/// y[i] = op(a[i], b[i]) in fp32 over n values (`add`, `multiply`,
/// `divide`); y may alias a or b.
template <typename T>
Status binary(const T *a, const T *b, T *y, int64_t n, BinaryOp op,
              cudaStream_t stream);

/// y = tanh(x) over n values (`activation` with kind tanh).
template <typename T>
Status tanhForward(const T *x, T *y, int64_t n, cudaStream_t stream);
/// dx = dy * tanh'(x) from the pre-activation x, tanh'(x) = 4e / (1 + e)^2
/// with e = exp(-2|x|) as the CPU computes it (`activation_grad`, tanh).
template <typename T>
Status tanhBackward(const T *x, const T *dy, T *dx, int64_t n,
                    cudaStream_t stream);

/// y = x * Phi(x) over n values (`activation` with kind gelu_erf).
template <typename T>
Status geluErfForward(const T *x, T *y, int64_t n, cudaStream_t stream);
/// dx = dy * (Phi(x) + x phi(x)) from the pre-activation x
/// (`activation_grad`, gelu_erf).
template <typename T>
Status geluErfBackward(const T *x, const T *dy, T *dx, int64_t n,
                       cudaStream_t stream);

/// y[r] = the index of the first maximum of row r of [rows, cols]
/// (`argmax`: std::max_element's order, so NaN never replaces a maximum).
template <typename T>
Status argmaxRows(const T *x, int32_t *y, int64_t rows, int64_t cols,
                  cudaStream_t stream);

/// y[b, :] = x[b, index, :] of [batch, seq, d] (`take_position`).
template <typename T>
Status takePosition(const T *x, T *y, int64_t batch, int64_t seq, int64_t d,
                    int64_t index, cudaStream_t stream);
/// dx = 0 except dx[b, index, :] = dy[b, :] (`take_position_grad`).
template <typename T>
Status takePositionBackward(const T *dy, T *dx, int64_t batch, int64_t seq,
                            int64_t d, int64_t index, cudaStream_t stream);

/// y[b, :] = the row at position 0 of x [batch, seq, d] (Cls) or the mean
/// of the rows whose id is not padId (Mean; zeros when there is none),
/// divided by its L2 norm (at least 1e-12) when `normalize` (`pool`, as
/// cpu::pool). ids may be null for Cls.
template <typename T>
Status pool(const T *x, const int32_t *ids, T *y, int64_t batch, int64_t seq,
            int64_t d, PoolMode mode, bool normalize, int32_t padId,
            cudaStream_t stream);

/// y[b * count + p, :] = x[b, positions[b, p], :] (`gather_positions`); a
/// position outside [0, seq) gives a NaN row and is reported to `check`.
template <typename T>
Status gatherPositions(const T *x, const int32_t *positions, T *y,
                       int64_t batch, int64_t seq, int64_t d, int64_t count,
                       cudaStream_t stream, IdCheck check = {});
/// dx[b, s, :] = the sum over p with positions[b, p] == s of dy[b * count +
/// p, :], added in p order from 0 (`gather_positions_grad`); positions
/// outside [0, seq) add nothing and are reported to `check`.
template <typename T>
Status gatherPositionsBackward(const T *dy, const int32_t *positions, T *dx,
                               int64_t batch, int64_t seq, int64_t d,
                               int64_t count, cudaStream_t stream,
                               IdCheck check = {});

/// y[b, s, :] = word[ids] + pos[s] + type[typeIds] (`embed` without the
/// LayerNorm, cpu::embed's order; typeIds may be null: type 0). An id
/// outside its table gives a NaN row and is reported to its check.
template <typename T>
Status embedSum(const int32_t *ids, const int32_t *typeIds, const float *word,
                const float *pos, const float *type, T *y, int64_t batch,
                int64_t seq, int64_t d, int64_t vocab, int64_t typeVocab,
                cudaStream_t stream, IdCheck idsCheck = {},
                IdCheck typeIdsCheck = {});

/// The gradients of embedSum (`embed_grad`), as cpu::embedBackward: each
/// table row is the sum in double, in token order, of the rows of dy whose
/// token uses it, rounded once. The tokens are ordered by a counting sort
/// per table in `scratch` (vocab + posRows + typeVocab + 3 + 3 * batch * seq
/// ints). Ids outside their table add nothing and are reported to their
/// check.
template <typename T>
Status embedBackward(const int32_t *ids, const int32_t *typeIds, const T *dy,
                     float *dword, float *dpos, float *dtype, int64_t batch,
                     int64_t seq, int64_t d, int64_t vocab, int64_t posRows,
                     int64_t typeVocab, int32_t *scratch, cudaStream_t stream,
                     IdCheck idsCheck = {}, IdCheck typeIdsCheck = {});

/// rows[i, :] = 0 for every empty slot (tokens[i] < 0) of [slots, d]: the
/// rows the experts leave zero.
template <typename T>
Status zeroEmptySlots(const int32_t *tokens, T *rows, int64_t slots, int64_t d,
                      cudaStream_t stream);

// The MoE gathers and scatters below take any negative token as an empty
// slot; a token of numTokens or more is reported to their `check`.

/// xd[i, :] = x[tokens[i], :] over the slots, 0 for an empty slot
/// (`dispatch`); a token of numTokens or more gives a NaN row.
template <typename T>
Status dispatchRows(const T *x, const int32_t *tokens, T *xd, int64_t slots,
                    int64_t numTokens, int64_t d, cudaStream_t stream,
                    IdCheck check = {});
/// out[t, :] = the sum over the slots i of token t, in slot order, of
/// gates[i] * yd[i, :] (cpu::combine: the first term is the product, each
/// further one added), 0 for a token without slots (`combine`; with null
/// gates the plain sum, `dispatch_grad`); a slot whose token is numTokens or
/// more adds nothing. The slots are ordered by a counting sort in `scratch`
/// (numTokens + 1 + slots ints).
template <typename T>
Status combineRows(const T *yd, const int32_t *tokens, const float *gates,
                   T *out, int64_t slots, int64_t numTokens, int64_t d,
                   int32_t *scratch, cudaStream_t stream, IdCheck check = {});
/// dyd[i, :] = gates[i] * dout[tokens[i], :] and dgates[i] = the dot product
/// of dout[tokens[i], :] and yd[i, :] in fp32 in column order; 0 for an empty
/// slot, NaN for a token of numTokens or more (`combine_grad`).
template <typename T>
Status combineBackward(const T *yd, const int32_t *tokens, const float *gates,
                       const T *dout, T *dyd, float *dgates, int64_t slots,
                       int64_t numTokens, int64_t d, cudaStream_t stream,
                       IdCheck check = {});
/// dscores [numTokens, experts] = 0 except dscores[tokens[i], e] =
/// dgates[i] for the slots i of expert e (offsets[e] <= i < offsets[e + 1],
/// clamped to [0, slots)) (`scatter_gate_grad`). With `sigmoidLogits`
/// ([numTokens, experts], not null) each value is times sigmoid'(logit) =
/// sigmoid(x) sigmoid(-x): the gate gradient of sigmoid top-k routing
/// (cpu::routerGateBackward).
Status scatterGateGrad(const int32_t *tokens, const int32_t *offsets,
                       const float *dgates, float *dscores, int64_t slots,
                       int64_t numTokens, int64_t experts, cudaStream_t stream,
                       const float *sigmoidLogits = nullptr,
                       IdCheck check = {});

/// The load-balancing loss of probs [groups * tokensPerGroup, experts]
/// (`load_balancing_loss`, cpu::loadBalancingLoss: per group and expert the
/// fraction f of top-k choices times the mean probability P, their mean times
/// experts^2, summed in double in the CPU's order). `scratch` holds
/// groups * experts doubles.
Status loadBalancingLoss(const float *probs, float *loss, int64_t groups,
                         int64_t tokensPerGroup, int64_t experts, int64_t k,
                         double *scratch, cudaStream_t stream);
/// Its gradient (`load_balancing_loss_grad`, cpu::loadBalancingLossGrad,
/// the top-k choices held constant): every token of group g gets
/// float(dloss * experts / (groups * tokensPerGroup^2) * count[g, e]), dloss
/// read on the device. `scratch` holds groups * experts floats.
Status loadBalancingLossGrad(const float *probs, const float *dloss,
                             float *dprobs, int64_t groups,
                             int64_t tokensPerGroup, int64_t experts, int64_t k,
                             float *scratch, cudaStream_t stream);

/// db[c] = the column sums of dy [rows, cols] in fp32, in a fixed order
/// (`reduce_rows`, the bias gradient).
template <typename T>
Status columnSum(const T *dy, float *db, int64_t rows, int64_t cols,
                 cudaStream_t stream);

} // namespace mixer::cuda

#endif // MIXER_RUNTIME_CUDA_EXECUTORKERNELS_H
