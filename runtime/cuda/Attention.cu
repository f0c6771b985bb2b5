//===- Attention.cu - Flash-style attention core --------------------------===//
//
// cpu::attention and cpu::attentionBackward without the [seq, seq] logits in
// memory. A block of 16 x 16 threads owns a tile of 64 queries (the forward
// and dQ) or of keys (dK and dV) and walks over the other side's tiles, which
// it stages in shared memory as fp32 (rows padded by one float against bank
// conflicts, head dimensions zero-padded to 64 or 128). Every product is a
// register micro-tile: thread (tx, ty) owns rows ty + 16 i and columns
// tx + 16 j, so a row's 16 owners are 16 lanes of one warp and row maxima and
// sums are shuffles in a fixed order.
//
// The forward keeps the running maximum m and sum l of each query row (online
// softmax), rescales its output accumulator when m grows, and stores the row
// logsumexp m + log(l). The backward recomputes P = exp(logit - logsumexp)
// tile by tile: one kernel per key tile accumulates dV = P'^T dO and
// dK = dS^T Q over all query tiles, another per query tile dQ = dS K over all
// key tiles, with dS = P o (dP - delta) and delta = rowsum(dO o O). Each
// output element is summed by one thread in a fixed order: no atomics, so
// results repeat bit for bit.
//
// Dropout redraws the CPU's uniforms (Philox.cuh) for element
// ((b * heads + h) * seq + q) * seq + k of the probabilities.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Common.cuh"
#include "runtime/cuda/Philox.cuh"

#include <cmath>

namespace mixer::cuda {
namespace {

using namespace detail;

/// 16 x 16 threads per block.
constexpr int kSide = 16;
constexpr int kThreads = kSide * kSide;
/// Blocks per SM the tile kernels are compiled for: caps them at 128
/// registers per thread (runtime/cuda/register-budgets.txt).
constexpr int kMinBlocks = 2;
/// Queries per tile.
constexpr int kQueryTile = 64;

/// Keys per tile: the forward holds one output row block of D floats per
/// thread row; the backward kernels hold two accumulators, so they take
/// fewer keys at D = 128 to stay within the register budget.
template <int D> constexpr int forwardKeyTile() { return 64; }
template <int D> constexpr int backwardKeyTile() { return D > 64 ? 32 : 64; }

/// How a query row is masked: normal rows mask pad keys (and future keys when
/// causal); a pad query attends uniformly to every key; rows past the
/// sequence end take no part.
enum RowKind : int { kNormalRow = 0, kPadRow = 1, kOutsideRow = 2 };

/// The problem as the kernels see it.
struct Problem {
  int64_t seq;
  int64_t heads;
  int64_t headDim;
  const int32_t *ids;
  int32_t padId;
  bool causal;
  float scale;
  /// Dropout: element kept when its 24 random bits are >= dropFrom, then
  /// divided by keep.
  bool dropout;
  uint32_t dropFrom;
  float keep;
  uint32_t seed, stream, step;

  __device__ int64_t rowStride() const { return heads * headDim; }
  /// Offset of (b, h) = (bh / heads, bh % heads) in a [batch, seq, heads,
  /// headDim] tensor.
  __device__ int64_t base(int64_t bh) const {
    return bh / heads * seq * rowStride() + bh % heads * headDim;
  }
  __device__ bool isPad(int64_t bh, int64_t token) const {
    return ids && ids[bh / heads * seq + token] == padId;
  }
  __device__ int rowKind(int64_t bh, int64_t query) const {
    return query >= seq ? kOutsideRow : isPad(bh, query) ? kPadRow : kNormalRow;
  }
  /// Whether key `key` is masked for every normal row.
  __device__ bool keyMasked(int64_t bh, int64_t key) const {
    return key >= seq || isPad(bh, key);
  }
  /// The softmax input of (query, key) from the raw dot product: -inf where
  /// masked (probability exactly 0), 0 on a pad row (uniform weights).
  __device__ float logit(int kind, int64_t query, int64_t key, bool masked,
                         float dot) const {
    if (kind == kPadRow)
      return key < seq ? 0.0f : -INFINITY;
    if (kind == kOutsideRow || masked || (causal && key > query))
      return -INFINITY;
    return dot * scale;
  }
  /// Whether dropout keeps probability (bh, query, key).
  __device__ bool kept(int64_t bh, int64_t query, int64_t key) const {
    uint64_t element = (uint64_t(bh) * seq + query) * seq + key;
    return counterBits(element, seed, stream, step) >= dropFrom;
  }
};

/// dst[r][d] (row stride D + 1) = src row row0 + r, as fp32; rows past the
/// sequence end and columns past the head dimension are zero.
template <int D, typename T>
__device__ void loadTile(float *dst, const T *src, int64_t row0, int rows,
                         const Problem &p) {
  for (int i = threadIdx.x; i < rows * D; i += kThreads) {
    int r = i / D, d = i % D;
    float value = 0.0f;
    if (row0 + r < p.seq && d < p.headDim)
      value = load(src, (row0 + r) * p.rowStride() + d);
    dst[r * (D + 1) + d] = value;
  }
}

/// acc[i][j] += sum_x A[ty + 16 i][x] * B[x][tx + 16 j] over X, where
/// A[r][x] = a[r * aRow + x * aCol] and B[x][c] = b[c * bRow + x * bCol]: the
/// strides express A·B, A·Bᵀ and Aᵀ·B over shared-memory tiles.
template <int RI, int CJ, int X>
__device__ __forceinline__ void accumulateProduct(float (&acc)[RI][CJ],
                                                  const float *a, int aRow,
                                                  int aCol, const float *b,
                                                  int bRow, int bCol) {
  int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
#pragma unroll 4
  for (int x = 0; x < X; ++x) {
    float av[RI], bv[CJ];
#pragma unroll
    for (int i = 0; i < RI; ++i)
      av[i] = a[(ty + kSide * i) * aRow + x * aCol];
#pragma unroll
    for (int j = 0; j < CJ; ++j)
      bv[j] = b[(tx + kSide * j) * bRow + x * bCol];
#pragma unroll
    for (int i = 0; i < RI; ++i)
#pragma unroll
      for (int j = 0; j < CJ; ++j)
        acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

/// acc[i][j] = sum_d a[ty + 16 i][d] * b[tx + 16 j][d] over D columns, both
/// with row stride D + 1.
template <int RI, int CJ, int D>
__device__ __forceinline__ void dotsABt(float (&acc)[RI][CJ], const float *a,
                                        const float *b) {
#pragma unroll
  for (int i = 0; i < RI; ++i)
#pragma unroll
    for (int j = 0; j < CJ; ++j)
      acc[i][j] = 0.0f;
  accumulateProduct<RI, CJ, D>(acc, a, D + 1, 1, b, D + 1, 1);
}

/// acc[i][j] += sum_x a[ty + 16 i][x] * b[x][tx + 16 j] over X, row strides
/// lda and ldb.
template <int RI, int CJ, int X>
__device__ __forceinline__ void accumulateAB(float (&acc)[RI][CJ],
                                             const float *a, int lda,
                                             const float *b, int ldb) {
  accumulateProduct<RI, CJ, X>(acc, a, lda, 1, b, 1, ldb);
}

/// acc[i][j] += sum_x a[x][ty + 16 i] * b[x][tx + 16 j] over X, row strides
/// lda and ldb.
template <int RI, int CJ, int X>
__device__ __forceinline__ void accumulateAtB(float (&acc)[RI][CJ],
                                              const float *a, int lda,
                                              const float *b, int ldb) {
  accumulateProduct<RI, CJ, X>(acc, a, 1, lda, b, 1, ldb);
}

/// Reduction over the 16 lanes that own one row (a half warp), in a fixed
/// order.
__device__ __forceinline__ float rowMax(float v) {
  for (int offset = kSide / 2; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}
__device__ __forceinline__ float rowSum(float v) {
  for (int offset = kSide / 2; offset > 0; offset >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/// Stores the [rows, D] accumulator tile rows row0 + ty + 16 i, columns
/// tx + 16 j, times `scale`, into a [batch, seq, heads, headDim] tensor at
/// `base`, skipping padding rows and columns.
template <int RI, int DJ, typename T>
__device__ void storeRows(T *dst, int64_t base, int64_t row0,
                          const float (&acc)[RI][DJ], const float (&scale)[RI],
                          const Problem &p) {
  int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
#pragma unroll
  for (int i = 0; i < RI; ++i) {
    int64_t row = row0 + ty + kSide * i;
    if (row >= p.seq)
      continue;
#pragma unroll
    for (int j = 0; j < DJ; ++j) {
      int d = tx + kSide * j;
      if (d < p.headDim)
        store(dst, base + row * p.rowStride() + d, acc[i][j] * scale[i]);
    }
  }
}

/// Shared memory of the forward: Q, K (then P) and V tiles.
template <int D> constexpr size_t forwardSharedBytes() {
  return sizeof(float) * (kQueryTile + 2 * forwardKeyTile<D>()) * (D + 1);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    attentionForwardKernel(const T *q, const T *k, const T *v, T *out,
                           float *lse, Problem p) {
  constexpr int BQ = kQueryTile, BK = forwardKeyTile<D>(), LD = D + 1;
  constexpr int RI = BQ / kSide, CJ = BK / kSide, DJ = D / kSide;
  static_assert(BQ * (BK + 1) <= BK * LD, "P must fit in the K tile");
  extern __shared__ float shared[];
  float *qs = shared, *ks = qs + BQ * LD, *vs = ks + BK * LD;
  float *ps = ks; // P [BQ][BK + 1] replaces K once the logits are taken
  __shared__ int rowKinds[BQ];
  __shared__ bool keyMasks[BK];

  int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
  int64_t bh = blockIdx.x, q0 = int64_t(blockIdx.y) * BQ;
  int64_t base = p.base(bh);
  loadTile<D>(qs, q + base, q0, BQ, p);
  bool padQuery = false;
  if (threadIdx.x < BQ) {
    rowKinds[threadIdx.x] = p.rowKind(bh, q0 + threadIdx.x);
    padQuery = rowKinds[threadIdx.x] == kPadRow;
  }
  // Under the causal mask keys past the tile's last query get no weight,
  // unless a pad query spreads over every key (as the CPU kernel).
  int64_t keyEnd = p.seq;
  if (__syncthreads_or(padQuery) == 0 && p.causal)
    keyEnd = min(p.seq, q0 + BQ);

  float m[RI], l[RI], acc[RI][DJ];
#pragma unroll
  for (int i = 0; i < RI; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < DJ; ++j)
      acc[i][j] = 0.0f;
  }

  for (int64_t k0 = 0; k0 < keyEnd; k0 += BK) {
    loadTile<D>(ks, k + base, k0, BK, p);
    loadTile<D>(vs, v + base, k0, BK, p);
    if (threadIdx.x < BK)
      keyMasks[threadIdx.x] = p.keyMasked(bh, k0 + threadIdx.x);
    __syncthreads();
    float s[RI][CJ];
    dotsABt<RI, CJ, D>(s, qs, ks);
    __syncthreads(); // K is read; P takes its place
#pragma unroll
    for (int i = 0; i < RI; ++i) {
      int r = ty + kSide * i;
      int64_t query = q0 + r;
      float tileMax = -INFINITY;
#pragma unroll
      for (int j = 0; j < CJ; ++j) {
        int c = tx + kSide * j;
        s[i][j] = p.logit(rowKinds[r], query, k0 + c, keyMasks[c], s[i][j]);
        tileMax = fmaxf(tileMax, s[i][j]);
      }
      float next = fmaxf(m[i], rowMax(tileMax));
      // A row with no key yet has m = -inf: subtract 0 instead (exp(-inf) =
      // 0 for every masked logit).
      float shift = next == -INFINITY ? 0.0f : next;
      float correction = expf(m[i] - shift);
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < CJ; ++j) {
        int c = tx + kSide * j;
        float prob = expf(s[i][j] - shift);
        sum += prob;
        if (p.dropout && !p.kept(bh, query, k0 + c))
          prob = 0.0f;
        ps[r * (BK + 1) + c] = prob;
      }
      l[i] = l[i] * correction + rowSum(sum);
      m[i] = next;
#pragma unroll
      for (int j = 0; j < DJ; ++j)
        acc[i][j] *= correction;
    }
    __syncthreads();
    accumulateAB<RI, DJ, BK>(acc, ps, BK + 1, vs, LD);
    __syncthreads();
  }

  float inverse[RI];
#pragma unroll
  for (int i = 0; i < RI; ++i) {
    // As the CPU kernel: 1 / sum, then / (1 - rate) under dropout.
    inverse[i] = 1.0f / l[i];
    if (p.dropout)
      inverse[i] /= p.keep;
    int64_t query = q0 + ty + kSide * i;
    if (lse && tx == 0 && query < p.seq)
      lse[bh * p.seq + query] = m[i] + logf(l[i]);
  }
  storeRows(out, base, q0, acc, inverse, p);
}

/// delta[(b * heads + h) * seq + s] = sum_d dout * out over the row (b, s, h):
/// one warp per row.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    attentionDeltaKernel(const T *out, const T *dout, float *delta,
                         int64_t rows, int64_t seq, int64_t heads,
                         int64_t headDim) {
  int64_t row = int64_t(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (row >= rows)
    return;
  float sum = 0.0f;
  for (int64_t d = threadIdx.x % 32; d < headDim; d += 32)
    sum += load(out, row * headDim + d) * load(dout, row * headDim + d);
  sum = warpSum(sum);
  if (threadIdx.x % 32 == 0) {
    int64_t h = row % heads, bs = row / heads;
    delta[(bs / seq * heads + h) * seq + bs % seq] = sum;
  }
}

/// Shared memory of both backward kernels: Q, dO, K and V tiles and the
/// [queries, keys] tile of P' or dS.
template <int D> constexpr size_t backwardSharedBytes() {
  constexpr int BK = backwardKeyTile<D>();
  return sizeof(float) *
         ((2 * kQueryTile + 2 * BK) * (D + 1) + kQueryTile * (BK + 1));
}

/// The per-query-tile state both backward kernels share: the probabilities P
/// and the logit gradients dS of this thread's micro-tile, recomputed from
/// the Q, dO, K and V tiles in shared memory.
template <int RI, int CJ, int D> struct ScoreTile {
  float prob[RI][CJ];
  float grad[RI][CJ];
  uint32_t keptBits = 0;

  /// P = exp(logit - logsumexp) and the dropout draws.
  __device__ void probabilities(const float *qs, const float *ks,
                                const int *rowKinds, const float *rowLse,
                                const bool *keyMasks, int64_t bh, int64_t q0,
                                int64_t k0, const Problem &p) {
    int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
    dotsABt<RI, CJ, D>(prob, qs, ks);
#pragma unroll
    for (int i = 0; i < RI; ++i) {
      int r = ty + kSide * i;
#pragma unroll
      for (int j = 0; j < CJ; ++j) {
        int c = tx + kSide * j;
        float logit =
            p.logit(rowKinds[r], q0 + r, k0 + c, keyMasks[c], prob[i][j]);
        prob[i][j] = logit == -INFINITY ? 0.0f : expf(logit - rowLse[r]);
        if (p.dropout && p.kept(bh, q0 + r, k0 + c))
          keptBits |= 1u << (i * CJ + j);
      }
    }
  }

  /// P' = P o mask / (1 - rate), the weights that multiplied V.
  __device__ float dropped(int i, int j, const Problem &p) const {
    if (!p.dropout)
      return prob[i][j];
    return keptBits >> (i * CJ + j) & 1u ? prob[i][j] / p.keep : 0.0f;
  }

  /// dS = P o (dP - delta) with dP = (dO V^T) o mask / (1 - rate); zero on
  /// pad rows, whose logits are constants.
  __device__ void gradients(const float *dos, const float *vs,
                            const int *rowKinds, const float *rowDelta,
                            const Problem &p) {
    int ty = threadIdx.x / kSide;
    dotsABt<RI, CJ, D>(grad, dos, vs);
#pragma unroll
    for (int i = 0; i < RI; ++i) {
      int r = ty + kSide * i;
#pragma unroll
      for (int j = 0; j < CJ; ++j) {
        float dp = grad[i][j];
        if (p.dropout)
          dp = keptBits >> (i * CJ + j) & 1u ? dp / p.keep : 0.0f;
        grad[i][j] =
            rowKinds[r] == kNormalRow ? prob[i][j] * (dp - rowDelta[r]) : 0.0f;
      }
    }
  }
};

/// Loads the row state of query tile q0 into shared memory: row kinds,
/// logsumexp and delta. Returns (to every thread) whether a pad query is in
/// the tile; synchronises.
__device__ bool loadRows(int *rowKinds, float *rowLse, float *rowDelta,
                         const float *lse, const float *delta, int64_t bh,
                         int64_t q0, const Problem &p) {
  bool padQuery = false;
  if (threadIdx.x < kQueryTile) {
    int64_t query = q0 + threadIdx.x;
    int kind = p.rowKind(bh, query);
    rowKinds[threadIdx.x] = kind;
    bool inside = query < p.seq;
    rowLse[threadIdx.x] = inside ? lse[bh * p.seq + query] : 0.0f;
    rowDelta[threadIdx.x] = inside ? delta[bh * p.seq + query] : 0.0f;
    padQuery = kind == kPadRow;
  }
  return __syncthreads_or(padQuery) != 0;
}

/// dK and dV of one key tile, over every query tile that can reach it.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    attentionKeyValueGradKernel(const T *q, const T *k, const T *v,
                                const T *dout, const float *lse,
                                const float *delta, T *dk, T *dv, Problem p) {
  constexpr int BQ = kQueryTile, BK = backwardKeyTile<D>(), LD = D + 1;
  constexpr int RI = BQ / kSide, CJ = BK / kSide;
  constexpr int KI = BK / kSide, DJ = D / kSide;
  extern __shared__ float shared[];
  float *qs = shared, *dos = qs + BQ * LD, *ks = dos + BQ * LD;
  float *vs = ks + BK * LD, *ps = vs + BK * LD;
  __shared__ int rowKinds[BQ];
  __shared__ float rowLse[BQ], rowDelta[BQ];
  __shared__ bool keyMasks[BK];

  int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
  int64_t bh = blockIdx.x, k0 = int64_t(blockIdx.y) * BK;
  int64_t base = p.base(bh);
  loadTile<D>(ks, k + base, k0, BK, p);
  loadTile<D>(vs, v + base, k0, BK, p);
  if (threadIdx.x < BK)
    keyMasks[threadIdx.x] = p.keyMasked(bh, k0 + threadIdx.x);

  float dkAcc[KI][DJ], dvAcc[KI][DJ];
#pragma unroll
  for (int i = 0; i < KI; ++i)
#pragma unroll
    for (int j = 0; j < DJ; ++j)
      dkAcc[i][j] = dvAcc[i][j] = 0.0f;

  for (int64_t q0 = 0; q0 < p.seq; q0 += BQ) {
    loadTile<D>(qs, q + base, q0, BQ, p);
    loadTile<D>(dos, dout + base, q0, BQ, p);
    bool padQuery = loadRows(rowKinds, rowLse, rowDelta, lse, delta, bh, q0, p);
    // Under the causal mask only pad queries reach keys after the tile.
    if (p.causal && !padQuery && q0 + BQ <= k0)
      continue;
    ScoreTile<RI, CJ, D> tile;
    tile.probabilities(qs, ks, rowKinds, rowLse, keyMasks, bh, q0, k0, p);
#pragma unroll
    for (int i = 0; i < RI; ++i)
#pragma unroll
      for (int j = 0; j < CJ; ++j)
        ps[(ty + kSide * i) * (BK + 1) + tx + kSide * j] =
            tile.dropped(i, j, p);
    __syncthreads();
    accumulateAtB<KI, DJ, BQ>(dvAcc, ps, BK + 1, dos, LD);
    tile.gradients(dos, vs, rowKinds, rowDelta, p);
    __syncthreads(); // P' is read; dS takes its place
#pragma unroll
    for (int i = 0; i < RI; ++i)
#pragma unroll
      for (int j = 0; j < CJ; ++j)
        ps[(ty + kSide * i) * (BK + 1) + tx + kSide * j] = tile.grad[i][j];
    __syncthreads();
    accumulateAtB<KI, DJ, BQ>(dkAcc, ps, BK + 1, qs, LD);
    __syncthreads();
  }

  float one[KI], scale[KI];
#pragma unroll
  for (int i = 0; i < KI; ++i) {
    one[i] = 1.0f;
    scale[i] = p.scale;
  }
  if (dk)
    storeRows(dk, base, k0, dkAcc, scale, p);
  if (dv)
    storeRows(dv, base, k0, dvAcc, one, p);
}

/// dQ of one query tile, over every key tile it attends to.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    attentionQueryGradKernel(const T *q, const T *k, const T *v, const T *dout,
                             const float *lse, const float *delta, T *dq,
                             Problem p) {
  constexpr int BQ = kQueryTile, BK = backwardKeyTile<D>(), LD = D + 1;
  constexpr int RI = BQ / kSide, CJ = BK / kSide, DJ = D / kSide;
  extern __shared__ float shared[];
  float *qs = shared, *dos = qs + BQ * LD, *ks = dos + BQ * LD;
  float *vs = ks + BK * LD, *ps = vs + BK * LD;
  __shared__ int rowKinds[BQ];
  __shared__ float rowLse[BQ], rowDelta[BQ];
  __shared__ bool keyMasks[BK];

  int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
  int64_t bh = blockIdx.x, q0 = int64_t(blockIdx.y) * BQ;
  int64_t base = p.base(bh);
  loadTile<D>(qs, q + base, q0, BQ, p);
  loadTile<D>(dos, dout + base, q0, BQ, p);
  bool padQuery = loadRows(rowKinds, rowLse, rowDelta, lse, delta, bh, q0, p);
  int64_t keyEnd = p.causal && !padQuery ? min(p.seq, q0 + BQ) : p.seq;

  float dqAcc[RI][DJ];
#pragma unroll
  for (int i = 0; i < RI; ++i)
#pragma unroll
    for (int j = 0; j < DJ; ++j)
      dqAcc[i][j] = 0.0f;

  for (int64_t k0 = 0; k0 < keyEnd; k0 += BK) {
    loadTile<D>(ks, k + base, k0, BK, p);
    loadTile<D>(vs, v + base, k0, BK, p);
    if (threadIdx.x < BK)
      keyMasks[threadIdx.x] = p.keyMasked(bh, k0 + threadIdx.x);
    __syncthreads();
    ScoreTile<RI, CJ, D> tile;
    tile.probabilities(qs, ks, rowKinds, rowLse, keyMasks, bh, q0, k0, p);
    tile.gradients(dos, vs, rowKinds, rowDelta, p);
#pragma unroll
    for (int i = 0; i < RI; ++i)
#pragma unroll
      for (int j = 0; j < CJ; ++j)
        ps[(ty + kSide * i) * (BK + 1) + tx + kSide * j] = tile.grad[i][j];
    __syncthreads();
    accumulateAB<RI, DJ, BK>(dqAcc, ps, BK + 1, ks, LD);
    __syncthreads();
  }

  float scale[RI];
#pragma unroll
  for (int i = 0; i < RI; ++i)
    scale[i] = p.scale;
  storeRows(dq, base, q0, dqAcc, scale, p);
}

/// Checks the configuration; fills the kernels' view of it.
Status prepare(const char *kernel, const AttentionConfig &c, Problem &p) {
  for (auto [what, value] : {std::pair<const char *, int64_t>{"batch", c.batch},
                             {"seq", c.seq},
                             {"heads", c.heads}}) {
    Status s = requireNonNegative(kernel, what, value);
    if (!s.ok())
      return s;
  }
  if (c.headDim < 1 || c.headDim > kMaxAttentionHeadDim)
    return Status::error(std::string(kernel) + ": head_dim " +
                         std::to_string(c.headDim) + " is outside [1, " +
                         std::to_string(kMaxAttentionHeadDim) + "]");
  if (!(c.dropoutRate >= 0.0 && c.dropoutRate < 1.0))
    return Status::error(std::string(kernel) + ": dropout rate " +
                         std::to_string(c.dropoutRate) + " is outside [0, 1)");
  if (c.batch * c.heads >= int64_t(1) << 31 ||
      (c.seq + kQueryTile - 1) / kQueryTile > 65535)
    return Status::error(std::string(kernel) + ": " + std::to_string(c.batch) +
                         " x " + std::to_string(c.heads) + " heads of " +
                         std::to_string(c.seq) +
                         " tokens exceed the launch grid");
  p.seq = c.seq;
  p.heads = c.heads;
  p.headDim = c.headDim;
  p.ids = c.ids;
  p.padId = c.padId;
  p.causal = c.causal;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.headDim));
  p.dropout = c.dropoutRate > 0.0;
  // u = bits * 2^-24 >= rate exactly when bits >= ceil(rate * 2^24).
  p.dropFrom = static_cast<uint32_t>(std::ceil(c.dropoutRate * 0x1p24));
  p.keep = static_cast<float>(1.0 - c.dropoutRate);
  p.seed = static_cast<uint32_t>(c.dropoutKey.seed);
  p.stream = static_cast<uint32_t>(c.dropoutKey.stream);
  p.step = static_cast<uint32_t>(c.dropoutKey.step);
  return Status::success();
}

template <typename T, int D>
Status forward(const T *q, const T *k, const T *v, T *out, float *lse,
               const AttentionConfig &c, const Problem &p,
               cudaStream_t stream) {
  const char *kernel = "attention";
  auto function = attentionForwardKernel<typename DeviceStorage<T>::type, D>;
  size_t bytes = forwardSharedBytes<D>();
  Status s = allowSharedMemory(reinterpret_cast<const void *>(function), bytes,
                               kernel, "a query tile");
  if (!s.ok())
    return s;
  dim3 grid(static_cast<unsigned>(c.batch * c.heads),
            static_cast<unsigned>((c.seq + kQueryTile - 1) / kQueryTile));
  function<<<grid, kThreads, bytes, stream>>>(device(q), device(k), device(v),
                                              device(out), lse, p);
  return launchStatus(kernel);
}

template <typename T>
Status attentionImpl(const T *q, const T *k, const T *v, T *out, float *lse,
                     const AttentionConfig &c, cudaStream_t stream) {
  Problem p;
  Status s = prepare("attention", c, p);
  if (!s.ok() || c.batch * c.heads * c.seq == 0)
    return s;
  if (c.headDim <= 64)
    return forward<T, 64>(q, k, v, out, lse, c, p, stream);
  return forward<T, 128>(q, k, v, out, lse, c, p, stream);
}

template <typename T, int D>
Status backward(const T *q, const T *k, const T *v, const T *dout,
                const float *lse, const float *delta, T *dq, T *dk, T *dv,
                const AttentionConfig &c, const Problem &p,
                cudaStream_t stream) {
  const char *kernel = "attention_backward";
  using S = typename DeviceStorage<T>::type;
  size_t bytes = backwardSharedBytes<D>();
  unsigned bh = static_cast<unsigned>(c.batch * c.heads);
  if (dk || dv) {
    auto function = attentionKeyValueGradKernel<S, D>;
    Status s = allowSharedMemory(reinterpret_cast<const void *>(function),
                                 bytes, kernel, "a key tile");
    if (!s.ok())
      return s;
    constexpr int BK = backwardKeyTile<D>();
    dim3 grid(bh, static_cast<unsigned>((c.seq + BK - 1) / BK));
    function<<<grid, kThreads, bytes, stream>>>(device(q), device(k), device(v),
                                                device(dout), lse, delta,
                                                device(dk), device(dv), p);
  }
  if (dq) {
    auto function = attentionQueryGradKernel<S, D>;
    Status s = allowSharedMemory(reinterpret_cast<const void *>(function),
                                 bytes, kernel, "a query tile");
    if (!s.ok())
      return s;
    dim3 grid(bh, static_cast<unsigned>((c.seq + kQueryTile - 1) / kQueryTile));
    function<<<grid, kThreads, bytes, stream>>>(device(q), device(k), device(v),
                                                device(dout), lse, delta,
                                                device(dq), p);
  }
  return launchStatus(kernel);
}

template <typename T>
Status attentionBackwardImpl(const T *q, const T *k, const T *v, const T *out,
                             const T *dout, const float *lse, T *dq, T *dk,
                             T *dv, const AttentionConfig &c,
                             cudaStream_t stream) {
  const char *kernel = "attention_backward";
  Problem p;
  Status s = prepare(kernel, c, p);
  if (!s.ok() || c.batch * c.heads * c.seq == 0 || (!dq && !dk && !dv))
    return s;
  if (!out || !dout || !lse)
    return Status::error(std::string(kernel) +
                         ": needs the forward's output, its gradient and the "
                         "row logsumexp");
  int64_t rows = c.batch * c.seq * c.heads;
  StreamBuffer delta(rows * sizeof(float), stream);
  if (!delta.error().empty())
    return Status::error(std::string(kernel) + ": " + delta.error());
  constexpr int warps = kThreads / 32;
  attentionDeltaKernel<<<static_cast<unsigned>((rows + warps - 1) / warps),
                         kThreads, 0, stream>>>(device(out), device(dout),
                                                delta.as<float>(), rows, c.seq,
                                                c.heads, c.headDim);
  if (c.headDim <= 64)
    return backward<T, 64>(q, k, v, dout, lse, delta.as<float>(), dq, dk, dv, c,
                           p, stream);
  return backward<T, 128>(q, k, v, dout, lse, delta.as<float>(), dq, dk, dv, c,
                          p, stream);
}

} // namespace

Status attention(const float *q, const float *k, const float *v, float *out,
                 float *lse, const AttentionConfig &config,
                 cudaStream_t stream) {
  return attentionImpl(q, k, v, out, lse, config, stream);
}

Status attention(const Bf16 *q, const Bf16 *k, const Bf16 *v, Bf16 *out,
                 float *lse, const AttentionConfig &config,
                 cudaStream_t stream) {
  return attentionImpl(q, k, v, out, lse, config, stream);
}

Status attentionBackward(const float *q, const float *k, const float *v,
                         const float *out, const float *dout, const float *lse,
                         float *dq, float *dk, float *dv,
                         const AttentionConfig &config, cudaStream_t stream) {
  return attentionBackwardImpl(q, k, v, out, dout, lse, dq, dk, dv, config,
                               stream);
}

Status attentionBackward(const Bf16 *q, const Bf16 *k, const Bf16 *v,
                         const Bf16 *out, const Bf16 *dout, const float *lse,
                         Bf16 *dq, Bf16 *dk, Bf16 *dv,
                         const AttentionConfig &config, cudaStream_t stream) {
  return attentionBackwardImpl(q, k, v, out, dout, lse, dq, dk, dv, config,
                               stream);
}

} // namespace mixer::cuda
