//===- MoeGrouping.h - Routing groups and expert capacity -------*- C++ -*-===//
//
// How a capacity-routed MoE layer splits its tokens into routing groups and
// how many tokens each expert may take per group (docs/dsl.md, `moe`). The
// numbers depend on the batch, so the compiler evaluates them once the batch
// is known.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_FRONTEND_MOEGROUPING_H
#define MIXER_FRONTEND_MOEGROUPING_H

#include "frontend/ModelConfig.h"
#include "runtime/support/Status.h"

#include <cstdint>

namespace mixer {

/// Routing groups of one MoE layer invocation.
struct MoeGrouping {
  int64_t groups = 0;         ///< G
  int64_t tokensPerGroup = 0; ///< T = N / G
  int64_t capacity = 0;       ///< C: token slots per expert and group
};

/// Rounds half to even, as Python's round() does.
double roundHalfEven(double x);

/// Groups and capacity for `numTokens` (N = batch * S, N >= 1) tokens:
/// G = smallest divisor of N that is >= max(N / max_group_size, 1) (integer
/// division), T = N / G, C = max(round_half_even(cf * T / E),
/// min_expert_capacity) with cf the train or eval capacity factor. The
/// dropless sigmoid_topk routing has one group of N tokens and capacity 0.
MoeGrouping computeMoeGrouping(const MoeConfig &moe, int64_t numTokens,
                               bool training);

/// Fails when `numTokens` < 1 or when the capacity exceeds the tokens per
/// group (an expert would have to take more tokens than its group holds).
Status checkMoeGrouping(const MoeConfig &moe, int64_t numTokens, bool training);

} // namespace mixer

#endif // MIXER_FRONTEND_MOEGROUPING_H
