//===- Kernels.h - CUDA kernels of the mixer runtime ------------*- C++ -*-===//
//
// The CUDA twins of the CPU kernels (runtime/cpu/Kernels.h,
// TransformerGradients.h, RandomScale.h, Optimizer.h) that a
// device executor calls: plain host functions taking device pointers, sizes
// and a stream. Each enqueues its work on `stream` and returns at once; the
// returned Status reports bad arguments (checked before anything is enqueued)
// and launch failures, naming the kernel. Nothing here synchronises.
//
// Precision: kernels touching activations come in an fp32 and a bf16 variant.
// bf16 is a storage type only: values are widened to fp32, all arithmetic and
// every statistic (LayerNorm mean and variance, softmax maximum and sum) is
// fp32, and results are rounded to bf16 (nearest, ties to even) once, on the
// store. Parameters, their gradients and optimizer state are always fp32.
//
// Determinism: no kernel adds floats with atomics; every reduction runs in an
// order fixed by the shapes, so results are bitwise repeatable run to run.
//
// Temporary device memory (per-row statistics, per-block partial sums) comes
// from the stream-ordered allocator (cudaMallocAsync on `stream`) and is freed
// on the same stream.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CUDA_KERNELS_H
#define MIXER_RUNTIME_CUDA_KERNELS_H

#include "runtime/support/KernelParameters.h"
#include "runtime/support/Status.h"

#include <cstdint>
#include <memory>
#include <vector>

struct CUstream_st;

namespace mixer::cuda {

/// The CUDA runtime's stream handle (the same type as its cudaStream_t).
using cudaStream_t = CUstream_st *;

/// A bfloat16 value as stored in device memory: the upper half of an IEEE
/// binary32. Layout-compatible with CUDA's __nv_bfloat16.
struct Bf16 {
  uint16_t bits;
};

/// The key of a counter-based random op (runtime/cpu/CounterRandom.h): the
/// run's seed, the op's stream and the training step.
struct CounterKey {
  int64_t seed = 0;
  int64_t stream = 0;
  int64_t step = 0;
};

/// The first id outside its table that a run's kernels met: a token id, a
/// label, a position read from a device buffer. The executor keeps one in
/// device memory, zeroes it before a run and reads it after (Executor.h).
struct IdFault {
  /// The row-major element of the id operand that held the id.
  int64_t position;
  /// The id's table: ids belong in [0, limit).
  int64_t limit;
  /// 1 + the index of the plan step that met the id; 0 while none did.
  int32_t step;
  /// The step's operand that held the id.
  int32_t operand;
  int32_t id;
};

/// Where a kernel reports an id outside its table: the executor's fault
/// record (null: not reported) and the step and operand it comes from
/// (IdFault's fields). A kernel never reads or writes through a bad id; it
/// documents what it writes in its place.
struct IdCheck {
  IdFault *fault = nullptr;
  int32_t step = 0;
  int32_t operand = 0;
};

//===----------------------------------------------------------------------===//
// LayerNorm, bias + GELU, embeddings
//===----------------------------------------------------------------------===//

/// y = LayerNorm(x + residual) over the last axis of [rows, cols], as
/// cpu::layerNorm: (v - mean) * rsqrt(var + eps) * scale + bias with the
/// population variance. `residual` may be null; y may alias x or residual.
Status layerNorm(const float *x, const float *residual, const float *scale,
                 const float *bias, float *y, int64_t rows, int64_t cols,
                 float eps, cudaStream_t stream);
Status layerNorm(const Bf16 *x, const Bf16 *residual, const float *scale,
                 const float *bias, Bf16 *y, int64_t rows, int64_t cols,
                 float eps, cudaStream_t stream);

/// Gradient of layerNorm, as cpu::layerNormBackward: the statistics are
/// recomputed from x + residual; dx (the gradient of the normalised sum,
/// hence of x and of the residual) is overwritten and may alias dy;
/// dscale = sum_rows dy * xhat and dbias = sum_rows dy are overwritten, or
/// added into when `accumulate`. dx, dscale and dbias may each be null.
Status layerNormBackward(const float *x, const float *residual,
                         const float *scale, const float *dy, float *dx,
                         float *dscale, float *dbias, int64_t rows,
                         int64_t cols, float eps, bool accumulate,
                         cudaStream_t stream);
Status layerNormBackward(const Bf16 *x, const Bf16 *residual,
                         const float *scale, const Bf16 *dy, Bf16 *dx,
                         float *dscale, float *dbias, int64_t rows,
                         int64_t cols, float eps, bool accumulate,
                         cudaStream_t stream);

/// y[r,c] = GELU(x[r,c] + bias[c]) over [rows, cols], GELU being the tanh
/// approximation the CPU kernels use (cpu::activation). `bias` may be null;
/// y may alias x.
Status biasGelu(const float *x, const float *bias, float *y, int64_t rows,
                int64_t cols, cudaStream_t stream);
Status biasGelu(const Bf16 *x, const float *bias, Bf16 *y, int64_t rows,
                int64_t cols, cudaStream_t stream);

/// Gradient of biasGelu from its input: dx = dy * GELU'(x + bias) (as
/// cpu::activationBackward on the pre-activation), overwritten, may alias dy
/// or x; dbias[c] = sum_rows dx[r,c], overwritten or added into when
/// `accumulate`. `bias` and `dbias` may be null.
Status biasGeluBackward(const float *x, const float *bias, const float *dy,
                        float *dx, float *dbias, int64_t rows, int64_t cols,
                        bool accumulate, cudaStream_t stream);
Status biasGeluBackward(const Bf16 *x, const float *bias, const Bf16 *dy,
                        Bf16 *dx, float *dbias, int64_t rows, int64_t cols,
                        bool accumulate, cudaStream_t stream);

/// The embedding sublayer up to its LayerNorm: sum[b,s,:] = word[ids[b,s]] +
/// pos[s] + type[typeIds[b,s]] (cpu::embed; typeIds may be null: all type 0)
/// and y = LayerNorm(sum) with scale, bias and eps (cpu::layerNorm). The
/// projection that follows (hidden_mapping_in) is a dense layer, not part of
/// this kernel. `sum` may be null; it is what layerNormBackward needs. Ids are
/// not checked on the device: a token whose id or type id lies outside its
/// table gets NaN in every output value (no out-of-bounds read).
Status embedLayerNorm(const int32_t *ids, const int32_t *typeIds,
                      const float *word, const float *pos, const float *type,
                      const float *scale, const float *bias, float *sum,
                      float *y, int64_t batch, int64_t seq, int64_t dEmb,
                      int64_t vocab, int64_t typeVocab, float eps,
                      cudaStream_t stream);
Status embedLayerNorm(const int32_t *ids, const int32_t *typeIds,
                      const float *word, const float *pos, const float *type,
                      const float *scale, const float *bias, Bf16 *sum, Bf16 *y,
                      int64_t batch, int64_t seq, int64_t dEmb, int64_t vocab,
                      int64_t typeVocab, float eps, cudaStream_t stream);

//===----------------------------------------------------------------------===//
// Softmax and cross-entropy
//===----------------------------------------------------------------------===//

/// Row softmax over the last axis of [rows, cols] (max-subtracted), as
/// cpu::softmax. y may alias x.
Status softmax(const float *x, float *y, int64_t rows, int64_t cols,
               cudaStream_t stream);
Status softmax(const Bf16 *x, Bf16 *y, int64_t rows, int64_t cols,
               cudaStream_t stream);

/// dx = y * (dy - sum_c y * dy) per row, as cpu::softmaxBackward. dx may
/// alias dy.
Status softmaxBackward(const float *y, const float *dy, float *dx, int64_t rows,
                       int64_t cols, cudaStream_t stream);
Status softmaxBackward(const Bf16 *y, const Bf16 *dy, Bf16 *dx, int64_t rows,
                       int64_t cols, cudaStream_t stream);

/// Weighted softmax cross-entropy, as cpu::softmaxCrossEntropy: *loss (one
/// device float) = sum_r w[r] * (logsumexp(logits[r]) - logits[r, labels[r]])
/// and dlogits = lossScale * w[r] * (softmax(logits[r]) - onehot(labels[r])).
/// `weights` may be null (all 1); a row labelled -1 adds no loss and gets a
/// zero gradient row. dlogits may be null and may alias logits. A label
/// outside [-1, classes) makes *loss NaN and its gradient row zero, and is
/// reported to `check`.
Status softmaxCrossEntropy(const float *logits, const int32_t *labels,
                           const float *weights, float *dlogits, float *loss,
                           int64_t rows, int64_t classes, float lossScale,
                           cudaStream_t stream, IdCheck check = {});
Status softmaxCrossEntropy(const Bf16 *logits, const int32_t *labels,
                           const float *weights, Bf16 *dlogits, float *loss,
                           int64_t rows, int64_t classes, float lossScale,
                           cudaStream_t stream, IdCheck check = {});

/// The gradient alone with the loss scale in device memory (*lossScale, one
/// float: the plan's dloss, a value of the training step): dlogits as
/// softmaxCrossEntropy computes it, no loss.
Status softmaxCrossEntropyGrad(const float *logits, const int32_t *labels,
                               const float *weights, const float *lossScale,
                               float *dlogits, int64_t rows, int64_t classes,
                               cudaStream_t stream, IdCheck check = {});
Status softmaxCrossEntropyGrad(const Bf16 *logits, const int32_t *labels,
                               const float *weights, const float *lossScale,
                               Bf16 *dlogits, int64_t rows, int64_t classes,
                               cudaStream_t stream, IdCheck check = {});

//===----------------------------------------------------------------------===//
// Attention (Attention.cu)
//===----------------------------------------------------------------------===//

/// The largest head dimension the attention kernels take.
constexpr int64_t kMaxAttentionHeadDim = 128;

/// Shape, masks and dropout of the attention core, as cpu::attention: q, k,
/// v and out are [batch, seq, heads, headDim]; logits are scaled by
/// 1/sqrt(headDim); key k of query q is masked when ids[b,k] == padId or, if
/// `causal`, when k > q; a query whose own id is padId attends uniformly to
/// every key. `ids` ([batch, seq] on the device) may be null: no padding
/// mask. With dropoutRate > 0, probability (b, h, q, k) is kept, divided by
/// 1 - rate, when the CPU's uniform of element ((b * heads + h) * seq + q) *
/// seq + k under dropoutKey is >= rate (cpu::AttentionDropout; an executor
/// passes rate 0 where the CPU's dropout is inactive).
struct AttentionConfig {
  int64_t batch = 0, seq = 0, heads = 0, headDim = 0;
  const int32_t *ids = nullptr;
  int32_t padId = 0;
  bool causal = false;
  double dropoutRate = 0.0;
  CounterKey dropoutKey;
};

/// Attention forward without the [seq, seq] probabilities in memory (online
/// softmax over key tiles). `lse` ([batch, heads, seq] fp32) receives each
/// row's logsumexp of the scaled, masked logits (the backward's input), or
/// is null.
Status attention(const float *q, const float *k, const float *v, float *out,
                 float *lse, const AttentionConfig &config,
                 cudaStream_t stream);
Status attention(const Bf16 *q, const Bf16 *k, const Bf16 *v, Bf16 *out,
                 float *lse, const AttentionConfig &config,
                 cudaStream_t stream);

/// Gradient of attention, as cpu::attentionBackward, from the forward's
/// output `out`, its gradient `dout` and its logsumexp `lse`: the
/// probabilities are recomputed tile by tile, the softmax correction is
/// rowsum(dout o out), and the dropout mask is drawn again. dq, dk and dv are
/// overwritten; each may be null.
Status attentionBackward(const float *q, const float *k, const float *v,
                         const float *out, const float *dout, const float *lse,
                         float *dq, float *dk, float *dv,
                         const AttentionConfig &config, cudaStream_t stream);
Status attentionBackward(const Bf16 *q, const Bf16 *k, const Bf16 *v,
                         const Bf16 *out, const Bf16 *dout, const float *lse,
                         Bf16 *dq, Bf16 *dk, Bf16 *dv,
                         const AttentionConfig &config, cudaStream_t stream);

//===----------------------------------------------------------------------===//
// Training noise and optimizer
//===----------------------------------------------------------------------===//

/// y[i] = x[i] * r_i over n values with u_i the counter-based uniform of
/// element i under `key` (cpu::CounterUniforms: the same Philox4x32-10 draws,
/// so the CPU and the GPU drop the same elements):
///   dropout (rate in [0, 1)): y = u_i >= rate ? x / (1 - rate) : 0
///   jitter (rate in [0, 1]):  y = x * fma(2 rate, u_i, 1 - rate)
/// y may alias x.
Status randomScale(const float *x, float *y, int64_t n, bool dropout,
                   double rate, CounterKey key, cudaStream_t stream);
Status randomScale(const Bf16 *x, Bf16 *y, int64_t n, bool dropout, double rate,
                   CounterKey key, cudaStream_t stream);

/// AdamW update number `step` of n parameters in place, bit for bit
/// cpu::adamwStep (one f32 rounding per operation, no fused multiply-add).
/// `gradScale` points to one device float multiplying every gradient value
/// first (global-norm clipping), or is null for 1.
Status adamwStep(float *param, const float *grad, float *m, float *v, int64_t n,
                 double lr, int64_t step, const AdamWConfig &config,
                 const float *gradScale, cudaStream_t stream);

/// *norm (one device double) = sqrt of the sum of squares of all the values
/// of the device tensors, summed in double in blocks whose boundaries depend
/// only on the tensor sizes (cpu::globalNorm).
Status globalNorm(const std::vector<ConstValues> &tensors, double *norm,
                  cudaStream_t stream);

/// *scale (one device float) = float(maxNorm / *norm) when *norm >= maxNorm,
/// else 1: the factor cpu::clipByGlobalNorm multiplies the gradients by,
/// for adamwStep's gradScale.
Status clipScale(const double *norm, double maxNorm, float *scale,
                 cudaStream_t stream);

//===----------------------------------------------------------------------===//
// Mixture-of-experts routing (fp32; layouts of cpu::routeExpertsChoose etc.)
//===----------------------------------------------------------------------===//

/// The router softmax fused with experts-choose routing: probs = row softmax
/// of logits [groups*tokensPerGroup, experts] (written out for the router
/// losses and the backward pass), then as cpu::routeExpertsChoose on those
/// probs: expert e of group g takes its `capacity` highest-probability tokens
/// in descending order, ties to the lower token index. Without logits (null)
/// `probs` are the given probabilities, only read (the plan's
/// route_experts_choose). Requires capacity <= tokensPerGroup and 8 *
/// tokensPerGroup (rounded up to a power of two) bytes of shared memory per
/// block.
Status routeExpertsChoose(const float *logits, float *probs, int32_t *tokens,
                          float *gates, int32_t *offsets, int64_t groups,
                          int64_t tokensPerGroup, int64_t experts,
                          int64_t capacity, cudaStream_t stream);

/// Tokens-choose routing with capacity, as cpu::routeTokensChoose: top-k
/// experts per token (ties to the lower expert), assignments placed in expert
/// buffers all first choices before any second choice, tokens in order or by
/// descending top-1 probability (stable) when `batchPrioritized`; positions
/// >= capacity are dropped.
Status routeTokensChoose(const float *probs, int32_t *tokens, float *gates,
                         int32_t *offsets, int64_t groups,
                         int64_t tokensPerGroup, int64_t experts, int64_t k,
                         int64_t capacity, bool batchPrioritized,
                         cudaStream_t stream);

/// sigma-MoE routing, as cpu::routeSigmoidTopK: gate = sigmoid(logit), top-k
/// per token (ties to the lower expert), entries sorted by expert then token.
Status routeSigmoidTopK(const float *logits, int32_t *tokens, float *gates,
                        int32_t *offsets, int64_t numTokens, int64_t experts,
                        int64_t k, cudaStream_t stream);

//===----------------------------------------------------------------------===//
// sigma-MoE router training (SigmaMoe.cu)
//===----------------------------------------------------------------------===//

/// Expert dropout over n router values (cpu::expertDropout): y[i] = fill
/// when the counter-based uniform of element i under `key` is < rate (the
/// CPU's draws, so the same experts drop), else x[i]. The forward fills -inf
/// (a dropped expert loses the top-k), the gradient 0. rate in [0, 1); y may
/// alias x.
Status dropExperts(const float *x, float *y, int64_t n, double rate, float fill,
                   CounterKey key, cudaStream_t stream);

/// *loss = the negative entropy sum_e p_e log p_e of the batch mean p of the
/// token softmaxes of logits [numTokens, experts] (cpu::entropyRegularizer:
/// log p from the column maxima of the log-softmax, sums in double).
/// `scratch` holds numTokens + experts doubles.
Status entropyRegularizer(const float *logits, float *loss, int64_t numTokens,
                          int64_t experts, double *scratch,
                          cudaStream_t stream);

/// Its gradient (cpu::entropyRegularizerGrad) with the loss gradient *dloss
/// read on the device: dlogits[t, e] = dloss / numTokens * s_e (log p_e -
/// sum_j s_j log p_j), s the softmax of row t. dlogits must not alias
/// logits; `scratch` as for entropyRegularizer.
Status entropyRegularizerGrad(const float *logits, const float *dloss,
                              float *dlogits, int64_t numTokens,
                              int64_t experts, double *scratch,
                              cudaStream_t stream);

//===----------------------------------------------------------------------===//
// Grouped experts (GroupedExperts.cu)
//===----------------------------------------------------------------------===//

/// The activation between the two layers of an expert.
enum class ExpertActivation : int { None, Relu, Gelu };

/// The slot layout of grouped experts: expert e owns the slots offsets[e] ..
/// offsets[e + 1] (device arrays; any counts, as sigma-MoE's top-k routing
/// gives them). A slot whose token is negative is empty: its output rows are
/// zero and it adds nothing to a gradient. Slot i reads row i of x [slots,
/// d], or, with `gather`, row tokens[i] of x [numTokens, d]: the dispatch
/// fused into the operand loads (a token >= numTokens reads as an empty
/// slot and is reported to `check`).
struct GroupedExperts {
  const int32_t *tokens = nullptr;
  const int32_t *offsets = nullptr;
  int64_t slots = 0, experts = 0, d = 0, f = 0;
  ExpertActivation activation = ExpertActivation::None;
  bool gather = false;
  int64_t numTokens = 0;
  IdCheck check;
};

/// yd [slots, d] = act(x w1[e] + b1[e]) w2[e] + b2[e] over the slots of every
/// expert e (cpu::experts), w1 [experts, d, f], w2 [experts, f, d], b1
/// [experts, f] and b2 [experts, d] (either bias may be null); fp32
/// products. One launch per layer covers every expert: the row tiles are
/// found on the device from the offsets, nothing synchronises (a CUDA graph
/// can hold it). `hidden` holds slots * f floats.
Status groupedExperts(const float *x, const float *w1, const float *b1,
                      const float *w2, const float *b2, float *yd,
                      float *hidden, const GroupedExperts &layout,
                      cudaStream_t stream);
Status groupedExperts(const Bf16 *x, const float *w1, const float *b1,
                      const float *w2, const float *b2, Bf16 *yd, float *hidden,
                      const GroupedExperts &layout, cudaStream_t stream);

/// The gradient of groupedExperts (cpu::expertsBackwardRecompute): with the
/// pre-activations P = x w1 + b1 recomputed, dP = (dyd w2^T) * act'(P),
/// dxd = dP w1^T [slots, d] (one row per slot, also when gathering), and per
/// expert, summed over its slots in slot order, dw1 = x^T dP, db1 = the
/// column sums of dP, dw2 = act(P)^T dyd, db2 = the column sums of dyd (all
/// overwritten; an expert without slots gets zeros). `scratch` holds
/// 2 * slots * f floats.
Status groupedExpertsBackward(const float *x, const float *w1, const float *b1,
                              const float *w2, const float *dyd, float *dxd,
                              float *dw1, float *db1, float *dw2, float *db2,
                              float *scratch, const GroupedExperts &layout,
                              cudaStream_t stream);
Status groupedExpertsBackward(const Bf16 *x, const float *w1, const float *b1,
                              const float *w2, const Bf16 *dyd, Bf16 *dxd,
                              float *dw1, float *db1, float *dw2, float *db2,
                              float *scratch, const GroupedExperts &layout,
                              cudaStream_t stream);

//===----------------------------------------------------------------------===//
// Token mixing (Mixing.cu)
//===----------------------------------------------------------------------===//

class GemmContext;

/// How spectral and structured mixing are computed: a plan step's
/// `algorithm` (mixer::MixAlgorithm).
enum class MixAlgorithm : int32_t { Fft, Matmul };

/// Y[b] = L X[b] op(R) for X [batch, seq, d], L [seq, seq] and R [d, d]
/// (device matrices; op(R) = R^T when `transposeRight`), as the CPU's
/// two-sided mixing: X op(R) over all batch*seq rows into `work` [batch, seq,
/// d], then one strided batch sharing L. Linear mixing (L = W_s, R = W_h) and
/// the matmul algorithm of structured mixing. T is float, or Bf16 on the
/// tensor cores with fp32 accumulation (X op(R) stored in bf16). Enqueued on
/// gemm's stream.
template <typename T>
Status twoSidedMix(GemmContext &gemm, const T *x, const T *left, const T *right,
                   bool transposeRight, T *y, T *work, int64_t batch,
                   int64_t seq, int64_t d);

/// Gradient of twoSidedMix, all results overwritten:
///   dX[b] = L^T dY[b] op(R)^T,
///   dL = sum_b dY[b] (X[b] op(R))^T, added example by example in order,
///   dR = sum_b (L X[b])^T dY[b] (the gradient of op(R)), transposed into
///        the gradient of R itself when `transposeRight`.
/// dL and dR are fp32 for either T. `xRight`, `leftX` and `leftDy` ([batch,
/// seq, d] each) receive X op(R), L X and L^T dY on the way.
template <typename T>
Status twoSidedMixBackward(GemmContext &gemm, const T *x, const T *left,
                           const T *right, bool transposeRight, const T *dy,
                           T *dx, float *dLeft, float *dRight, T *xRight,
                           T *leftX, T *leftDy, int64_t batch, int64_t seq,
                           int64_t d);

/// Fourier mixing Y = Re(F_seq X F_d) of X [batch, seq, d], or Hartley mixing
/// Re - Im of the same 2-D DFT (F[j,k] = exp(-2 pi i j k / n)), as
/// cpu::SpectralMix, in fp32:
///   Fft: one batched 2-D real-to-complex cuFFT transform of a copy of X (the
///   columns above d/2 read from the Hermitian mirror);
///   Matmul: [P1 | P2] = X [C_d | S_d] (Hartley [C_d + S_d | C_d - S_d]) over
///   all rows, then Y[b] = C_s P1[b] - S_s P2[b] (Hartley + S_s P2[b]) as
///   strided batches, C and S the cosine and sine matrices.
/// The mixing is self-adjoint (the matrices are symmetric): its input
/// gradient is run() on dY. Temporaries come from the stream-ordered pool.
class SpectralMix {
public:
  /// Touches no device.
  SpectralMix(int64_t batch, int64_t seq, int64_t d, bool hartley,
              MixAlgorithm algorithm);
  ~SpectralMix();
  SpectralMix(const SpectralMix &) = delete;
  SpectralMix &operator=(const SpectralMix &) = delete;

  /// Makes the device resources once: the cuFFT plan (and its work area), or
  /// the real DFT matrices, built on `stream`. Must come before run() and
  /// outside graph capture (it allocates device memory); later calls do
  /// nothing.
  Status prepare(cudaStream_t stream);
  /// y = mix(x) on gemm's stream; y must not overlap x.
  Status run(const float *x, float *y, GemmContext &gemm) const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl;
};

/// Circulant mixing Y[b] = Circ(v_s) X[b] Circ(v_h)^T with Circ(v)[r,c] =
/// v[(r - c) mod n] (vs [seq], vh [d]), or Toeplitz mixing with Toep(t)[r,c]
/// = t[(n - 1) + c - r] (vs [2 seq - 1], vh [2 d - 1]), as cpu::StructuredMix,
/// in fp32:
///   Fft: a 2-D circular convolution by cuFFT on a [rows, cols] grid, [seq,
///   d] for circulant mixing and, for Toeplitz mixing, the smallest lengths
///   >= 2 seq - 1 and >= 2 d - 1 with no prime factor above 7, X zero-padded
///   and each kernel embedded in a circulant vector of that length;
///   Matmul: the dense matrices expanded from vs and vh at every run (they
///   are parameters), then twoSidedMix.
/// Temporaries come from the stream-ordered pool.
class StructuredMix {
public:
  /// Touches no device.
  StructuredMix(int64_t batch, int64_t seq, int64_t d, bool toeplitz,
                MixAlgorithm algorithm);
  ~StructuredMix();
  StructuredMix(const StructuredMix &) = delete;
  StructuredMix &operator=(const StructuredMix &) = delete;

  /// Makes the cuFFT plans of the Fft algorithm once (nothing for Matmul):
  /// before run() and outside graph capture; later calls do nothing.
  Status prepare();
  /// y = mix(x) on gemm's stream; y must not overlap x.
  Status run(const float *x, const float *vs, const float *vh, float *y,
             GemmContext &gemm) const;
  /// The transform grid of the Fft algorithm.
  int64_t fftRows() const;
  int64_t fftCols() const;

  struct Impl;

private:
  std::unique_ptr<Impl> impl;
};

/// Gradient of StructuredMix (either algorithm: both compute the same map),
/// as cpu::StructuredMixBackward, in fp32 on gemm's stream: with A and B the
/// dense sequence and hidden matrices, twoSidedMixBackward gives dX (written)
/// and dA, dB, which are folded onto the kernels: dvs[j] (dvh[j]) is the sum,
/// in row order in double, of the entries of dA (dB) built from v[j] (a
/// circulant wrap-around diagonal, or a Toeplitz diagonal). dvs and dvh are
/// overwritten. Temporaries come from the stream-ordered pool.
Status structuredMixBackward(const float *x, const float *vs, const float *vh,
                             const float *dy, float *dx, float *dvs, float *dvh,
                             int64_t batch, int64_t seq, int64_t d,
                             bool toeplitz, GemmContext &gemm);

} // namespace mixer::cuda

#endif // MIXER_RUNTIME_CUDA_KERNELS_H
