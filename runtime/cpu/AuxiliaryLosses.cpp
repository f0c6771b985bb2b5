//===- AuxiliaryLosses.cpp - Router losses and regularisers ---------------===//
//
// Row-wise work (softmax rows, the dropout mask) is split over the threads
// freely. Reductions over tokens use fixed blocks of tokens whose partial
// results are combined in block order afterwards, so that no result depends
// on how OpenMP distributes the blocks.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/AuxiliaryLosses.h"
#include "runtime/cpu/CounterRandom.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Simd.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

using simd::VecF;

/// Work below this many values stays on one thread.
constexpr int64_t kParallelValues = 1 << 15;
/// Tokens per block of partial results.
constexpr int64_t kBlockTokens = 256;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// logsumexp of a row of n > 0 values; `exps` receives exp(x - max) and
/// `sum` their sum. exps may alias x.
double logSumExpRow(const float *x, float *exps, int64_t n, float &sum) {
  float maximum = *std::max_element(x, x + n);
  sum = simd::exponentiateRow(x, exps, n);
  return maximum + std::log(static_cast<double>(sum));
}

/// Adds 1 to counts[e] for each of the k experts that `row` chooses: the
/// k largest values, ties to the lower expert index, found by k scans for
/// the first maximum among the experts not yet taken (k is small).
/// `taken` is scratch of `experts` entries.
void countTopK(const float *row, int64_t experts, int64_t k,
               std::vector<char> &taken, int64_t *counts) {
  std::fill(taken.begin(), taken.end(), 0);
  for (int64_t choice = 0; choice < k; ++choice) {
    int64_t best = -1;
    for (int64_t e = 0; e < experts; ++e)
      if (!taken[e] && (best < 0 || row[e] > row[best]))
        best = e;
    taken[best] = 1;
    ++counts[best];
  }
}

} // namespace

std::vector<double> logMeanSoftmax(const float *logits, int64_t numTokens,
                                   int64_t experts) {
  int64_t blocks = ceilDiv(numTokens, kBlockTokens);
  bool parallel = numTokens * experts >= kParallelValues;
  std::vector<float> lse(numTokens);
  // Column maxima of the log-softmax per block; the maximum of these is
  // the same in any order.
  std::vector<float> blockMax(blocks * experts, -__builtin_inff());
#pragma omp parallel if (parallel)
  {
    std::vector<float> exps(experts);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      float *maxima = blockMax.data() + blk * experts;
      int64_t end = std::min(numTokens, (blk + 1) * kBlockTokens);
      for (int64_t t = blk * kBlockTokens; t < end; ++t) {
        const float *row = logits + t * experts;
        float sum;
        lse[t] =
            static_cast<float>(logSumExpRow(row, exps.data(), experts, sum));
        for (int64_t e = 0; e < experts; ++e)
          maxima[e] = std::max(maxima[e], row[e] - lse[t]);
      }
    }
  }
  std::vector<float> columnMax(experts, -__builtin_inff());
  for (int64_t blk = 0; blk < blocks; ++blk)
    for (int64_t e = 0; e < experts; ++e)
      columnMax[e] = std::max(columnMax[e], blockMax[blk * experts + e]);

  std::vector<double> blockSums(blocks * experts, 0.0);
#pragma omp parallel if (parallel)
  {
    std::vector<float> exps(experts);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      double *sums = blockSums.data() + blk * experts;
      int64_t end = std::min(numTokens, (blk + 1) * kBlockTokens);
      for (int64_t t = blk * kBlockTokens; t < end; ++t) {
        const float *row = logits + t * experts;
        float shift = lse[t];
        simd::forChunks(experts, [&](int64_t i, int64_t count) {
          VecF ls = simd::loadChunk(row + i, count) - shift;
          simd::storeChunk(
              exps.data() + i,
              simd::exp(ls - simd::loadChunk(columnMax.data() + i, count)),
              count);
        });
        for (int64_t e = 0; e < experts; ++e)
          sums[e] += exps[e];
      }
    }
  }
  std::vector<double> lp(experts);
  double logTokens = std::log(static_cast<double>(numTokens));
  for (int64_t e = 0; e < experts; ++e) {
    double sum = 0.0;
    for (int64_t blk = 0; blk < blocks; ++blk)
      sum += blockSums[blk * experts + e];
    lp[e] = columnMax[e] + std::log(sum) - logTokens;
  }
  return lp;
}

void routerZLossGrad(const float *logits, int64_t numTokens, int64_t experts,
                     float dLoss, float *dLogits) {
  double scale = 2.0 * dLoss / numTokens;
#pragma omp parallel for schedule(static) if (numTokens * experts >=           \
                                              kParallelValues)
  for (int64_t t = 0; t < numTokens; ++t) {
    float *grad = dLogits + t * experts;
    float sum;
    double lse = logSumExpRow(logits + t * experts, grad, experts, sum);
    simd::scaleRow(grad, grad, experts, static_cast<float>(scale * lse / sum));
  }
}

void loadBalancingLossGrad(const float *probs, int64_t groups,
                           int64_t tokensPerGroup, int64_t experts, int64_t k,
                           float dLoss, float *dProbs) {
  if (k > experts)
    throw KernelError{"load_balancing_loss gradient: k " + std::to_string(k) +
                      " exceeds the expert count " + std::to_string(experts)};
  // Blocks never straddle two groups; counts are integers, so their sum is
  // exact in any order.
  int64_t blocksPerGroup = ceilDiv(tokensPerGroup, kBlockTokens);
  int64_t blocks = groups * blocksPerGroup;
  int64_t numTokens = groups * tokensPerGroup;
  bool parallel = numTokens * experts >= kParallelValues;
  std::vector<int64_t> counts(blocks * experts, 0);
#pragma omp parallel if (parallel)
  {
    std::vector<char> taken(experts);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      int64_t g = blk / blocksPerGroup;
      int64_t begin = g * tokensPerGroup + blk % blocksPerGroup * kBlockTokens;
      int64_t end = std::min((g + 1) * tokensPerGroup, begin + kBlockTokens);
      for (int64_t t = begin; t < end; ++t)
        countTopK(probs + t * experts, experts, k, taken,
                  counts.data() + blk * experts);
    }
  }
  // d/dP[g,e] of mean_{g,e}(f * P) * experts^2 is f * experts / groups, and
  // dP[g,e]/dprobs[g,t,e] = 1 / tokensPerGroup.
  double scale =
      static_cast<double>(dLoss) * experts /
      (static_cast<double>(groups) * tokensPerGroup * tokensPerGroup);
  std::vector<float> groupGrad(groups * experts);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t e = 0; e < experts; ++e) {
      int64_t count = 0;
      for (int64_t b = 0; b < blocksPerGroup; ++b)
        count += counts[(g * blocksPerGroup + b) * experts + e];
      groupGrad[g * experts + e] = static_cast<float>(scale * count);
    }
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t t = 0; t < numTokens; ++t) {
    const float *from = groupGrad.data() + t / tokensPerGroup * experts;
    std::copy(from, from + experts, dProbs + t * experts);
  }
}

float negativeEntropy(const std::vector<double> &logMean) {
  double negEntropy = 0.0;
  for (double l : logMean)
    negEntropy += std::exp(l) * l;
  return static_cast<float>(negEntropy);
}

float entropyRegularizer(const float *logits, int64_t numTokens,
                         int64_t experts) {
  return negativeEntropy(logMeanSoftmax(logits, numTokens, experts));
}

void entropyRegularizerGrad(const float *logits, int64_t numTokens,
                            int64_t experts, float dLoss, float *dLogits) {
  entropyRegularizerGrad(logits, numTokens, experts,
                         logMeanSoftmax(logits, numTokens, experts),
                         static_cast<double>(dLoss) / numTokens, dLogits);
}

void entropyRegularizerGrad(const float *logits, int64_t numTokens,
                            int64_t experts, const std::vector<double> &lp,
                            double scale, float *dLogits) {
#pragma omp parallel for schedule(static) if (numTokens * experts >=           \
                                              kParallelValues)
  for (int64_t t = 0; t < numTokens; ++t) {
    float *grad = dLogits + t * experts;
    // lp_e - mean is a difference of nearly equal logs when pbar is close to
    // uniform: normalising by the double sum of the exponentials makes the
    // probabilities sum to 1 in double, so that the mean is consistent.
    simd::exponentiateRow(logits + t * experts, grad, experts);
    double sum = 0.0, weighted = 0.0;
    for (int64_t e = 0; e < experts; ++e) {
      sum += grad[e];
      weighted += grad[e] * lp[e];
    }
    double mean = weighted / sum;
    for (int64_t e = 0; e < experts; ++e)
      grad[e] = static_cast<float>(scale * grad[e] / sum * (lp[e] - mean));
  }
}

void expertDropout(const float *x, float *y, int64_t n, int64_t seed,
                   int64_t stream, int64_t step, double rate, float fill,
                   uint64_t first) {
  constexpr int64_t kBatch = CounterUniforms::kBatchElements;
  CounterUniforms uniforms(seed, stream, step, first);
#pragma omp parallel for schedule(static) if (n >= kParallelValues)
  for (int64_t b = 0; b < ceilDiv(n, kBatch); ++b) {
    float u[kBatch];
    uniforms.batch(b * (kBatch / 4), u);
    int64_t begin = b * kBatch;
    int64_t count = std::min(kBatch, n - begin);
    for (int64_t j = 0; j < count; ++j)
      y[begin + j] = u[j] < rate ? fill : x[begin + j];
  }
}

} // namespace mixer::cpu
