//===- MoeGrouping.cpp - Routing groups and expert capacity ---------------===//

#include "frontend/MoeGrouping.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <sstream>

namespace mixer {

/// Largest capacity computed: 2^53, below which doubles hold every integer.
static constexpr double kMaxCapacity = 9007199254740992.0;

double roundHalfEven(double x) {
  double lower = std::floor(x);
  double diff = x - lower;
  if (diff > 0.5)
    return lower + 1.0;
  if (diff < 0.5)
    return lower;
  return std::fmod(lower, 2.0) == 0.0 ? lower : lower + 1.0;
}

MoeGrouping computeMoeGrouping(const MoeConfig &moe, int64_t numTokens,
                               bool training) {
  assert(numTokens >= 1 && "MoE grouping of an empty batch");
  if (moe.routing == RoutingKind::SigmoidTopK)
    return MoeGrouping{1, numTokens, 0};
  int64_t groups = std::max<int64_t>(numTokens / moe.maxGroupSize, 1);
  while (numTokens % groups != 0)
    ++groups;
  int64_t tokensPerGroup = numTokens / groups;
  double factor = training ? moe.trainCapacityFactor : moe.evalCapacityFactor;
  // Evaluated in double in the reference's order: (cf * T) / E.
  double ideal = factor * static_cast<double>(tokensPerGroup) /
                 static_cast<double>(moe.numExperts);
  // Absurd factors stay convertible; such capacities fail the check anyway.
  ideal = std::min(ideal, kMaxCapacity);
  int64_t capacity = std::max(static_cast<int64_t>(roundHalfEven(ideal)),
                              moe.minExpertCapacity);
  return MoeGrouping{groups, tokensPerGroup, capacity};
}

Status checkMoeGrouping(const MoeConfig &moe, int64_t numTokens,
                        bool training) {
  if (numTokens < 1)
    return Status::error("moe layer needs at least one token, got " +
                         std::to_string(numTokens));
  MoeGrouping g = computeMoeGrouping(moe, numTokens, training);
  if (g.capacity <= g.tokensPerGroup)
    return Status::success();
  std::ostringstream os;
  os << "expert capacity " << g.capacity << " exceeds the " << g.tokensPerGroup
     << " tokens per group (" << numTokens << " tokens in " << g.groups
     << " group(s), " << moe.numExperts << " experts, "
     << (training ? "train" : "eval") << "_capacity_factor "
     << (training ? moe.trainCapacityFactor : moe.evalCapacityFactor)
     << ", min_expert_capacity " << moe.minExpertCapacity
     << "); lower min_expert_capacity or the capacity factor, or use a "
        "larger batch";
  return Status::error(os.str());
}

} // namespace mixer
