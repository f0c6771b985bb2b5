//===- Losses.cpp - Training losses and row gathers/scatters --------------===//
//
// The losses return sums whose per-row terms are kept in double and added in
// row order. The scatter-adds (embedding and gather gradients) give every
// output row to exactly one work item, which adds its contributions in token
// order: no atomics, and results independent of the thread count.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Simd.h"
#include "runtime/cpu/TransformerGradients.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using simd::VecF;

/// Work below this many values stays on one thread.
constexpr int64_t kParallelValues = 1 << 15;
/// Columns per work item of the keyed scatter-add.
constexpr int64_t kScatterColumns = 256;

KernelError outOfRange(const char *tensor, int64_t row, int64_t col,
                       int64_t value, const char *what, int64_t size) {
  return KernelError{std::string(tensor) + "[" + std::to_string(row) + "," +
                     std::to_string(col) + "] = " + std::to_string(value) +
                     " is outside the " + what + " [0, " +
                     std::to_string(size) + ")"};
}

/// Checks keys[0, rows*cols) against [0, size), naming the first bad one.
void checkRange(const int32_t *keys, int64_t rows, int64_t cols, int64_t size,
                const char *tensor, const char *what) {
  for (int64_t i = 0; i < rows * cols; ++i)
    if (keys[i] < 0 || keys[i] >= size)
      throw outOfRange(tensor, i / cols, i % cols, keys[i], what, size);
}

/// out[key(t), :] (+)= src[t, :] over `tokens` rows of width d, where
/// key(t) is in [0, numKeys). Rows of `out` that no token names are zeroed
/// unless `accumulate`. Tokens are bucketed by key with a stable counting
/// sort; each (key, column block) is one work item summing in token order.
template <typename Key>
void scatterAddByKey(Key key, int64_t tokens, int64_t numKeys, const float *src,
                     float *out, int64_t d, bool accumulate) {
  std::vector<int64_t> start(numKeys + 1, 0);
  for (int64_t t = 0; t < tokens; ++t)
    ++start[key(t) + 1];
  for (int64_t i = 0; i < numKeys; ++i)
    start[i + 1] += start[i];
  std::vector<int64_t> order(tokens);
  std::vector<int64_t> next(start.begin(), start.end() - 1);
  for (int64_t t = 0; t < tokens; ++t)
    order[next[key(t)]++] = t;

  int64_t colBlocks = (d + kScatterColumns - 1) / kScatterColumns;
  int64_t items = numKeys * colBlocks;
  bool parallel = (numKeys + tokens) * d >= kParallelValues;
#pragma omp parallel for schedule(dynamic, 64) if (parallel)
  for (int64_t item = 0; item < items; ++item) {
    int64_t row = item / colBlocks;
    int64_t col0 = item % colBlocks * kScatterColumns;
    int64_t width = std::min(kScatterColumns, d - col0);
    float *target = out + row * d + col0;
    double acc[kScatterColumns];
    for (int64_t c = 0; c < width; ++c)
      acc[c] = accumulate ? target[c] : 0.0;
    for (int64_t i = start[row]; i < start[row + 1]; ++i) {
      const float *from = src + order[i] * d + col0;
      for (int64_t c = 0; c < width; ++c)
        acc[c] += from[c];
    }
    for (int64_t c = 0; c < width; ++c)
      target[c] = static_cast<float>(acc[c]);
  }
}

/// Maximum of a row of n > 0 values.
float rowMax(const float *x, int64_t n) {
  VecF maxima = simd::splat(-__builtin_inff());
  simd::forChunks(n, [&](int64_t i, int64_t count) {
    maxima =
        simd::max(maxima, simd::loadChunk(x + i, count, -__builtin_inff()));
  });
  return simd::reduceMax(maxima);
}

/// Cross-entropy of one row, weight already applied by the caller; writes
/// gradScale * (softmax - onehot) into `grad` (a scratch row when the
/// gradient is not wanted; may alias x).
double crossEntropyRow(const float *x, int32_t label, int64_t classes,
                       float *grad, float gradScale) {
  float labelLogit = x[label];
  float maximum = rowMax(x, classes);
  VecF sums = simd::splat(0.0f);
  simd::forChunks(classes, [&](int64_t i, int64_t count) {
    // Tail lanes load as -inf and add exp(-inf) = 0.
    VecF e =
        simd::exp(simd::loadChunk(x + i, count, -__builtin_inff()) - maximum);
    simd::storeChunk(grad + i, e, count);
    sums += e;
  });
  float sum = simd::reduceAdd(sums);
  simd::scaleRow(grad, grad, classes, gradScale / sum);
  grad[label] -= gradScale;
  return std::log(static_cast<double>(sum)) + maximum - labelLogit;
}

} // namespace

void embedBackward(const int32_t *ids, const int32_t *typeIds, const float *dy,
                   float *dword, float *dpos, float *dtype, int64_t batch,
                   int64_t seq, int64_t dEmb, int64_t vocab, int64_t posRows,
                   int64_t typeVocab, bool accumulate) {
  checkRange(ids, batch, seq, vocab, "input_ids", "vocabulary");
  if (typeIds)
    checkRange(typeIds, batch, seq, typeVocab, "type_ids", "type vocabulary");
  if (seq > posRows)
    throw KernelError{"embedding gradient: the position table has " +
                      std::to_string(posRows) + " rows, fewer than the " +
                      std::to_string(seq) + " positions"};
  int64_t tokens = batch * seq;
  if (dword)
    scatterAddByKey([&](int64_t t) { return ids[t]; }, tokens, vocab, dy, dword,
                    dEmb, accumulate);
  if (dpos)
    scatterAddByKey([&](int64_t t) { return t % seq; }, tokens, posRows, dy,
                    dpos, dEmb, accumulate);
  if (dtype)
    scatterAddByKey(
        [&](int64_t t) { return typeIds ? int64_t(typeIds[t]) : int64_t(0); },
        tokens, typeVocab, dy, dtype, dEmb, accumulate);
}

float softmaxCrossEntropy(const float *logits, const int32_t *labels,
                          const float *weights, int64_t rows, int64_t classes,
                          float *dlogits, float lossScale) {
  for (int64_t r = 0; r < rows; ++r)
    if (labels[r] < -1 || labels[r] >= classes)
      throw KernelError{"cross-entropy: labels[" + std::to_string(r) +
                        "] = " + std::to_string(labels[r]) +
                        " is outside the classes [0, " +
                        std::to_string(classes) + ") and not -1 (ignored)"};
  std::vector<double> losses(rows, 0.0);
#pragma omp parallel if (rows * classes >= kParallelValues)
  {
    std::vector<float> scratch(dlogits ? 0 : classes);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      float *grad = dlogits ? dlogits + r * classes : scratch.data();
      if (labels[r] == -1) {
        std::fill(grad, grad + classes, 0.0f);
        continue;
      }
      float weight = weights ? weights[r] : 1.0f;
      losses[r] = weight * crossEntropyRow(logits + r * classes, labels[r],
                                           classes, grad, lossScale * weight);
    }
  }
  double total = 0.0;
  for (double loss : losses)
    total += loss;
  return static_cast<float>(total);
}

float squaredError(const float *pred, const float *target, int64_t rows,
                   float *dpred, float lossScale) {
  double total = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    float error = pred[r] - target[r];
    total += static_cast<double>(error) * error;
    if (dpred)
      dpred[r] = lossScale * 2.0f * error;
  }
  return static_cast<float>(total);
}

void gatherRows(const float *x, const int32_t *positions, float *y,
                int64_t batch, int64_t seq, int64_t d, int64_t numPositions) {
  checkRange(positions, batch, numPositions, seq, "positions", "sequence");
  bool parallel = batch * numPositions * d >= kParallelValues;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < batch * numPositions; ++i)
    std::memcpy(y + i * d, x + (i / numPositions * seq + positions[i]) * d,
                d * sizeof(float));
}

void gatherRowsBackward(const float *dy, const int32_t *positions, float *dx,
                        int64_t batch, int64_t seq, int64_t d,
                        int64_t numPositions, bool accumulate) {
  checkRange(positions, batch, numPositions, seq, "positions", "sequence");
  // Each example's rows of dx belong to one iteration, which adds its
  // positions in order.
  bool parallel = batch * seq * d >= kParallelValues;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < batch; ++b) {
    float *example = dx + b * seq * d;
    if (!accumulate)
      std::fill(example, example + seq * d, 0.0f);
    for (int64_t p = 0; p < numPositions; ++p) {
      float *row = example + positions[b * numPositions + p] * d;
      const float *from = dy + (b * numPositions + p) * d;
      simd::forChunks(d, [&](int64_t i, int64_t count) {
        simd::storeChunk(row + i,
                         simd::loadChunk(row + i, count) +
                             simd::loadChunk(from + i, count),
                         count);
      });
    }
  }
}

} // namespace mixer::cpu
