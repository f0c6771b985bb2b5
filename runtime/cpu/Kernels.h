//===- Kernels.h - CPU kernels of the mixer runtime -------------*- C++ -*-===//
//
// Every kernel the CPU backend executes, as plain functions on row-major
// float/int32 arrays. Each optimized kernel here has a plain reference twin in
// ReferenceKernels.h with the same signature; the unit tests compare the two on
// random and edge-case shapes. The semantics are the model semantics of
// docs/dsl.md and the mixer dialect: the compiler decides which kernel runs
// with which shapes, the kernels only compute.
//
// Threading: kernels use both cores through OpenMP; BLAS calls go through
// oneDNN (`dnnl_sgemm`). Results are deterministic: no kernel depends on the
// thread schedule for its floating-point summation order.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_KERNELS_H
#define MIXER_RUNTIME_CPU_KERNELS_H

#include "runtime/cpu/CounterRandom.h"
#include "runtime/support/KernelParameters.h"

#include <array>
#include <cstdint>
#include <memory>
#include <string>

namespace mixer::cpu {

/// Thrown by kernels on bad data that the compiler cannot rule out (token ids
/// out of the vocabulary, ...). The executor turns it into an error message.
struct KernelError {
  std::string message;
};

//===----------------------------------------------------------------------===//
// Dense, normalisation and pointwise kernels
//===----------------------------------------------------------------------===//

/// y[m,n] = act(sum_k x[m,k] * W[k,n] + bias[n]).
/// W is stored [k,n] unless `transposeW`, in which case it is stored [n,k]
/// (tied embeddings, classification kernels). `bias` may be null.
void dense(const float *x, const float *w, const float *bias, float *y,
           int64_t m, int64_t k, int64_t n, bool transposeW, Activation act);

/// Batched y[b] = A[b] * B[b] for `batch` independent row-major products of
/// shape [m,k] x [k,n]. A stride of 0 broadcasts that operand (e.g. the
/// Linear-mixing sequence kernel W_s shared by every example).
void batchedMatmul(const float *a, const float *b, float *y, int64_t batch,
                   int64_t m, int64_t k, int64_t n, int64_t strideA,
                   int64_t strideB, int64_t strideY);

/// Whether this CPU computes bf16 products at full speed (AVX512_BF16 or AMX,
/// as oneDNN's ISA detection reports it): the bf16 kernels below need it.
bool hasBf16Products();

/// x rounded to the nearest bfloat16 (ties to even; NaNs stay NaNs) and
/// stored as its 16 bits.
void toBf16(const float *x, uint16_t *y, int64_t n);

/// dense with bf16 products and fp32 accumulation (oneDNN's bf16 matmul):
/// y[m,n] = act(x[m,k] * W + bias[n]) as `dense`, with x and y each fp32 or
/// bf16 (16-bit words) and W read from a bf16 copy made once by pack().
/// The rows are cut into tiles that depend on the shape alone and run in
/// parallel, one thread per product, so results do not depend on the thread
/// count. Construction builds the oneDNN primitives (and may throw
/// KernelError).
class DenseBf16 {
public:
  DenseBf16(int64_t m, int64_t k, int64_t n, bool transposeW, bool xBf16,
            bool yBf16, bool bias, Activation act);
  ~DenseBf16();
  DenseBf16(DenseBf16 &&) noexcept;
  /// Bytes of the packed bf16 weights.
  int64_t packedBytes() const;
  /// Converts W ([k,n], or [n,k] when transposeW) into `packed`.
  void pack(const float *w, void *packed) const;
  void run(const void *x, const void *packed, const float *bias, void *y) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// y = LayerNorm(x + residual) over the last axis of [rows, cols]:
/// (v - mean) * rsqrt(var + eps) * scale + bias with var = E[v^2] - mean^2
/// clamped at 0 (Flax). `residual` may be null (plain LayerNorm). y may alias
/// x or residual.
void layerNorm(const float *x, const float *residual, const float *scale,
               const float *bias, float *y, int64_t rows, int64_t cols,
               float eps);

/// y = act(x), elementwise over n values. Gelu is the tanh approximation,
/// GeluErf the exact x * Phi(x).
void activation(const float *x, float *y, int64_t n, Activation act);

/// y = a + b, elementwise over n values.
void add(const float *a, const float *b, float *y, int64_t n);

/// Round each value to the nearest bfloat16 (ties to even) and store it back as
/// float. NaN stays NaN.
void roundToBf16(const float *x, float *y, int64_t n);

/// Row-wise softmax over the last axis of [rows, cols] (max-subtracted).
void softmax(const float *x, float *y, int64_t rows, int64_t cols);

/// The bfloat16 router's logits from products [rows, cols] of bfloat16
/// operands and a bias [cols]: y = bf16(bf16(products) + bf16(bias))
/// (bf16::routerLogit). y may alias products.
void routerLogitsBf16(const float *products, const float *bias, float *y,
                      int64_t rows, int64_t cols);

/// The bfloat16 router's softmax of each row of [rows, cols], op by op in
/// bfloat16 (bf16::routerSoftmaxRow). y may alias x.
void routerSoftmaxBf16(const float *x, float *y, int64_t rows, int64_t cols);

/// y[b,:] = x[b, index, :] for x of shape [batch, seq, d] (pooler input).
void takePosition(const float *x, float *y, int64_t batch, int64_t seq,
                  int64_t d, int64_t index);

/// y[b,:] = one row per example of x [batch, seq, d]: the row at position 0
/// (Cls) or the mean of the rows whose id in ids [batch, seq] is not padId
/// (Mean; zeros when every token is padding), then divided by its L2 norm
/// (at least 1e-12) when `normalize`. ids may be null for Cls.
void pool(const float *x, const int32_t *ids, float *y, int64_t batch,
          int64_t seq, int64_t d, PoolMode mode, bool normalize, int32_t padId);

//===----------------------------------------------------------------------===//
// Embeddings
//===----------------------------------------------------------------------===//

/// y[b,s,:] = word[ids[b,s]] + pos[s] + type[typeIds[b,s]] for y [batch, seq,
/// dEmb]. `typeIds` may be null (all zero). `pos` holds at least `seq` rows.
/// Throws KernelError naming the position of an id outside [0, vocab) or a
/// type id outside [0, typeVocab).
void embed(const int32_t *ids, const int32_t *typeIds, const float *word,
           const float *pos, const float *type, float *y, int64_t batch,
           int64_t seq, int64_t dEmb, int64_t vocab, int64_t typeVocab);

//===----------------------------------------------------------------------===//
// Mixing sublayers (per example X in R^{seq x d})
//===----------------------------------------------------------------------===//

/// Linear mixing: Y[b] = W_s * X[b] * W_h with W_s [seq,seq], W_h [d,d], both
/// untransposed. `scratch` holds batch*seq*d floats.
void linearMix(const float *x, const float *ws, const float *wh, float *y,
               float *scratch, int64_t batch, int64_t seq, int64_t d);

/// linearMix with bf16 products and fp32 accumulation (oneDNN's bf16
/// matmul), for an inference plan: x and y each fp32 or bf16; X * W_h runs as
/// a DenseBf16 into a bf16 scratch of scratchWords() words, then W_s times
/// each example's rows in tiles of at most 256 rows of W_s, one thread per
/// tile (results do not depend on the thread count). W_h and W_s are read
/// from bf16 copies made once by pack(). Construction builds the oneDNN
/// primitives (and may throw KernelError).
class LinearMixBf16 {
public:
  LinearMixBf16(int64_t batch, int64_t seq, int64_t d, bool xBf16, bool yBf16);
  ~LinearMixBf16();
  LinearMixBf16(LinearMixBf16 &&) noexcept;
  /// Bytes of the packed bf16 weights.
  int64_t packedBytes() const;
  /// Converts W_s [seq,seq] and W_h [d,d] into `packed`.
  void pack(const float *ws, const float *wh, void *packed) const;
  /// 16-bit words of scratch run() needs.
  int64_t scratchWords() const;
  void run(const void *x, const void *packed, void *y, uint16_t *scratch) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// Fourier mixing Y = Re(F_seq X F_d), or Hartley mixing Re - Im of the same
/// 2-D DFT. Plans and scratch live in the object: create it once per shape.
class SpectralMix {
public:
  SpectralMix(int64_t batch, int64_t seq, int64_t d, bool hartley,
              MixAlgorithm algorithm);
  ~SpectralMix();
  void run(const float *x, float *y);

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// Circulant mixing Y = Circ(v_s) X Circ(v_h)^T, Circ(v)[r,c] = v[(r-c) mod n]
/// (vs [seq], vh [d]); or Toeplitz mixing Y = Toep(t_s) X Toep(t_h)^T,
/// Toep(t)[r,c] = t[(n-1) + c - r] (ts [2*seq-1], th [2*d-1]).
class StructuredMix {
public:
  StructuredMix(int64_t batch, int64_t seq, int64_t d, bool toeplitz,
                MixAlgorithm algorithm);
  ~StructuredMix();
  void run(const float *x, const float *vs, const float *vh, float *y);

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// The dense matrices of the structured mixers (used by the Matmul algorithm
/// and by tests). `out` is [n,n].
void circulantMatrix(const float *v, float *out, int64_t n);
void toeplitzMatrix(const float *t, float *out, int64_t n);

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

/// Training dropout on the attention probabilities: element (b, h, q, k) of
/// the [batch, heads, seq, seq] probabilities P is kept and scaled,
/// P' = P / (1 - rate), when uniforms.at(((b * heads + h) * seq + q) * seq +
/// k) >= rate, and zeroed otherwise. Inactive at rate 0.
struct AttentionDropout {
  double rate = 0.0;
  CounterUniforms uniforms{0, 0, 0};

  /// The dropout at `rate` keyed (seed, stream) at noise counter `step`,
  /// element 0 of P being global element `first` (CounterUniforms);
  /// inactive for a negative seed (evaluation), as random_scale.
  static AttentionDropout make(double rate, int64_t seed, int64_t stream,
                               int64_t step, uint64_t first = 0) {
    if (seed < 0)
      return {};
    return {rate, CounterUniforms(seed, stream, step, first)};
  }
  bool active() const { return rate > 0; }
};

/// Scaled dot-product attention core. q, k, v and out are [batch, seq, heads,
/// headDim] (the layout the Q/K/V dense layers produce). Logits are scaled by
/// 1/sqrt(headDim); key k of query q is masked when ids[b,q] == padId or
/// ids[b,k] == padId (the reference's padding mask; a fully masked query row
/// attends uniformly to every key) or, if `causal`, when k > q. Masked logits
/// are set to the lowest finite float before the softmax. `ids` may be null
/// (no padding mask). `dropout` drops probabilities before the product with
/// v.
void attention(const float *q, const float *k, const float *v,
               const int32_t *ids, float *out, int64_t batch, int64_t seq,
               int64_t heads, int64_t headDim, int32_t padId, bool causal,
               const AttentionDropout &dropout = {});

/// attention with bf16 products and fp32 accumulation (oneDNN's bf16
/// matmul), for an inference plan: q, k and v each fp32 or bf16 (fp32 ones
/// are rounded to bf16 into the caller's scratch of scratchWords() words),
/// the logits, mask and softmax in fp32, the normalised weights rounded to
/// bf16 before their product with v, out fp32 or bf16. Items and their
/// products are those of `attention`, so results do not depend on the thread
/// count. Construction builds the oneDNN primitives (and may throw
/// KernelError).
class AttentionBf16 {
public:
  AttentionBf16(int64_t batch, int64_t seq, int64_t heads, int64_t headDim,
                bool causal, std::array<bool, 3> inBf16, bool outBf16);
  ~AttentionBf16();
  AttentionBf16(AttentionBf16 &&) noexcept;
  /// 16-bit words of scratch run() needs.
  int64_t scratchWords() const;
  void run(const void *q, const void *k, const void *v, const int32_t *ids,
           void *out, int32_t padId, const AttentionDropout &dropout,
           uint16_t *scratch) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

//===----------------------------------------------------------------------===//
// Mixture of experts
//
// Tokens are the flattened batch*seq rows, split into `groups` consecutive
// groups of `tokensPerGroup`. Routing fills an assignment table of `slots`
// entries ordered by expert: expert e owns entries [offsets[e], offsets[e+1]).
// Each entry holds a global token index (-1 = empty slot) and a gate.
//  - ExpertsChoose / TokensChoose: slots = experts*groups*capacity; entry
//    (e*groups + g)*capacity + c is slot c of expert e in group g; offsets are
//    e*groups*capacity.
//  - SigmoidTopK: slots = tokens*k; entries sorted by expert, then by token.
//===----------------------------------------------------------------------===//

/// Experts-choose routing on probs [groups*tokensPerGroup, experts]: expert e
/// of group g takes the `capacity` tokens of the group with the highest
/// probability for e, in descending order, ties to the lower token index.
/// Requires capacity <= tokensPerGroup.
void routeExpertsChoose(const float *probs, int32_t *tokens, float *gates,
                        int32_t *offsets, int64_t groups,
                        int64_t tokensPerGroup, int64_t experts,
                        int64_t capacity);

/// Tokens-choose routing: each token picks its top-k experts (ties to the
/// lower expert index); per group, assignments are placed in expert buffers
/// in priority order (all top-1 choices first, then top-2, ...; within one
/// choice rank, tokens in order, or by descending top-1 probability with a
/// stable tie-break when `batchPrioritized`); an assignment whose position is
/// >= capacity is dropped. Gates are the raw probabilities.
void routeTokensChoose(const float *probs, int32_t *tokens, float *gates,
                       int32_t *offsets, int64_t groups, int64_t tokensPerGroup,
                       int64_t experts, int64_t k, int64_t capacity,
                       bool batchPrioritized);

/// sigma-MoE routing on raw logits [tokens, experts]: gate = sigmoid(logit);
/// each token takes its top-k gates (ties to the lower expert index); no
/// renormalisation, no capacity.
void routeSigmoidTopK(const float *logits, int32_t *tokens, float *gates,
                      int32_t *offsets, int64_t numTokens, int64_t experts,
                      int64_t k);

/// xd[i,:] = x[tokens[i],:], or zeros when tokens[i] < 0. x is [numTokens, d],
/// xd [slots, d]; throws KernelError for a token id of numTokens or more.
void dispatch(const float *x, const int32_t *tokens, float *xd, int64_t slots,
              int64_t numTokens, int64_t d);

/// Per-expert feed-forward on the dispatched rows: for the rows of expert e,
/// yd = act(xd * w1[e] + b1[e]) * w2[e] + b2[e] with w1 [experts, d, f],
/// w2 [experts, f, d], b1 [experts, f], b2 [experts, d]; biases may be null.
/// Rows of empty slots (tokens[i] < 0) are left as zeros.
void experts(const float *xd, const int32_t *tokens, const int32_t *offsets,
             const float *w1, const float *b1, const float *w2, const float *b2,
             float *yd, int64_t numExperts, int64_t slots, int64_t d, int64_t f,
             Activation act);

/// experts with bf16 products and fp32 accumulation: xd and yd fp32 as in
/// `experts`, w1 and w2 read from bf16 copies made once by pack(), the hidden
/// layer kept in bf16. Each expert's rows run in tiles of at most
/// kExpertTileRows rows, padded to a multiple of 32 rows (one oneDNN
/// primitive per padded size, built at construction).
class ExpertsBf16 {
public:
  ExpertsBf16(int64_t numExperts, int64_t slots, int64_t d, int64_t f,
              bool bias1, bool bias2, Activation act);
  ~ExpertsBf16();
  ExpertsBf16(ExpertsBf16 &&) noexcept;
  int64_t packedBytes() const;
  /// Converts w1 [experts, d, f] and w2 [experts, f, d] into `packed`.
  void pack(const float *w1, const float *w2, void *packed) const;
  void run(const float *xd, const int32_t *tokens, const int32_t *offsets,
           const void *packed, const float *b1, const float *b2,
           float *yd) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl;
};

/// Reorders the blocks of rows of `x` ([numRows] rows of `rowBytes` bytes)
/// from [outer][inner] to [inner][outer]: block (i, j) holds rows
/// [offsets[i·inner + j], offsets[i·inner + j + 1]) of x and becomes block
/// j·outer + i of y. `permuted` [outer·inner + 1] receives y's block offsets,
/// `grouped` [inner + 1] the rows of each inner index; rows of y past the
/// last block are zeroed.
void permuteBlocks(const uint8_t *x, const int32_t *offsets, int64_t outer,
                   int64_t inner, int64_t numRows, size_t rowBytes, uint8_t *y,
                   int32_t *permuted, int32_t *grouped);

/// out[t,:] = sum over entries i with tokens[i] == t of gates[i] * yd[i,:];
/// tokens that no entry names get zeros. out is [numTokens, d].
void combine(const float *yd, const int32_t *tokens, const float *gates,
             float *out, int64_t slots, int64_t numTokens, int64_t d);

/// Router z-loss of logits [numTokens, experts]: the mean over tokens of
/// (logsumexp_e logits[t,e])^2, with the row maximum taken out of the
/// exponentials so that large logits do not overflow.
float routerZLoss(const float *logits, int64_t numTokens, int64_t experts);

/// Load-balancing loss of tokens-choose routing on probs
/// [groups*tokensPerGroup, experts], before any capacity dropping: with
/// mask[t,e] = 1 when e is among token t's top-k experts (ties to the lower
/// expert index, as routeTokensChoose), f[g,e] = mean_t mask and
/// P[g,e] = mean_t probs over the tokens of group g, the loss is
/// mean_{g,e}(f * P) * experts^2. Throws KernelError when k > experts.
float loadBalancingLoss(const float *probs, int64_t groups,
                        int64_t tokensPerGroup, int64_t experts, int64_t k);

} // namespace mixer::cpu

#endif // MIXER_RUNTIME_CPU_KERNELS_H
