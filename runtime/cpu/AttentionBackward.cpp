//===- AttentionBackward.cpp - Gradient of the attention core -------------===//
//
// Work items are (example, head) pairs, so that each item owns its slices of
// dK and dV and adds the contributions of its query blocks in order. Per
// block of queries the probabilities are recomputed as in the forward (one
// GEMM, mask, exponentiate, normalise; in a training step the dropped
// probabilities P' beside them), then four GEMMs give dV += P'^T dO,
// dP' = dO V^T, dQ = dS K and dK += dS^T Q with dS computed in place of dP'
// (through dP = dP' o mask / (1 - rate), the mask drawn again).
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/RandomScale.h"
#include "runtime/cpu/Simd.h"
#include "runtime/cpu/TransformerGradients.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mixer::cpu {
namespace {

/// Queries per block: the two [128, seq] blocks stay in L2 for seq up to
/// about 1024.
constexpr int64_t kQueryBlock = 128;

struct Problem {
  const float *q, *k, *v;
  const int32_t *ids;
  const float *dout;
  float *dq, *dk, *dv;
  int64_t seq, heads, headDim;
  int32_t padId;
  bool causal;
  AttentionDropout dropout;
  int64_t rowStride() const { return heads * headDim; }
};

/// One single-threaded row-major product c = alpha * op(a) * op(b) +
/// beta * c.
void product(bool transA, bool transB, int64_t m, int64_t n, int64_t k,
             const float *a, int64_t lda, const float *b, int64_t ldb, float *c,
             int64_t ldc, float alpha, float beta) {
  detail::GemmArgs g;
  g.transA = transA;
  g.transB = transB;
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a;
  g.lda = lda;
  g.b = b;
  g.ldb = ldb;
  g.c = c;
  g.ldc = ldc;
  g.alpha = alpha;
  g.beta = beta;
  detail::gemm(g);
}

/// Zeroes `rows` rows of `cols` values at stride ld.
void zeroRows(float *p, int64_t rows, int64_t cols, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r)
    std::fill(p + r * ld, p + r * ld + cols, 0.0f);
}

/// One block of queries of one (example, head); `probs` and `grads` hold
/// kQueryBlock * seq floats each, and so does `kept` (the dropped
/// probabilities) when the dropout is active.
void backwardBlock(const Problem &p, int64_t b, int64_t h, int64_t query0,
                   float *probs, float *grads, float *kept) {
  const float lowest = std::numeric_limits<float>::lowest();
  int64_t seq = p.seq, ld = p.rowStride(), hd = p.headDim;
  int64_t rows = std::min(kQueryBlock, seq - query0);
  const int32_t *rowIds = p.ids ? p.ids + b * seq : nullptr;
  auto isPad = [&](int64_t token) {
    return rowIds && rowIds[token] == p.padId;
  };

  // As in the forward: under the causal mask, keys past the block's last
  // query have zero weight, unless a pad query spreads over every key.
  int64_t keys = seq;
  if (p.causal) {
    bool padQuery = false;
    for (int64_t r = 0; r < rows; ++r)
      padQuery = padQuery || isPad(query0 + r);
    if (!padQuery)
      keys = query0 + rows;
  }

  int64_t offset = b * seq * ld + h * hd;
  int64_t blockOffset = offset + query0 * ld;
  float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  product(false, true, rows, keys, hd, p.q + blockOffset, ld, p.k + offset, ld,
          probs, keys, scale, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t query = query0 + r;
    float *row = probs + r * keys;
    if (isPad(query)) {
      std::fill(row, row + keys, lowest);
    } else {
      if (rowIds)
        for (int64_t key = 0; key < keys; ++key)
          row[key] = rowIds[key] == p.padId ? lowest : row[key];
      if (p.causal)
        std::fill(row + std::min(query + 1, keys), row + keys, lowest);
    }
    simd::scaleRow(row, row, keys,
                   1.0f / simd::exponentiateRow(row, row, keys));
    if (p.dropout.active())
      dropoutRun(row, kept + r * keys, keys,
                 ((b * p.heads + h) * seq + query) * seq, p.dropout.rate,
                 static_cast<float>(1.0 - p.dropout.rate), p.dropout.uniforms);
  }
  // P', which multiplied V: the probabilities themselves without dropout.
  const float *dropped = p.dropout.active() ? kept : probs;

  if (p.dv)
    product(true, false, keys, hd, rows, dropped, keys, p.dout + blockOffset,
            ld, p.dv + offset, ld, 1.0f, 1.0f);
  if (!p.dq && !p.dk)
    return;
  product(false, true, rows, keys, hd, p.dout + blockOffset, ld, p.v + offset,
          ld, grads, keys, 1.0f, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    float *grad = grads + r * keys;
    // dP = dP' o mask / (1 - rate), from the same draws as P'.
    if (p.dropout.active())
      dropoutRun(grad, grad, keys, ((b * p.heads + h) * seq + query0 + r) * seq,
                 p.dropout.rate, static_cast<float>(1.0 - p.dropout.rate),
                 p.dropout.uniforms);
    // A pad query's logits are all the same constant: no gradient.
    if (isPad(query0 + r)) {
      std::fill(grad, grad + keys, 0.0f);
      continue;
    }
    // Masked keys have probability exactly 0, hence dS = 0 there.
    const float *prob = probs + r * keys;
    simd::VecF dots = simd::splat(0.0f);
    simd::forChunks(keys, [&](int64_t i, int64_t count) {
      dots +=
          simd::loadChunk(prob + i, count) * simd::loadChunk(grad + i, count);
    });
    float dot = simd::reduceAdd(dots);
    simd::forChunks(keys, [&](int64_t i, int64_t count) {
      simd::storeChunk(grad + i,
                       simd::loadChunk(prob + i, count) *
                           (simd::loadChunk(grad + i, count) - dot),
                       count);
    });
  }
  if (p.dq)
    product(false, false, rows, hd, keys, grads, keys, p.k + offset, ld,
            p.dq + blockOffset, ld, scale, 0.0f);
  if (p.dk)
    product(true, false, keys, hd, rows, grads, keys, p.q + blockOffset, ld,
            p.dk + offset, ld, scale, 1.0f);
}

} // namespace

void attentionBackward(const float *q, const float *k, const float *v,
                       const int32_t *ids, const float *dout, float *dq,
                       float *dk, float *dv, int64_t batch, int64_t seq,
                       int64_t heads, int64_t headDim, int32_t padId,
                       bool causal, const AttentionDropout &dropout) {
  Problem p{q,  k,   v,     ids,     dout,  dq,     dk,
            dv, seq, heads, headDim, padId, causal, dropout};
  int64_t items = batch * heads;
  int64_t ld = p.rowStride();
  double flops = 10.0 * batch * heads * seq * seq * headDim;
  bool parallel = items > 1 && flops >= (1 << 18) && !omp_in_parallel();
  detail::ExceptionCollector errors;
#pragma omp parallel if (parallel)
  {
    std::vector<float> probs(kQueryBlock * seq), grads(kQueryBlock * seq),
        kept(dropout.active() ? kQueryBlock * seq : 0);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item)
      errors.run([&] {
        int64_t b = item / heads, h = item % heads;
        int64_t offset = b * seq * ld + h * headDim;
        // dK and dV gather every query block's contribution.
        for (float *grad : {dk, dv})
          if (grad)
            zeroRows(grad + offset, seq, headDim, ld);
        for (int64_t query0 = 0; query0 < seq; query0 += kQueryBlock)
          backwardBlock(p, b, h, query0, probs.data(), grads.data(),
                        kept.data());
      });
  }
  errors.rethrow();
}

} // namespace mixer::cpu
