//===- Dense.cpp - Dense layers and GEMM plumbing -------------------------===//
//
// dense and batchedMatmul, plus the tiled oneDNN GEMM driver and the fused
// bias + activation epilogue the other kernel families share.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Simd.h"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace detail {
namespace {

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// How a batch of [m,n] products is cut into tiles. The grid depends on the
/// shape alone, never on the thread count.
struct TileGrid {
  int64_t rowTile, rowTiles, colTile, colTiles;
};

TileGrid planTiles(int64_t batch, int64_t m, int64_t n) {
  // 512-row tiles keep the repacking of B per tile below a few percent of
  // the product; column splits only serve to give small-m products enough
  // tiles to keep every core busy.
  constexpr int64_t kMaxTileRows = 512;
  constexpr int64_t kMinTileCols = 256;
  constexpr int64_t kMinTiles = 8;
  TileGrid grid;
  grid.rowTiles = ceilDiv(m, kMaxTileRows);
  grid.rowTile = ceilDiv(m, grid.rowTiles);
  grid.colTiles = 1;
  if (batch * grid.rowTiles < kMinTiles)
    grid.colTiles =
        std::clamp(ceilDiv(kMinTiles, batch * grid.rowTiles), int64_t(1),
                   std::max(int64_t(1), n / kMinTileCols));
  grid.colTile = ceilDiv(ceilDiv(n, grid.colTiles), 16) * 16;
  grid.colTiles = ceilDiv(n, grid.colTile);
  return grid;
}

/// Below this many flops a product is not worth waking a second thread.
constexpr double kParallelFlops = 1 << 18;

template <Activation Act>
void biasActivationImpl(float *y, int64_t rows, int64_t cols, int64_t ldy,
                        const float *bias) {
  for (int64_t r = 0; r < rows; ++r) {
    float *row = y + r * ldy;
    simd::forChunks(cols, [&](int64_t i, int64_t count) {
      simd::VecF v = simd::loadChunk(row + i, count);
      if (bias)
        v += simd::loadChunk(bias + i, count);
      simd::storeChunk(row + i, simd::activate(v, Act), count);
    });
  }
}

} // namespace

void gemm(const GemmArgs &g) {
  if (g.m == 0 || g.n == 0)
    return;
  if (g.k == 0) {
    for (int64_t r = 0; r < g.m; ++r)
      for (int64_t c = 0; c < g.n; ++c)
        g.c[r * g.ldc + c] =
            g.beta == 0.0f ? 0.0f : g.beta * g.c[r * g.ldc + c];
    return;
  }
  // oneDNN threads its sgemm with OpenMP using the caller's thread budget;
  // holding that budget at one keeps every product on this thread, also when
  // the caller is itself inside a parallel region.
  int savedThreads = omp_get_max_threads();
  if (savedThreads != 1)
    omp_set_num_threads(1);
  dnnl_status_t status =
      dnnl_sgemm(g.transA ? 'T' : 'N', g.transB ? 'T' : 'N', g.m, g.n, g.k,
                 g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc);
  if (savedThreads != 1)
    omp_set_num_threads(savedThreads);
  if (status != dnnl_success)
    throw KernelError{"dnnl_sgemm failed with status " +
                      std::to_string(static_cast<int>(status)) + " on a [" +
                      std::to_string(g.m) + "x" + std::to_string(g.k) +
                      "] x [" + std::to_string(g.k) + "x" +
                      std::to_string(g.n) + "] product"};
}

void parallelGemm(const GemmArgs &args, int64_t batch, int64_t strideA,
                  int64_t strideB, int64_t strideC,
                  const TileEpilogue &epilogue) {
  if (batch == 0 || args.m == 0 || args.n == 0)
    return;
  TileGrid grid = planTiles(batch, args.m, args.n);
  int64_t tilesPerProduct = grid.rowTiles * grid.colTiles;
  int64_t tiles = batch * tilesPerProduct;
  double flops = 2.0 * batch * args.m * args.n * args.k;
  bool parallel = tiles > 1 && flops >= kParallelFlops && !omp_in_parallel();
  ExceptionCollector errors;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t tile = 0; tile < tiles; ++tile)
    errors.run([&] {
      int64_t index = tile / tilesPerProduct;
      int64_t rowBlock = tile % tilesPerProduct / grid.colTiles;
      int64_t colBlock = tile % grid.colTiles;
      int64_t row0 = rowBlock * grid.rowTile;
      int64_t col0 = colBlock * grid.colTile;
      GemmArgs t = args;
      t.m = std::min(grid.rowTile, args.m - row0);
      t.n = std::min(grid.colTile, args.n - col0);
      t.a = args.a + index * strideA + (args.transA ? row0 : row0 * args.lda);
      t.b = args.b + index * strideB + (args.transB ? col0 * args.ldb : col0);
      t.c = args.c + index * strideC + row0 * args.ldc + col0;
      gemm(t);
      if (epilogue)
        epilogue(index, row0, t.m, col0, t.n);
    });
  errors.rethrow();
}

void biasActivation(float *y, int64_t rows, int64_t cols, int64_t ldy,
                    const float *bias, Activation act) {
  switch (act) {
  case Activation::None:
    if (bias)
      biasActivationImpl<Activation::None>(y, rows, cols, ldy, bias);
    return;
  case Activation::Gelu:
    return biasActivationImpl<Activation::Gelu>(y, rows, cols, ldy, bias);
  case Activation::Tanh:
    return biasActivationImpl<Activation::Tanh>(y, rows, cols, ldy, bias);
  case Activation::Relu:
    return biasActivationImpl<Activation::Relu>(y, rows, cols, ldy, bias);
  case Activation::GeluErf:
    return biasActivationImpl<Activation::GeluErf>(y, rows, cols, ldy, bias);
  }
}

} // namespace detail

void dense(const float *x, const float *w, const float *bias, float *y,
           int64_t m, int64_t k, int64_t n, bool transposeW, Activation act) {
  detail::GemmArgs g;
  g.transB = transposeW;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = x;
  g.lda = k;
  g.b = w;
  g.ldb = transposeW ? k : n;
  g.c = y;
  g.ldc = n;
  detail::TileEpilogue epilogue;
  if (bias || act != Activation::None)
    epilogue = [&](int64_t, int64_t row0, int64_t rows, int64_t col0,
                   int64_t cols) {
      detail::biasActivation(y + row0 * n + col0, rows, cols, n,
                             bias ? bias + col0 : nullptr, act);
    };
  detail::parallelGemm(g, 1, 0, 0, 0, epilogue);
}

struct DenseBf16::Impl {
  int64_t m, k, n;
  bool transposeW, xBf16, yBf16;
  detail::TileGrid grid;
  /// The product of a full row tile, and of the last tile when it is shorter.
  detail::Bf16Product full;
  std::optional<detail::Bf16Product> last;
};

DenseBf16::DenseBf16(int64_t m, int64_t k, int64_t n, bool transposeW,
                     bool xBf16, bool yBf16, bool bias, Activation act) {
  // Row tiles only: each product reads the whole packed weight matrix.
  detail::TileGrid grid = detail::planTiles(1, std::max<int64_t>(m, 1), 1);
  int64_t lastRows = m - (grid.rowTiles - 1) * grid.rowTile;
  detail::Bf16Product full(std::max<int64_t>(grid.rowTile, 1), k, n, yBf16,
                           bias, act);
  std::optional<detail::Bf16Product> last;
  if (lastRows != grid.rowTile && lastRows > 0)
    last.emplace(lastRows, k, n, yBf16, bias, act, &full);
  impl.reset(new Impl{m, k, n, transposeW, xBf16, yBf16, grid, std::move(full),
                      std::move(last)});
}

DenseBf16::~DenseBf16() = default;
DenseBf16::DenseBf16(DenseBf16 &&) noexcept = default;

int64_t DenseBf16::packedBytes() const { return impl->full.packedBytes(); }

void DenseBf16::pack(const float *w, void *packed) const {
  impl->full.pack(w, impl->transposeW, packed);
}

void DenseBf16::run(const void *x, const void *packed, const float *bias,
                    void *y) const {
  const Impl &p = *impl;
  if (p.m == 0 || p.n == 0)
    return;
  int64_t tiles = p.grid.rowTiles;
  bool parallel = tiles > 1 && !omp_in_parallel();
  size_t yElement = p.yBf16 ? sizeof(uint16_t) : sizeof(float);
  detail::ExceptionCollector errors;
#pragma omp parallel if (parallel)
  {
    // Each thread's bf16 copy of its rows, kept between runs.
    thread_local std::vector<uint16_t> rows;
    if (!p.xBf16 && rows.size() < size_t(p.grid.rowTile * p.k))
      rows.resize(p.grid.rowTile * p.k);
#pragma omp for schedule(dynamic, 1)
    for (int64_t tile = 0; tile < tiles; ++tile)
      errors.run([&] {
        int64_t row0 = tile * p.grid.rowTile;
        int64_t count = std::min(p.grid.rowTile, p.m - row0);
        const uint16_t *a = static_cast<const uint16_t *>(x) + row0 * p.k;
        if (!p.xBf16) {
          toBf16(static_cast<const float *>(x) + row0 * p.k, rows.data(),
                 count * p.k);
          a = rows.data();
        }
        const detail::Bf16Product &product =
            count == p.grid.rowTile ? p.full : *p.last;
        product.run(a, packed, bias,
                    static_cast<char *>(y) + row0 * p.n * yElement);
      });
  }
  errors.rethrow();
}

void batchedMatmul(const float *a, const float *b, float *y, int64_t batch,
                   int64_t m, int64_t k, int64_t n, int64_t strideA,
                   int64_t strideB, int64_t strideY) {
  detail::GemmArgs g;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.lda = k;
  g.b = b;
  g.ldb = n;
  g.c = y;
  g.ldc = n;
  // A shared right operand over densely packed A and Y is one tall product.
  if (strideB == 0 && strideA == m * k && strideY == m * n) {
    g.m = batch * m;
    detail::parallelGemm(g);
    return;
  }
  detail::parallelGemm(g, batch, strideA, strideB, strideY);
}

} // namespace mixer::cpu
