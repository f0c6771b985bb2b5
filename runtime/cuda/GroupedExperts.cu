//===- GroupedExperts.cu - Expert MLPs over data-dependent slot runs ------===//
//
// The experts of any routing, sigma-MoE's top-k included, where expert e owns
// the slots offsets[e] .. offsets[e + 1] and the counts are known only on the
// device. Each product is one launch over every expert: the grid has one
// block row per possible row tile (slots / 64 + experts, an upper bound), and
// a block finds its expert and first slot by walking the device offsets, so
// nothing waits for the host and a CUDA graph can hold the launches. Tiles
// never straddle two experts (no recomputation at boundaries); a block whose
// tile lies past the last expert returns at once.
//
// A block of 16 x 16 threads computes a 64 x 64 output tile in fp32 from
// 16-deep stages of both operands in shared memory: thread (tx, ty) owns rows
// ty + 16 i and columns tx + 16 j (i, j < 4). Operand rows come through an
// index: a slot's own row, or its token's row (the dispatch fused into the
// loads); empty slots read zeros and write zero rows. bf16 activations are
// widened as they are staged; the weights are the fp32 masters.
//
// The weight gradients are per-expert reductions over that expert's slots:
// one block per 64 x 64 tile of one expert's gradient walks the expert's
// slots in order, 16 at a time, so every value is summed in a fixed order
// (no atomics). The blocks of the first tile row also sum the right operand's
// columns: the bias gradient.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/Activation.cuh"
#include "runtime/cuda/Common.cuh"

namespace mixer::cuda {
namespace {

using namespace detail;

constexpr int kSide = 16;
constexpr int kThreads = kSide * kSide;
/// Rows and columns of an output tile, and the depth of one stage.
constexpr int kTile = 64;
constexpr int kDepth = 16;
constexpr int kMicro = kTile / kSide;
/// Blocks per SM the kernels are compiled for: at most 128 registers per
/// thread (runtime/cuda/register-budgets.txt).
constexpr int kMinBlocks = 2;

__device__ __forceinline__ float activate(float v, ExpertActivation act) {
  switch (act) {
  case ExpertActivation::Relu:
    return v > 0.0f ? v : 0.0f;
  case ExpertActivation::Gelu:
    return gelu(v);
  default:
    return v;
  }
}

__device__ __forceinline__ float derivative(float v, ExpertActivation act) {
  switch (act) {
  case ExpertActivation::Relu:
    return v > 0.0f ? 1.0f : 0.0f;
  case ExpertActivation::Gelu:
    return geluDerivative(v);
  default:
    return 1.0f;
  }
}

/// One stage of both operands: a[x][r] (rows padded by one against bank
/// conflicts) and b[x][c].
struct Stage {
  float a[kDepth][kTile + 1];
  float b[kDepth][kTile];
};

/// acc[i][j] += sum_x a[x][ty + 16 i] * b[x][tx + 16 j].
__device__ __forceinline__ void accumulate(float (&acc)[kMicro][kMicro],
                                           const Stage &stage) {
  int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
#pragma unroll
  for (int x = 0; x < kDepth; ++x) {
    float av[kMicro], bv[kMicro];
#pragma unroll
    for (int i = 0; i < kMicro; ++i)
      av[i] = stage.a[x][ty + kSide * i];
#pragma unroll
    for (int j = 0; j < kMicro; ++j)
      bv[j] = stage.b[x][tx + kSide * j];
#pragma unroll
    for (int i = 0; i < kMicro; ++i)
#pragma unroll
      for (int j = 0; j < kMicro; ++j)
        acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

/// The operand row slot i reads: its own, its token's when gathering, or -1
/// for an empty slot (negative token, or a token outside the gathered rows,
/// which is reported).
__device__ __forceinline__ int64_t sourceRow(const GroupedExperts &g,
                                             int64_t i) {
  int32_t token = g.tokens[i];
  if (token < 0 || (g.gather && !idInRange(g.check, i, token, g.numTokens)))
    return -1;
  return g.gather ? token : i;
}

/// The slots [begin, end) of expert e, clamped to the table.
__device__ __forceinline__ int2 expertSlots(const GroupedExperts &g,
                                            int64_t e) {
  int64_t begin = min(max(int64_t(g.offsets[e]), int64_t(0)), g.slots);
  int64_t end = min(max(int64_t(g.offsets[e + 1]), begin), g.slots);
  return make_int2(static_cast<int>(begin), static_cast<int>(end));
}

/// What one grouped product computes, per expert e over its slots:
/// c[i, :] = epilogue(a[row(i), :] · B[e]) with B[e] = b + e k n, [k, n]
/// row-major or, when `transposeB`, stored [n, k]. The epilogue adds
/// bias[e] (if any), then applies the activation, or, with `preact`, scales
/// by act'(preact[i, :]) (the backward's dP).
struct Product {
  const float *b;
  bool transposeB;
  int64_t k, n;
  /// a's rows gather through the tokens (else one row per slot).
  bool gather;
  const float *bias;
  ExpertActivation act;
  const float *preact;
};

template <typename TA, typename TC>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    groupedProductKernel(const TA *a, TC *c, GroupedExperts g, Product p) {
  __shared__ Stage stage;
  __shared__ int64_t source[kTile];
  // The expert and first slot of this block's row tile.
  int64_t tile = blockIdx.x, e = 0;
  int2 slots = make_int2(0, 0);
  for (; e < g.experts; ++e) {
    slots = expertSlots(g, e);
    int64_t tiles = (slots.y - slots.x + kTile - 1) / kTile;
    if (tile < tiles)
      break;
    tile -= tiles;
  }
  if (e == g.experts)
    return;
  int64_t row0 = slots.x + tile * kTile, col0 = int64_t(blockIdx.y) * kTile;
  int rows = static_cast<int>(min(int64_t(kTile), slots.y - row0));
  bool gather = p.gather && g.gather;
  for (int r = threadIdx.x; r < kTile; r += kThreads) {
    int64_t s = r < rows ? sourceRow(g, row0 + r) : -1;
    source[r] = s >= 0 && !gather ? row0 + r : s;
  }
  __syncthreads();

  const float *b = p.b + e * p.k * p.n;
  float acc[kMicro][kMicro] = {};
  for (int64_t k0 = 0; k0 < p.k; k0 += kDepth) {
    for (int l = threadIdx.x; l < kTile * kDepth; l += kThreads) {
      int r = l / kDepth, x = l % kDepth;
      int64_t s = source[r];
      stage.a[x][r] = s >= 0 && k0 + x < p.k ? load(a, s * p.k + k0 + x) : 0.0f;
    }
    for (int l = threadIdx.x; l < kTile * kDepth; l += kThreads) {
      // Consecutive threads read consecutive addresses of either layout.
      int x = p.transposeB ? l % kDepth : l / kTile;
      int col = p.transposeB ? l / kDepth : l % kTile;
      int64_t kk = k0 + x, nn = col0 + col;
      stage.b[x][col] = kk < p.k && nn < p.n
                            ? b[p.transposeB ? nn * p.k + kk : kk * p.n + nn]
                            : 0.0f;
    }
    __syncthreads();
    accumulate(acc, stage);
    __syncthreads();
  }

  int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
    int r = ty + kSide * i;
    if (r >= rows)
      continue;
    int64_t row = row0 + r;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      int64_t nn = col0 + tx + kSide * j;
      if (nn >= p.n)
        continue;
      float v = 0.0f;
      if (source[r] >= 0) {
        v = acc[i][j];
        if (p.bias)
          v += p.bias[e * p.n + nn];
        v = p.preact ? v * derivative(p.preact[row * p.n + nn], p.act)
                     : activate(v, p.act);
      }
      store(c, row * p.n + nn, v);
    }
  }
}

/// What one weight gradient computes, per expert e over its slots i in
/// order: out[e] [m, n] = sum_i act(l[lrow(i), :])^T r[i, :], and
/// columnSums[e] [n] = sum_i r[i, :] when not null.
struct WeightGrad {
  int64_t m, n;
  /// l's rows gather through the tokens (else one row per slot).
  bool gather;
  ExpertActivation act;
  float *out;
  float *columnSums;
};

template <typename TL, typename TR>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    expertWeightGradKernel(const TL *l, const TR *r, GroupedExperts g,
                           WeightGrad w) {
  __shared__ Stage stage;
  __shared__ int64_t lSource[kDepth], rSource[kDepth];
  int64_t e = blockIdx.z, m0 = int64_t(blockIdx.y) * kTile,
          n0 = int64_t(blockIdx.x) * kTile;
  int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
  bool sums = w.columnSums && blockIdx.y == 0 && ty == 0;
  bool gather = w.gather && g.gather;
  int2 slots = expertSlots(g, e);
  float acc[kMicro][kMicro] = {}, colAcc[kMicro] = {};
  for (int64_t i0 = slots.x; i0 < slots.y; i0 += kDepth) {
    if (threadIdx.x < kDepth) {
      int64_t i = i0 + threadIdx.x;
      int64_t s = i < slots.y ? sourceRow(g, i) : -1;
      lSource[threadIdx.x] = s;
      rSource[threadIdx.x] = s >= 0 ? i : -1;
      if (s >= 0 && !gather)
        lSource[threadIdx.x] = i;
    }
    __syncthreads();
    for (int q = threadIdx.x; q < kTile * kDepth; q += kThreads) {
      int x = q / kTile, col = q % kTile;
      int64_t ls = lSource[x], rs = rSource[x];
      stage.a[x][col] = ls >= 0 && m0 + col < w.m
                            ? activate(load(l, ls * w.m + m0 + col), w.act)
                            : 0.0f;
      stage.b[x][col] =
          rs >= 0 && n0 + col < w.n ? load(r, rs * w.n + n0 + col) : 0.0f;
    }
    __syncthreads();
    accumulate(acc, stage);
    if (sums)
#pragma unroll
      for (int j = 0; j < kMicro; ++j)
        for (int x = 0; x < kDepth; ++x)
          colAcc[j] += stage.b[x][tx + kSide * j];
    __syncthreads();
  }

  float *out = w.out + e * w.m * w.n;
#pragma unroll
  for (int i = 0; i < kMicro; ++i) {
    int64_t mm = m0 + ty + kSide * i;
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      int64_t nn = n0 + tx + kSide * j;
      if (mm < w.m && nn < w.n)
        out[mm * w.n + nn] = acc[i][j];
    }
  }
  if (sums)
#pragma unroll
    for (int j = 0; j < kMicro; ++j) {
      int64_t nn = n0 + tx + kSide * j;
      if (nn < w.n)
        w.columnSums[e * w.n + nn] = colAcc[j];
    }
}

unsigned tilesOf(int64_t n) {
  return static_cast<unsigned>((n + kTile - 1) / kTile);
}

Status checkLayout(const char *kernel, const GroupedExperts &g) {
  for (auto [what, value] : {std::pair<const char *, int64_t>{"slots", g.slots},
                             {"experts", g.experts},
                             {"d", g.d},
                             {"f", g.f},
                             {"numTokens", g.numTokens}})
    if (Status s = requireNonNegative(kernel, what, value); !s.ok())
      return s;
  if (g.d < 1 || g.f < 1)
    return Status::error(std::string(kernel) + ": the widths " +
                         std::to_string(g.d) + " x " + std::to_string(g.f) +
                         " must be at least 1");
  // Row tiles of one grid row, slot indices in int, tile columns in
  // gridDim.y and experts in gridDim.z.
  if (g.slots > 0x7fffffff - kTile || g.experts > 65535 ||
      tilesOf(std::max(g.d, g.f)) > 65535)
    return Status::error(std::string(kernel) + ": " + std::to_string(g.slots) +
                         " slots, " + std::to_string(g.experts) +
                         " experts or the widths " + std::to_string(g.d) +
                         " x " + std::to_string(g.f) +
                         " exceed the grid limits");
  return Status::success();
}

/// One product over every expert's row tiles.
template <typename TA, typename TC>
void launchProduct(const TA *a, TC *c, const GroupedExperts &g,
                   const Product &p, cudaStream_t stream) {
  dim3 grid(static_cast<unsigned>((g.slots + kTile - 1) / kTile + g.experts),
            tilesOf(p.n));
  groupedProductKernel<<<grid, kThreads, 0, stream>>>(device(a), device(c), g,
                                                      p);
}

/// One weight gradient over every expert.
template <typename TL, typename TR>
void launchWeightGrad(const TL *l, const TR *r, const GroupedExperts &g,
                      const WeightGrad &w, cudaStream_t stream) {
  dim3 grid(tilesOf(w.n), tilesOf(w.m), static_cast<unsigned>(g.experts));
  expertWeightGradKernel<<<grid, kThreads, 0, stream>>>(device(l), device(r), g,
                                                        w);
}

template <typename T>
Status groupedExpertsImpl(const T *x, const float *w1, const float *b1,
                          const float *w2, const float *b2, T *yd,
                          float *hidden, const GroupedExperts &g,
                          cudaStream_t stream) {
  const char *kernel = "experts";
  if (Status s = checkLayout(kernel, g); !s.ok())
    return s;
  if (g.slots == 0)
    return Status::success();
  launchProduct(x, hidden, g,
                Product{w1, false, g.d, g.f, true, b1, g.activation, nullptr},
                stream);
  launchProduct(
      hidden, yd, g,
      Product{w2, false, g.f, g.d, false, b2, ExpertActivation::None, nullptr},
      stream);
  return launchStatus(kernel);
}

template <typename T>
Status
groupedExpertsBackwardImpl(const T *x, const float *w1, const float *b1,
                           const float *w2, const T *dyd, T *dxd, float *dw1,
                           float *db1, float *dw2, float *db2, float *scratch,
                           const GroupedExperts &g, cudaStream_t stream) {
  const char *kernel = "experts_grad";
  if (Status s = checkLayout(kernel, g); !s.ok())
    return s;
  if (g.experts == 0)
    return Status::success();
  float *preact = scratch, *dpreact = scratch + g.slots * g.f;
  ExpertActivation none = ExpertActivation::None;
  if (g.slots > 0) {
    // P = x w1 + b1 (the forward's product, hence its bits), then
    // dP = (dyd w2^T) * act'(P) and dxd = dP w1^T.
    launchProduct(x, preact, g,
                  Product{w1, false, g.d, g.f, true, b1, none, nullptr},
                  stream);
    launchProduct(
        dyd, dpreact, g,
        Product{w2, true, g.d, g.f, false, nullptr, g.activation, preact},
        stream);
    launchProduct(dpreact, dxd, g,
                  Product{w1, true, g.f, g.d, false, nullptr, none, nullptr},
                  stream);
  }
  // dw1 = x^T dP with db1; dw2 = act(P)^T dyd with db2. An expert without
  // slots gets zeros.
  launchWeightGrad(x, dpreact, g, WeightGrad{g.d, g.f, true, none, dw1, db1},
                   stream);
  launchWeightGrad(preact, dyd, g,
                   WeightGrad{g.f, g.d, false, g.activation, dw2, db2}, stream);
  return launchStatus(kernel);
}

} // namespace

Status groupedExperts(const float *x, const float *w1, const float *b1,
                      const float *w2, const float *b2, float *yd,
                      float *hidden, const GroupedExperts &layout,
                      cudaStream_t stream) {
  return groupedExpertsImpl(x, w1, b1, w2, b2, yd, hidden, layout, stream);
}

Status groupedExperts(const Bf16 *x, const float *w1, const float *b1,
                      const float *w2, const float *b2, Bf16 *yd, float *hidden,
                      const GroupedExperts &layout, cudaStream_t stream) {
  return groupedExpertsImpl(x, w1, b1, w2, b2, yd, hidden, layout, stream);
}

Status groupedExpertsBackward(const float *x, const float *w1, const float *b1,
                              const float *w2, const float *dyd, float *dxd,
                              float *dw1, float *db1, float *dw2, float *db2,
                              float *scratch, const GroupedExperts &layout,
                              cudaStream_t stream) {
  return groupedExpertsBackwardImpl(x, w1, b1, w2, dyd, dxd, dw1, db1, dw2, db2,
                                    scratch, layout, stream);
}

Status groupedExpertsBackward(const Bf16 *x, const float *w1, const float *b1,
                              const float *w2, const Bf16 *dyd, Bf16 *dxd,
                              float *dw1, float *db1, float *dw2, float *db2,
                              float *scratch, const GroupedExperts &layout,
                              cudaStream_t stream) {
  return groupedExpertsBackwardImpl(x, w1, b1, w2, dyd, dxd, dw1, db1, dw2, db2,
                                    scratch, layout, stream);
}

} // namespace mixer::cuda
