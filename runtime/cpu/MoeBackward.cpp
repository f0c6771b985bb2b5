//===- MoeBackward.cpp - Backward of dispatch, experts, combine, gates ----===//
//
// The expert kernels work on the same row tiles as the forward `experts`
// kernel: runs of occupied slots per expert, cut into equal tiles of at most
// 512 rows. The backward has two phases: per row tile (the pre-activations
// when they were not stored, activation gradient, input gradient), then per
// block of an expert's weight gradients, which sums the expert's runs in slot
// order, so that no reduction depends on the thread count. combineBackward
// is per slot; dispatchBackward is combine with unit gates (its per-token
// gather in entry order).
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/ExpertTiles.h"
#include "runtime/cpu/Gemm.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/MixingMoeGradients.h"
#include "runtime/cpu/Simd.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

/// Work below this many values stays on one thread.
constexpr int64_t kParallelValues = 1 << 15;

/// Rows of an expert weight gradient per work item.
constexpr int64_t kGradientRows = 256;

using detail::checkTokens;
using detail::ExpertRows;
using detail::kExpertTileRows;
using detail::occupiedRuns;
using detail::rowTiles;

/// Zeros the rows of empty slots of a [slots, cols] array.
void zeroEmptyRows(const int32_t *tokens, float *rows, int64_t slots,
                   int64_t cols) {
  for (int64_t i = 0; i < slots; ++i)
    if (tokens[i] < 0)
      std::memset(rows + i * cols, 0, cols * sizeof(float));
}

/// Runs `body(item)` for item in [0, items) over the threads, dynamically,
/// collecting exceptions.
template <typename Body> void parallelItems(int64_t items, Body &&body) {
  bool parallel = items > 1 && !omp_in_parallel();
  detail::ExceptionCollector errors;
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t item = 0; item < items; ++item)
    errors.run([&] { body(item); });
  errors.rethrow();
}

/// act'(x), lane-wise; GELU is the derivative of the tanh approximation
/// x * s with s = sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3):
/// s + x s (1 - s) 2u'.
simd::VecF activationDerivative(simd::VecF x, Activation act) {
  switch (act) {
  case Activation::None:
    return simd::splat(1.0f);
  case Activation::Gelu: {
    constexpr float c = 0.7978845608028654f;
    simd::VecF x2 = x * x;
    simd::VecF u = c * (x + 0.044715f * x2 * x);
    simd::VecF s = 1.0f / (1.0f + simd::exp(-2.0f * u));
    simd::VecF du = c * (1.0f + 3.0f * 0.044715f * x2);
    return s + x * s * (1.0f - s) * 2.0f * du;
  }
  case Activation::Tanh: {
    simd::VecF t = simd::tanh(x);
    return 1.0f - t * t;
  }
  case Activation::Relu:
    return x > 0.0f ? simd::splat(1.0f) : simd::splat(0.0f);
  case Activation::GeluErf:
    return simd::geluErfDerivative(x);
  }
  return simd::splat(1.0f);
}

/// out = act(in) over `rows` rows of `cols` values (leading dimension cols).
void applyActivation(const float *in, float *out, int64_t rows, int64_t cols,
                     Activation act) {
  simd::forChunks(rows * cols, [&](int64_t i, int64_t count) {
    simd::storeChunk(
        out + i, simd::activate(simd::loadChunk(in + i, count), act), count);
  });
}

/// grad *= act'(preact) over n values.
void multiplyByDerivative(const float *preact, float *grad, int64_t n,
                          Activation act) {
  simd::forChunks(n, [&](int64_t i, int64_t count) {
    simd::VecF derivative =
        activationDerivative(simd::loadChunk(preact + i, count), act);
    simd::storeChunk(grad + i, simd::loadChunk(grad + i, count) * derivative,
                     count);
  });
}

/// sums[c] (+)= sum over the rows of `runs` of values[row, c], rows in order.
void sumRows(const float *values, const std::vector<const ExpertRows *> &runs,
             float *sums, int64_t cols, bool accumulate) {
  if (!accumulate)
    std::memset(sums, 0, cols * sizeof(float));
  for (const ExpertRows *run : runs)
    for (int64_t r = run->row0; r < run->row0 + run->rows; ++r) {
      const float *row = values + r * cols;
      simd::forChunks(cols, [&](int64_t i, int64_t count) {
        simd::storeChunk(sums + i,
                         simd::loadChunk(sums + i, count) +
                             simd::loadChunk(row + i, count),
                         count);
      });
    }
}

} // namespace

void combineBackward(const float *yd, const int32_t *tokens, const float *gates,
                     const float *dout, float *dyd, float *dgates,
                     int64_t slots, int64_t numTokens, int64_t d) {
  checkTokens(tokens, slots, numTokens, "combine_backward");
#pragma omp parallel for schedule(static) if (slots * d >= kParallelValues)
  for (int64_t i = 0; i < slots; ++i) {
    float *row = dyd + i * d;
    if (tokens[i] < 0) {
      std::memset(row, 0, d * sizeof(float));
      dgates[i] = 0.0f;
      continue;
    }
    const float *upstream = dout + static_cast<int64_t>(tokens[i]) * d;
    const float *value = yd + i * d;
    simd::VecF dot = simd::splat(0.0f);
    simd::forChunks(d, [&](int64_t c, int64_t count) {
      simd::VecF g = simd::loadChunk(upstream + c, count);
      dot += g * simd::loadChunk(value + c, count);
      simd::storeChunk(row + c, g * gates[i], count);
    });
    dgates[i] = simd::reduceAdd(dot);
  }
}

void expertsForwardTraining(const float *xd, const int32_t *tokens,
                            const int32_t *offsets, const float *w1,
                            const float *b1, const float *w2, const float *b2,
                            float *yd, float *hiddenPreact, int64_t numExperts,
                            int64_t slots, int64_t d, int64_t f,
                            Activation act) {
  std::vector<ExpertRows> tiles =
      rowTiles(occupiedRuns(tokens, offsets, numExperts, slots, "experts"));
  zeroEmptyRows(tokens, yd, slots, d);
  zeroEmptyRows(tokens, hiddenPreact, slots, f);
  int64_t items = static_cast<int64_t>(tiles.size());
  bool parallel = items > 1 && !omp_in_parallel();
  detail::ExceptionCollector errors;
#pragma omp parallel if (parallel)
  {
    std::vector<float> hidden(std::min(kExpertTileRows, slots) * f);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item)
      errors.run([&] {
        const ExpertRows &tile = tiles[item];
        float *preact = hiddenPreact + tile.row0 * f;
        // Bias first, activation on the stored sum: the same operations, so
        // the same bits, as the fused epilogue of `experts`.
        detail::expertProjection(
            xd + tile.row0 * d, tile.rows, d, w1 + tile.expert * d * f, f,
            b1 ? b1 + tile.expert * f : nullptr, preact, Activation::None);
        applyActivation(preact, hidden.data(), tile.rows, f, act);
        detail::expertProjection(hidden.data(), tile.rows, f,
                                 w2 + tile.expert * f * d, d,
                                 b2 ? b2 + tile.expert * d : nullptr,
                                 yd + tile.row0 * d, Activation::None);
      });
  }
  errors.rethrow();
}

namespace {

/// expertsBackward, or expertsBackwardRecompute when hiddenPreact is null
/// (then each tile recomputes its pre-activations from xd, w1 and b1).
void expertsBackwardImpl(const float *xd, const int32_t *tokens,
                         const int32_t *offsets, const float *w1,
                         const float *b1, const float *w2,
                         const float *hiddenPreact, const float *dyd,
                         float *dxd, float *dw1, float *db1, float *dw2,
                         float *db2, float *scratch, int64_t numExperts,
                         int64_t slots, int64_t d, int64_t f, Activation act,
                         bool accumulate) {
  std::vector<ExpertRows> runs =
      occupiedRuns(tokens, offsets, numExperts, slots, "experts_grad");
  std::vector<ExpertRows> tiles = rowTiles(runs);
  // H = act(preact) and dP, [slots, f] each; rows of empty slots stay unread.
  float *hidden = scratch;
  float *dPreact = scratch + slots * f;

  // Phase 1, per row tile: (preact,) H, dP = (dyd w2^T) * act'(preact),
  // dxd = dP w1^T.
  zeroEmptyRows(tokens, dxd, slots, d);
  int64_t items = static_cast<int64_t>(tiles.size());
  detail::ExceptionCollector errors;
#pragma omp parallel if (items > 1 && !omp_in_parallel())
  {
    std::vector<float> recomputed(
        hiddenPreact ? 0 : std::min(kExpertTileRows, slots) * f);
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item)
      errors.run([&] {
        const ExpertRows &tile = tiles[item];
        const float *preact =
            hiddenPreact ? hiddenPreact + tile.row0 * f : recomputed.data();
        if (!hiddenPreact)
          // The products of expertsForwardTraining, hence the same bits.
          detail::expertProjection(xd + tile.row0 * d, tile.rows, d,
                                   w1 + tile.expert * d * f, f,
                                   b1 ? b1 + tile.expert * f : nullptr,
                                   recomputed.data(), Activation::None);
        applyActivation(preact, hidden + tile.row0 * f, tile.rows, f, act);
        detail::GemmArgs dh;
        dh.transB = true;
        dh.m = tile.rows;
        dh.n = f;
        dh.k = d;
        dh.a = dyd + tile.row0 * d;
        dh.lda = d;
        dh.b = w2 + tile.expert * f * d;
        dh.ldb = d;
        dh.c = dPreact + tile.row0 * f;
        dh.ldc = f;
        detail::gemm(dh);
        multiplyByDerivative(preact, dh.c, tile.rows * f, act);
        detail::GemmArgs dx;
        dx.transB = true;
        dx.m = tile.rows;
        dx.n = d;
        dx.k = f;
        dx.a = dh.c;
        dx.lda = f;
        dx.b = w1 + tile.expert * d * f;
        dx.ldb = f;
        dx.c = dxd + tile.row0 * d;
        dx.ldc = d;
        detail::gemm(dx);
      });
  }
  errors.rethrow();

  // Phase 2, per expert and block of weight-gradient rows, or per expert for
  // the biases: sums over the expert's runs in slot order.
  std::vector<std::vector<const ExpertRows *>> expertRuns(numExperts);
  for (const ExpertRows &run : runs)
    expertRuns[run.expert].push_back(&run);
  struct Block {
    int64_t expert;
    int kind; // 0: dw1 rows [row0, row0 + rows), 1: dw2 rows, 2: biases
    int64_t row0, rows;
  };
  std::vector<Block> blocks;
  for (int64_t e = 0; e < numExperts; ++e) {
    for (int64_t r = 0; r < d; r += kGradientRows)
      blocks.push_back({e, 0, r, std::min(kGradientRows, d - r)});
    for (int64_t r = 0; r < f; r += kGradientRows)
      blocks.push_back({e, 1, r, std::min(kGradientRows, f - r)});
    if (db1 || db2)
      blocks.push_back({e, 2, 0, 0});
  }
  parallelItems(static_cast<int64_t>(blocks.size()), [&](int64_t item) {
    const Block &block = blocks[item];
    const std::vector<const ExpertRows *> &own = expertRuns[block.expert];
    if (block.kind == 2) {
      if (db1)
        sumRows(dPreact, own, db1 + block.expert * f, f, accumulate);
      if (db2)
        sumRows(dyd, own, db2 + block.expert * d, d, accumulate);
      return;
    }
    // dw1 block = xd^T dP, dw2 block = H^T dyd, over the block's rows.
    bool first = block.kind == 0;
    int64_t inner = first ? d : f, outer = first ? f : d;
    const float *lhs = first ? xd : hidden;
    const float *rhs = first ? dPreact : dyd;
    float *out =
        (first ? dw1 + block.expert * d * f : dw2 + block.expert * f * d) +
        block.row0 * outer;
    if (own.empty() && !accumulate)
      std::memset(out, 0, block.rows * outer * sizeof(float));
    for (size_t r = 0; r < own.size(); ++r) {
      detail::GemmArgs g;
      g.transA = true;
      g.m = block.rows;
      g.n = outer;
      g.k = own[r]->rows;
      g.a = lhs + own[r]->row0 * inner + block.row0;
      g.lda = inner;
      g.b = rhs + own[r]->row0 * outer;
      g.ldb = outer;
      g.c = out;
      g.ldc = outer;
      g.beta = r > 0 || accumulate ? 1.0f : 0.0f;
      detail::gemm(g);
    }
  });
}

} // namespace

void expertsBackward(const float *xd, const int32_t *tokens,
                     const int32_t *offsets, const float *w1, const float *w2,
                     const float *hiddenPreact, const float *dyd, float *dxd,
                     float *dw1, float *db1, float *dw2, float *db2,
                     float *scratch, int64_t numExperts, int64_t slots,
                     int64_t d, int64_t f, Activation act, bool accumulate) {
  expertsBackwardImpl(xd, tokens, offsets, w1, nullptr, w2, hiddenPreact, dyd,
                      dxd, dw1, db1, dw2, db2, scratch, numExperts, slots, d, f,
                      act, accumulate);
}

void expertsBackwardRecompute(const float *xd, const int32_t *tokens,
                              const int32_t *offsets, const float *w1,
                              const float *b1, const float *w2,
                              const float *dyd, float *dxd, float *dw1,
                              float *db1, float *dw2, float *db2,
                              float *scratch, int64_t numExperts, int64_t slots,
                              int64_t d, int64_t f, Activation act,
                              bool accumulate) {
  expertsBackwardImpl(xd, tokens, offsets, w1, b1, w2, nullptr, dyd, dxd, dw1,
                      db1, dw2, db2, scratch, numExperts, slots, d, f, act,
                      accumulate);
}

void dispatchBackward(const float *dxd, const int32_t *tokens, float *dx,
                      int64_t slots, int64_t numTokens, int64_t d) {
  checkTokens(tokens, slots, numTokens, "dispatch_backward");
  // 1 * v is exact: combine with unit gates is the plain sum.
  std::vector<float> ones(slots, 1.0f);
  combine(dxd, tokens, ones.data(), dx, slots, numTokens, d);
}

void routerGateBackward(Routing routing, const float *logits,
                        const int32_t *tokens, const int32_t *offsets,
                        const float *dgates, float *dscores, int64_t numTokens,
                        int64_t experts) {
  bool sigmoid = routing == Routing::SigmoidTopK;
  if (sigmoid && !logits)
    throw KernelError{"router_gate_backward: sigmoid top-k routing needs the "
                      "router logits"};
  checkTokens(tokens, offsets[experts], numTokens, "router_gate_backward");
  std::memset(dscores, 0, numTokens * experts * sizeof(float));
  for (int64_t e = 0; e < experts; ++e)
    for (int64_t i = offsets[e]; i < offsets[e + 1]; ++i) {
      if (tokens[i] < 0)
        continue;
      int64_t at = static_cast<int64_t>(tokens[i]) * experts + e;
      float grad = dgates[i];
      if (sigmoid) {
        float x = logits[at];
        grad *= 1.0f / (1.0f + std::exp(-x)) * (1.0f / (1.0f + std::exp(x)));
      }
      dscores[at] = grad;
    }
}

} // namespace mixer::cpu
