//===- DenseBackward.cpp - Gradient of the dense layer --------------------===//
//
// Both matrix gradients go through the tiled GEMM driver of Gemm.h; the bias
// gradient is a column sum kept in double: partial sums over fixed blocks of
// rows, added in block order, so the result does not depend on the threads.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/TransformerGradients.h"

#include <algorithm>
#include <vector>

namespace mixer::cpu {
namespace {

/// Work below this many values stays on one thread.
constexpr int64_t kParallelValues = 1 << 15;
/// Rows per partial sum of the column sums.
constexpr int64_t kSumRows = 256;
/// Columns per work item of the column sums: 8 KiB of double accumulators,
/// which stay in L1 while whole 4 KiB stretches of rows stream past.
constexpr int64_t kSumColumns = 1024;

/// sums[c] (+)= sum_r a[r, c] over a [rows, cols] matrix. Each fixed block
/// of kSumRows rows sums its rows in order into its own double partial sums
/// (work items: row block x column block, reading rows contiguously); the
/// partial sums are then added in block order.
void columnSums(const float *a, int64_t rows, int64_t cols, float *sums,
                bool accumulate) {
  int64_t rowBlocks = (rows + kSumRows - 1) / kSumRows;
  int64_t colBlocks = (cols + kSumColumns - 1) / kSumColumns;
  std::vector<double> partial(rowBlocks * cols, 0.0);
  bool parallel = rows * cols >= kParallelValues;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t item = 0; item < rowBlocks * colBlocks; ++item) {
    int64_t row0 = item / colBlocks * kSumRows;
    int64_t col0 = item % colBlocks * kSumColumns;
    int64_t width = std::min(kSumColumns, cols - col0);
    double *acc = partial.data() + item / colBlocks * cols + col0;
    for (int64_t r = row0; r < std::min(rows, row0 + kSumRows); ++r) {
      const float *row = a + r * cols + col0;
      for (int64_t c = 0; c < width; ++c)
        acc[c] += row[c];
    }
  }
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < cols; ++c) {
    double sum = accumulate ? static_cast<double>(sums[c]) : 0.0;
    for (int64_t blk = 0; blk < rowBlocks; ++blk)
      sum += partial[blk * cols + c];
    sums[c] = static_cast<float>(sum);
  }
}

} // namespace

void denseBackward(const float *x, const float *w, const float *dy, float *dx,
                   float *dw, float *db, int64_t m, int64_t k, int64_t n,
                   bool transposeW, bool accumulate) {
  if (dx) {
    // dx[m,k] = dy[m,n] * W^T, W read as stored.
    detail::GemmArgs g;
    g.transB = !transposeW;
    g.m = m;
    g.n = k;
    g.k = n;
    g.a = dy;
    g.lda = n;
    g.b = w;
    g.ldb = transposeW ? k : n;
    g.c = dx;
    g.ldc = k;
    detail::parallelGemm(g);
  }
  if (dw) {
    // dW[k,n] = x^T * dy, or dW[n,k] = dy^T * x for W stored transposed.
    const float *left = transposeW ? dy : x;
    const float *right = transposeW ? x : dy;
    int64_t rows = transposeW ? n : k, cols = transposeW ? k : n;
    detail::GemmArgs g;
    g.transA = true;
    g.m = rows;
    g.n = cols;
    g.k = m;
    g.a = left;
    g.lda = rows;
    g.b = right;
    g.ldb = cols;
    g.c = dw;
    g.ldc = cols;
    g.beta = accumulate ? 1.0f : 0.0f;
    detail::parallelGemm(g);
  }
  if (db)
    columnSums(dy, m, n, db, accumulate);
}

} // namespace mixer::cpu
