//===- ReferenceAuxiliaryLosses.cpp - Plain auxiliary-loss twins ----------===//

#include "runtime/cpu/ReferenceAuxiliaryLosses.h"
#include "runtime/cpu/CounterRandom.h"
#include "runtime/cpu/Kernels.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace mixer::cpu::reference {
namespace {

/// log_softmax of one row of n values, in double.
std::vector<double> logSoftmax(const float *row, int64_t n) {
  double maximum = *std::max_element(row, row + n);
  double sum = 0.0;
  for (int64_t e = 0; e < n; ++e)
    sum += std::exp(row[e] - maximum);
  double lse = maximum + std::log(sum);
  std::vector<double> out(n);
  for (int64_t e = 0; e < n; ++e)
    out[e] = row[e] - lse;
  return out;
}

/// lp[e] = log(mean_t softmax(logits[t])_e) as logsumexp over the tokens of
/// the log-softmax, minus log(numTokens).
std::vector<double> logMeanSoftmax(const float *logits, int64_t numTokens,
                                   int64_t experts) {
  std::vector<double> ls(numTokens * experts);
  for (int64_t t = 0; t < numTokens; ++t) {
    std::vector<double> row = logSoftmax(logits + t * experts, experts);
    std::copy(row.begin(), row.end(), ls.begin() + t * experts);
  }
  std::vector<double> lp(experts);
  for (int64_t e = 0; e < experts; ++e) {
    double maximum = -INFINITY;
    for (int64_t t = 0; t < numTokens; ++t)
      maximum = std::max(maximum, ls[t * experts + e]);
    double sum = 0.0;
    for (int64_t t = 0; t < numTokens; ++t)
      sum += std::exp(ls[t * experts + e] - maximum);
    lp[e] = maximum + std::log(sum) - std::log(static_cast<double>(numTokens));
  }
  return lp;
}

} // namespace

void routerZLossGrad(const float *logits, int64_t numTokens, int64_t experts,
                     float dLoss, float *dLogits) {
  for (int64_t t = 0; t < numTokens; ++t) {
    std::vector<double> ls = logSoftmax(logits + t * experts, experts);
    // lse = logit - log_softmax, the same for every expert.
    double lse = logits[t * experts] - ls[0];
    // d(lse^2 / numTokens) / dlse, times dlse/dlogit = softmax.
    double dLse = static_cast<double>(dLoss) * 2.0 * lse / numTokens;
    for (int64_t e = 0; e < experts; ++e)
      dLogits[t * experts + e] = static_cast<float>(dLse * std::exp(ls[e]));
  }
}

void loadBalancingLossGrad(const float *probs, int64_t groups,
                           int64_t tokensPerGroup, int64_t experts, int64_t k,
                           float dLoss, float *dProbs) {
  if (k > experts)
    throw KernelError{"load_balancing_loss gradient: k " + std::to_string(k) +
                      " exceeds the expert count " + std::to_string(experts)};
  int64_t tpg = tokensPerGroup;
  // mask[t,e] = 1 when fewer than k experts precede e in (value descending,
  // index ascending) order.
  std::vector<double> f(groups * experts, 0.0);
  for (int64_t t = 0; t < groups * tpg; ++t) {
    const float *row = probs + t * experts;
    for (int64_t e = 0; e < experts; ++e) {
      int64_t ahead = 0;
      for (int64_t j = 0; j < experts; ++j)
        ahead += row[j] > row[e] || (row[j] == row[e] && j < e);
      if (ahead < k)
        f[t / tpg * experts + e] += 1.0 / tpg;
    }
  }
  // loss = sum_{g,e} f * P * experts^2 / (groups * experts) with
  // P[g,e] = sum_t probs[g,t,e] / tpg.
  double dP = static_cast<double>(dLoss) * experts * experts /
              (static_cast<double>(groups) * experts);
  for (int64_t t = 0; t < groups * tpg; ++t)
    for (int64_t e = 0; e < experts; ++e)
      dProbs[t * experts + e] =
          static_cast<float>(dP * f[t / tpg * experts + e] / tpg);
}

float entropyRegularizer(const float *logits, int64_t numTokens,
                         int64_t experts) {
  std::vector<double> lp = logMeanSoftmax(logits, numTokens, experts);
  double negEntropy = 0.0;
  for (int64_t e = 0; e < experts; ++e)
    negEntropy += std::exp(lp[e]) * lp[e];
  return static_cast<float>(negEntropy);
}

void entropyRegularizerGrad(const float *logits, int64_t numTokens,
                            int64_t experts, float dLoss, float *dLogits) {
  std::vector<double> lp = logMeanSoftmax(logits, numTokens, experts);
  for (int64_t t = 0; t < numTokens; ++t) {
    std::vector<double> p = logSoftmax(logits + t * experts, experts);
    for (double &v : p)
      v = std::exp(v);
    // dR/dp[t,e] = (lp_e + 1) / numTokens; dp_e/dx_j = p_e (delta_ej - p_j).
    for (int64_t j = 0; j < experts; ++j) {
      double sum = 0.0;
      for (int64_t e = 0; e < experts; ++e)
        sum += (lp[e] + 1.0) / numTokens * p[e] * ((e == j) - p[j]);
      dLogits[t * experts + j] = static_cast<float>(dLoss * sum);
    }
  }
}

void expertDropout(const float *x, float *y, int64_t n, int64_t seed,
                   int64_t stream, int64_t step, double rate, float fill) {
  CounterUniforms uniforms(seed, stream, step);
  for (int64_t i = 0; i < n; ++i)
    y[i] = uniforms.at(i) < rate ? fill : x[i];
}

} // namespace mixer::cpu::reference
