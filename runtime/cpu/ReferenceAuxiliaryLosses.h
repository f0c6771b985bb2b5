//===- ReferenceAuxiliaryLosses.h - Plain auxiliary-loss twins --*- C++ -*-===//
//
// Single-threaded, obviously correct implementations of every kernel in
// AuxiliaryLosses.h, written from the loss definitions by the chain rule
// rather than from the optimized code: explicit masks, means and Jacobian
// products, arithmetic in double, rounded to float on output. Signatures
// match AuxiliaryLosses.h.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_RUNTIME_CPU_REFERENCEAUXILIARYLOSSES_H
#define MIXER_RUNTIME_CPU_REFERENCEAUXILIARYLOSSES_H

#include <cstdint>

namespace mixer::cpu::reference {

/// See mixer::cpu::routerZLossGrad.
void routerZLossGrad(const float *logits, int64_t numTokens, int64_t experts,
                     float dLoss, float *dLogits);

/// See mixer::cpu::loadBalancingLossGrad: the one-hot top-k mask, f and the
/// derivative of mean_{g,e}(f * P) * experts^2 written out.
void loadBalancingLossGrad(const float *probs, int64_t groups,
                           int64_t tokensPerGroup, int64_t experts, int64_t k,
                           float dLoss, float *dProbs);

/// See mixer::cpu::entropyRegularizer: log_softmax per token, logsumexp over
/// the tokens minus log(numTokens), then sum_e exp(lp_e) * lp_e.
float entropyRegularizer(const float *logits, int64_t numTokens,
                         int64_t experts);

/// See mixer::cpu::entropyRegularizerGrad: dR/dpbar = lp + 1, through the
/// mean and the full softmax Jacobian of each token.
void entropyRegularizerGrad(const float *logits, int64_t numTokens,
                            int64_t experts, float dLoss, float *dLogits);

/// See mixer::cpu::expertDropout: one CounterUniforms draw per element.
void expertDropout(const float *x, float *y, int64_t n, int64_t seed,
                   int64_t stream, int64_t step, double rate, float fill);

} // namespace mixer::cpu::reference

#endif // MIXER_RUNTIME_CPU_REFERENCEAUXILIARYLOSSES_H
