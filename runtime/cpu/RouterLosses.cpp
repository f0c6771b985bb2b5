//===- RouterLosses.cpp - Router z-loss and load-balancing loss -----------===//
//
// Both losses are means over tokens. Tokens are cut into fixed blocks whose
// partial sums are kept in double and added in block order afterwards, so the
// result does not depend on how OpenMP distributes the blocks.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/Simd.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace mixer::cpu {
namespace {

/// Work below this many values stays on one thread.
constexpr int64_t kParallelValues = 1 << 15;
/// Tokens per block of partial sums.
constexpr int64_t kBlockTokens = 256;

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Whether expert e of `row` is among the k largest of its `experts`
/// values, ties to the lower index: fewer than k experts precede it.
bool inTopK(const float *row, int64_t experts, int64_t e, int64_t k) {
  int64_t ahead = 0;
  for (int64_t j = 0; j < e; ++j)
    ahead += row[j] >= row[e];
  for (int64_t j = e + 1; j < experts; ++j)
    ahead += row[j] > row[e];
  return ahead < k;
}

} // namespace

float routerZLoss(const float *logits, int64_t numTokens, int64_t experts) {
  int64_t blocks = ceilDiv(numTokens, kBlockTokens);
  std::vector<double> partial(blocks, 0.0);
#pragma omp parallel if (numTokens * experts >= kParallelValues)
  {
    std::vector<float> exps(experts);
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      int64_t end = std::min(numTokens, (blk + 1) * kBlockTokens);
      for (int64_t t = blk * kBlockTokens; t < end; ++t) {
        const float *row = logits + t * experts;
        float rowMax = *std::max_element(row, row + experts);
        double logSumExp =
            rowMax + std::log(simd::exponentiateRow(row, exps.data(), experts));
        partial[blk] += logSumExp * logSumExp;
      }
    }
  }
  double sum = 0.0;
  for (double p : partial)
    sum += p;
  return static_cast<float>(sum / numTokens);
}

float loadBalancingLoss(const float *probs, int64_t groups,
                        int64_t tokensPerGroup, int64_t experts, int64_t k) {
  if (k > experts)
    throw KernelError{"load_balancing_loss: k " + std::to_string(k) +
                      " exceeds the expert count " + std::to_string(experts)};
  // Blocks never straddle two groups.
  int64_t blocksPerGroup = ceilDiv(tokensPerGroup, kBlockTokens);
  int64_t blocks = groups * blocksPerGroup;
  std::vector<int64_t> chosen(blocks * experts, 0);
  std::vector<double> probSums(blocks * experts, 0.0);
#pragma omp parallel for schedule(                                             \
    static) if (groups * tokensPerGroup * experts >= kParallelValues)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    int64_t g = blk / blocksPerGroup;
    int64_t begin = (blk % blocksPerGroup) * kBlockTokens;
    int64_t end = std::min(tokensPerGroup, begin + kBlockTokens);
    for (int64_t t = g * tokensPerGroup + begin; t < g * tokensPerGroup + end;
         ++t) {
      const float *row = probs + t * experts;
      for (int64_t e = 0; e < experts; ++e) {
        chosen[blk * experts + e] += inTopK(row, experts, e, k);
        probSums[blk * experts + e] += row[e];
      }
    }
  }
  // sum_{g,e} f * P, with f and P the per-group means.
  double sumFP = 0.0;
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t e = 0; e < experts; ++e) {
      int64_t count = 0;
      double probSum = 0.0;
      for (int64_t b = 0; b < blocksPerGroup; ++b) {
        count += chosen[(g * blocksPerGroup + b) * experts + e];
        probSum += probSums[(g * blocksPerGroup + b) * experts + e];
      }
      sumFP += static_cast<double>(count) / tokensPerGroup * probSum /
               tokensPerGroup;
    }
  // mean over the groups * experts products, times experts^2.
  return static_cast<float>(sumFP / (groups * experts) * experts * experts);
}

} // namespace mixer::cpu
