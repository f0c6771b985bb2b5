//===- Attention.cpp - Scaled dot-product attention core ------------------===//
//
// Work items are (example, head, block of queries). Each item computes its
// logits block with one single-threaded GEMM, masks and exponentiates it in
// place while it is in cache (and drops probabilities in a training step),
// multiplies by V with a second GEMM straight into the output, and divides
// each output row by its softmax sum. The bf16 variant runs both products as
// oneDNN bf16 matmuls and normalises the weights, rounded to bf16, before the
// second.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/RandomScale.h"
#include "runtime/cpu/Simd.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <utility>
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

/// The keys an item's logits cover: all of them, but under the causal mask
/// those up to the block's last query, unless a pad query spreads over every
/// key (keys past the last query then get exactly zero weight).
int64_t blockKeys(const int32_t *rowIds, int32_t padId, bool causal,
                  int64_t seq, int64_t query0, int64_t rows) {
  if (!causal)
    return seq;
  for (int64_t r = 0; r < rows; ++r)
    if (rowIds && rowIds[query0 + r] == padId)
      return seq;
  return query0 + rows;
}

/// Masks the [rows, keys] logits of queries query0.. of example b, head h,
/// exponentiates them in place (dropping some in a training step) and sets
/// inverseSums[r] to the scale of row r's weights.
void exponentiateBlock(float *logits, float *inverseSums, const int32_t *rowIds,
                       const AttentionShape &shape, int32_t padId, bool causal,
                       const AttentionDropout &dropout, int64_t b, int64_t h,
                       int64_t query0, int64_t rows, int64_t keys) {
  const float lowest = std::numeric_limits<float>::lowest();
  int64_t seq = shape.seq;
  auto isPad = [&](int64_t token) { return rowIds && rowIds[token] == padId; };
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
}

/// One (example, head, query block) item; `logits` holds kQueryBlock * seq
/// floats and `inverseSums` kQueryBlock.
void attendBlock(const float *q, const float *k, const float *v,
                 const int32_t *ids, float *out, const AttentionShape &shape,
                 int32_t padId, bool causal, const AttentionDropout &dropout,
                 int64_t b, int64_t h, int64_t query0, float *logits,
                 float *inverseSums) {
  int64_t seq = shape.seq, ld = shape.rowStride();
  int64_t rows = std::min(kQueryBlock, seq - query0);
  const int32_t *rowIds = ids ? ids + b * seq : nullptr;
  int64_t keys = blockKeys(rowIds, padId, causal, seq, query0, rows);

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

  exponentiateBlock(logits, inverseSums, rowIds, shape, padId, causal, dropout,
                    b, h, query0, rows, keys);

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

/// Runs `item(index, logits, inverseSums)` for every (example, head, query
/// block) item of `shape`, in parallel, with per-thread logits and sums.
template <typename Item>
void forEachItem(const AttentionShape &shape, Item &&item) {
  int64_t queryBlocks = (shape.seq + kQueryBlock - 1) / kQueryBlock;
  int64_t items = shape.batch * shape.heads * queryBlocks;
  double flops =
      4.0 * shape.batch * shape.heads * shape.seq * shape.seq * shape.headDim;
  bool parallel = items > 1 && flops >= (1 << 18) && !omp_in_parallel();
  detail::ExceptionCollector errors;
#pragma omp parallel if (parallel)
  {
    std::vector<float> logits(kQueryBlock * shape.seq);
    std::vector<float> inverseSums(kQueryBlock);
#pragma omp for schedule(dynamic, 1)
    for (int64_t index = 0; index < items; ++index)
      errors.run([&] {
        int64_t b = index / (shape.heads * queryBlocks);
        int64_t h = index / queryBlocks % shape.heads;
        int64_t query0 = index % queryBlocks * kQueryBlock;
        item(b, h, query0, logits.data(), inverseSums.data());
      });
  }
  errors.rethrow();
}

} // namespace

void attention(const float *q, const float *k, const float *v,
               const int32_t *ids, float *out, int64_t batch, int64_t seq,
               int64_t heads, int64_t headDim, int32_t padId, bool causal,
               const AttentionDropout &dropout) {
  AttentionShape shape{batch, seq, heads, headDim};
  forEachItem(shape, [&](int64_t b, int64_t h, int64_t query0, float *logits,
                         float *inverseSums) {
    attendBlock(q, k, v, ids, out, shape, padId, causal, dropout, b, h, query0,
                logits, inverseSums);
  });
}

struct AttentionBf16::Impl {
  AttentionShape shape;
  bool causal;
  std::array<bool, 3> inBf16;
  bool outBf16;
  /// The two products of an item of `rows` queries over `keys` keys.
  struct Products {
    detail::Bf16Matmul scores, mix;
  };
  std::map<std::pair<int64_t, int64_t>, Products> products;

  const Products &at(int64_t rows, int64_t keys) const {
    return products.at({rows, keys});
  }
};

AttentionBf16::AttentionBf16(int64_t batch, int64_t seq, int64_t heads,
                             int64_t headDim, bool causal,
                             std::array<bool, 3> inBf16, bool outBf16)
    : impl(std::make_unique<Impl>()) {
  Impl &p = *impl;
  p.shape = {batch, seq, heads, headDim};
  p.causal = causal;
  p.inBf16 = inBf16;
  p.outBf16 = outBf16;
  int64_t ld = p.shape.rowStride();
  for (int64_t query0 = 0; query0 < seq; query0 += kQueryBlock) {
    int64_t rows = std::min(kQueryBlock, seq - query0);
    // Every key count blockKeys can give this block.
    for (int64_t keys : {seq, causal ? query0 + rows : seq}) {
      if (p.products.count({rows, keys}))
        continue;
      detail::Bf16MatmulShape scores;
      scores.m = rows;
      scores.k = headDim;
      scores.n = keys;
      scores.lda = ld;
      scores.ldb = ld;
      scores.transB = true;
      scores.ldc = keys;
      scores.alpha = 1.0f / std::sqrt(static_cast<float>(headDim));
      detail::Bf16MatmulShape mix;
      mix.m = rows;
      mix.k = keys;
      mix.n = headDim;
      mix.lda = keys;
      mix.ldb = ld;
      mix.ldc = ld;
      mix.cBf16 = outBf16;
      p.products.emplace(
          std::make_pair(rows, keys),
          Impl::Products{detail::Bf16Matmul(scores), detail::Bf16Matmul(mix)});
    }
  }
}

AttentionBf16::~AttentionBf16() = default;
AttentionBf16::AttentionBf16(AttentionBf16 &&) noexcept = default;

int64_t AttentionBf16::scratchWords() const {
  const Impl &p = *impl;
  int64_t size = p.shape.batch * p.shape.seq * p.shape.rowStride();
  int64_t converted = 0;
  for (bool bf16 : p.inBf16)
    converted += bf16 ? 0 : size;
  return converted;
}

void AttentionBf16::run(const void *q, const void *k, const void *v,
                        const int32_t *ids, void *out, int32_t padId,
                        const AttentionDropout &dropout,
                        uint16_t *scratch) const {
  const Impl &p = *impl;
  const AttentionShape &shape = p.shape;
  int64_t seq = shape.seq, ld = shape.rowStride();
  int64_t size = shape.batch * seq * ld;
  // fp32 operands are rounded to bf16 into the scratch first.
  std::array<const uint16_t *, 3> in;
  std::array<const void *, 3> given = {q, k, v};
  for (int i = 0; i < 3; ++i) {
    if (p.inBf16[i]) {
      in[i] = static_cast<const uint16_t *>(given[i]);
      continue;
    }
    toBf16(static_cast<const float *>(given[i]), scratch, size);
    in[i] = scratch;
    scratch += size;
  }
  size_t outElement = p.outBf16 ? sizeof(uint16_t) : sizeof(float);
  forEachItem(shape, [&](int64_t b, int64_t h, int64_t query0, float *logits,
                         float *inverseSums) {
    thread_local std::vector<uint16_t> weights;
    if (weights.size() < size_t(kQueryBlock * seq))
      weights.resize(kQueryBlock * seq);
    int64_t rows = std::min(kQueryBlock, seq - query0);
    const int32_t *rowIds = ids ? ids + b * seq : nullptr;
    int64_t keys = blockKeys(rowIds, padId, p.causal, seq, query0, rows);
    const Impl::Products &products = p.at(rows, keys);
    int64_t offset = b * seq * ld + h * shape.headDim;
    products.scores.run(in[0] + offset + query0 * ld, in[1] + offset, logits);
    exponentiateBlock(logits, inverseSums, rowIds, shape, padId, p.causal,
                      dropout, b, h, query0, rows, keys);
    // The normalised weights in bf16: the product with v needs no scaling.
    for (int64_t r = 0; r < rows; ++r) {
      float *row = logits + r * keys;
      simd::scaleRow(row, row, keys, inverseSums[r]);
      toBf16(row, weights.data() + r * keys, keys);
    }
    products.mix.run(weights.data(), in[2] + offset,
                     static_cast<char *>(out) +
                         (offset + query0 * ld) * outElement);
  });
}

} // namespace mixer::cpu
