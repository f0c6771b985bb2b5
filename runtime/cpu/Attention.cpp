//===- Attention.cpp - Scaled dot-product attention core ------------------===//
//
// Work items are (example, head, block of queries). Each item computes its
// logits block with one single-threaded GEMM, masks and exponentiates it in
// place while it is in cache (and drops probabilities in a training step),
// multiplies by V with a second GEMM straight into the output, and divides
// each output row by its softmax sum.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/RandomScale.h"
#include "runtime/cpu/Simd.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mixer::cpu {
namespace {

/// Queries per work item: the [128, seq] logits block stays in L2 for seq up
/// to about 2048, and the two GEMMs are large enough to run near peak.
constexpr int64_t kQueryBlock = 128;

struct AttentionShape {
  int64_t batch, seq, heads, headDim;
  int64_t rowStride() const { return heads * headDim; }
};

/// One (example, head, query block) item; `logits` holds kQueryBlock * seq
/// floats and `inverseSums` kQueryBlock.
void attendBlock(const float *q, const float *k, const float *v,
                 const int32_t *ids, float *out, const AttentionShape &shape,
                 int32_t padId, bool causal, const AttentionDropout &dropout,
                 int64_t b, int64_t h, int64_t query0, float *logits,
                 float *inverseSums) {
  const float lowest = std::numeric_limits<float>::lowest();
  int64_t seq = shape.seq, ld = shape.rowStride();
  int64_t rows = std::min(kQueryBlock, seq - query0);
  const int32_t *rowIds = ids ? ids + b * seq : nullptr;
  auto isPad = [&](int64_t token) { return rowIds && rowIds[token] == padId; };

  // Under the causal mask, keys past the block's last query get exactly zero
  // weight and are skipped, unless a pad query spreads over every key.
  int64_t keys = seq;
  if (causal) {
    bool padQuery = false;
    for (int64_t r = 0; r < rows; ++r)
      padQuery = padQuery || isPad(query0 + r);
    if (!padQuery)
      keys = query0 + rows;
  }

  int64_t offset = b * seq * ld + h * shape.headDim;
  detail::GemmArgs scores;
  scores.transB = true;
  scores.m = rows;
  scores.n = keys;
  scores.k = shape.headDim;
  scores.alpha = 1.0f / std::sqrt(static_cast<float>(shape.headDim));
  scores.a = q + offset + query0 * ld;
  scores.lda = ld;
  scores.b = k + offset;
  scores.ldb = ld;
  scores.c = logits;
  scores.ldc = keys;
  detail::gemm(scores);

  for (int64_t r = 0; r < rows; ++r) {
    int64_t query = query0 + r;
    float *row = logits + r * keys;
    if (isPad(query)) {
      std::fill(row, row + keys, lowest);
    } else {
      if (rowIds)
        for (int64_t key = 0; key < keys; ++key)
          row[key] = rowIds[key] == padId ? lowest : row[key];
      if (causal)
        std::fill(row + std::min(query + 1, keys), row + keys, lowest);
    }
    inverseSums[r] = 1.0f / simd::exponentiateRow(row, row, keys);
    if (dropout.active()) {
      // Drop the unnormalised weights; the row scale takes 1 / (1 - rate).
      uint64_t first = ((b * shape.heads + h) * seq + query) * seq;
      dropoutRun(row, row, keys, first, dropout.rate, 1.0f, dropout.uniforms);
      inverseSums[r] /= static_cast<float>(1.0 - dropout.rate);
    }
  }

  detail::GemmArgs mix;
  mix.m = rows;
  mix.n = shape.headDim;
  mix.k = keys;
  mix.a = logits;
  mix.lda = keys;
  mix.b = v + offset;
  mix.ldb = ld;
  mix.c = out + offset + query0 * ld;
  mix.ldc = ld;
  detail::gemm(mix);
  for (int64_t r = 0; r < rows; ++r)
    simd::scaleRow(mix.c + r * ld, mix.c + r * ld, shape.headDim,
                   inverseSums[r]);
}

} // namespace

void attention(const float *q, const float *k, const float *v,
               const int32_t *ids, float *out, int64_t batch, int64_t seq,
               int64_t heads, int64_t headDim, int32_t padId, bool causal,
               const AttentionDropout &dropout) {
  AttentionShape shape{batch, seq, heads, headDim};
  int64_t queryBlocks = (seq + kQueryBlock - 1) / kQueryBlock;
  int64_t items = batch * heads * queryBlocks;
  double flops = 4.0 * batch * heads * seq * seq * headDim;
  bool parallel = items > 1 && flops >= (1 << 18) && !omp_in_parallel();
  detail::ExceptionCollector errors;
#pragma omp parallel if (parallel)
  {
    std::vector<float> logits(kQueryBlock * seq);
    std::vector<float> inverseSums(kQueryBlock);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item)
      errors.run([&] {
        int64_t b = item / (heads * queryBlocks);
        int64_t h = item / queryBlocks % heads;
        int64_t query0 = item % queryBlocks * kQueryBlock;
        attendBlock(q, k, v, ids, out, shape, padId, causal, dropout, b, h,
                    query0, logits.data(), inverseSums.data());
      });
  }
  errors.rethrow();
}

} // namespace mixer::cpu
