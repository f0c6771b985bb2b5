//===- DenseBackward.cpp - Gradient of the dense layer --------------------===//
//
// Both matrix gradients go through the tiled GEMM driver of Gemm.h; the bias
// gradient is a column sum kept in double over fixed column blocks, each
// summed over the rows in order by one thread.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/TransformerGradients.h"

#include <algorithm>

namespace mixer::cpu {
namespace {

/// Work below this many values stays on one thread.
constexpr int64_t kParallelValues = 1 << 15;
/// Columns per block of the column sums: one 256-byte stretch of each row.
constexpr int64_t kSumColumns = 64;

/// sums[c] (+)= sum_r a[r, c] over a [rows, cols] matrix.
void columnSums(const float *a, int64_t rows, int64_t cols, float *sums,
                bool accumulate) {
  int64_t blocks = (cols + kSumColumns - 1) / kSumColumns;
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelValues)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    int64_t col0 = blk * kSumColumns;
    int64_t width = std::min(kSumColumns, cols - col0);
    double acc[kSumColumns] = {};
    for (int64_t r = 0; r < rows; ++r) {
      const float *row = a + r * cols + col0;
      for (int64_t c = 0; c < width; ++c)
        acc[c] += row[c];
    }
    for (int64_t c = 0; c < width; ++c)
      sums[col0 + c] = static_cast<float>(
          (accumulate ? static_cast<double>(sums[col0 + c]) : 0.0) + acc[c]);
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
