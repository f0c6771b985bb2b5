//===- AuxiliaryLosses.h - Router losses and regularisers -------*- C++ -*-===//
//
// The auxiliary training terms of mixture-of-experts layers with their
// gradients: the gradients of the router z-loss and of the load-balancing
// loss (forwards in Kernels.h), the sigma-MoE entropy regulariser, and the
// sigma-MoE expert dropout of the selection scores. Plain double-precision
// twins are in ReferenceAuxiliaryLosses.h.
//
// Conventions as in TransformerGradients.h: row-major f32 arrays, `dLoss` is
// the gradient arriving at the scalar loss, gradient outputs are
// overwritten, and results are bitwise independent of the thread count.
// Token and expert counts are at least 1.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_AUXILIARYLOSSES_H
#define MIXER_RUNTIME_CPU_AUXILIARYLOSSES_H

#include <cstdint>
#include <vector>

namespace mixer::cpu {

/// Gradient of routerZLoss (the mean over tokens of lse_t^2, lse_t =
/// logsumexp_e logits[t,e]) for logits [numTokens, experts]:
/// dLogits[t,e] = dLoss * 2 * lse_t * softmax(logits[t])_e / numTokens.
/// dLogits may alias logits.
void routerZLossGrad(const float *logits, int64_t numTokens, int64_t experts,
                     float dLoss, float *dLogits);

/// Gradient of loadBalancingLoss with respect to probs
/// [groups*tokensPerGroup, experts]. The top-k mask is a constant (the
/// same choices, ties to the lower expert index), so the gradient flows
/// through P only: with count[g,e] the number of tokens of group g that
/// choose e, dProbs[g,t,e] = dLoss * experts * count[g,e] /
/// (groups * tokensPerGroup^2). Throws KernelError when k > experts.
void loadBalancingLossGrad(const float *probs, int64_t groups,
                           int64_t tokensPerGroup, int64_t experts, int64_t k,
                           float dLoss, float *dProbs);

/// The log-domain batch mean of the token softmaxes of logits [numTokens,
/// experts]: lp[e] = log(mean_t softmax(logits[t])_e), computed as
/// max_t ls[t,e] + log(sum_t exp(ls[t,e] - max)) - log(numTokens) over the
/// log-softmax ls.
std::vector<double> logMeanSoftmax(const float *logits, int64_t numTokens,
                                   int64_t experts);

/// sum_e exp(lp_e) lp_e of a log-domain mean lp (logMeanSoftmax).
float negativeEntropy(const std::vector<double> &logMean);

/// sigma-MoE entropy regulariser of the raw selection logits [numTokens,
/// experts]: the negative entropy sum_e pbar_e log pbar_e of the batch mean
/// pbar = mean_t softmax(logits[t]). Computed in the log domain (log-softmax
/// per token, then log-mean-exp over the tokens), so an expert whose mean
/// probability underflows adds 0, not NaN.
float entropyRegularizer(const float *logits, int64_t numTokens,
                         int64_t experts);

/// Gradient of entropyRegularizer: with p = softmax(logits[t]) and
/// lp_e = log pbar_e, dLogits[t,e] = dLoss / numTokens * p_e *
/// (lp_e - sum_j p_j lp_j). dLogits may alias logits.
void entropyRegularizerGrad(const float *logits, int64_t numTokens,
                            int64_t experts, float dLoss, float *dLogits);
/// The same gradient given the log mean lp of the batch the regulariser
/// spans (which may hold more tokens than these) and scale = dLoss / its
/// token count.
void entropyRegularizerGrad(const float *logits, int64_t numTokens,
                            int64_t experts, const std::vector<double> &lp,
                            double scale, float *dLogits);

/// sigma-MoE expert dropout over n selection scores (the row-major
/// [tokens, experts] scores, element i = t*experts + e): y[i] = fill when
/// u_i < rate, else x[i], with u_i = CounterUniforms(seed, stream, step,
/// first).at(i) (CounterRandom.h), the uniforms of random_scale. The forward
/// fills -inf before the top-k; the gradient is this kernel with the same
/// (seed, stream, step, first, rate) and fill 0 applied to dy. y may alias x.
void expertDropout(const float *x, float *y, int64_t n, int64_t seed,
                   int64_t stream, int64_t step, double rate, float fill,
                   uint64_t first = 0);

} // namespace mixer::cpu

#endif // MIXER_RUNTIME_CPU_AUXILIARYLOSSES_H
