//===- KernelTableMoe.cpp - Mixture-of-experts steps on the CPU -----------===//
//
// The factories of the CPU kernel table for the Moe family of
// Kernels.def: routing, dispatch, experts, combine, the router losses and their
// gradients.
//
//===----------------------------------------------------------------------===//

#include "runtime/cpu/KernelTableFamilies.h"

#include "runtime/cpu/AuxiliaryLosses.h"
#include "runtime/cpu/Kernels.h"
#include "runtime/cpu/MixingMoeGradients.h"
#include "runtime/cpu/TransformerGradients.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mixer::cpu {

namespace {

Expected<StepFunction> prepareRouteExpertsChoose(StepContext &c) {
  int64_t groups, tokensPerGroup, capacity;
  if (!checkRouteExpertsChoose(c, groups, tokensPerGroup, capacity))
    return c.takeError();
  int64_t experts = c.in(0).dim(1);
  return StepFunction([=, p = c.in(0).slot, t = c.out(0).slot,
                       g = c.out(1).slot, o = c.out(2).slot](ValuePointers v) {
    cpu::routeExpertsChoose(f32(v[p]), i32(v[t]), f32(v[g]), i32(v[o]), groups,
                            tokensPerGroup, experts, capacity);
  });
}

Expected<StepFunction> prepareRouteTokensChoose(StepContext &c) {
  int64_t groups, tokensPerGroup, capacity, k;
  bool prioritized;
  if (!checkRouteTokensChoose(c, groups, tokensPerGroup, capacity, k,
                              prioritized))
    return c.takeError();
  int64_t experts = c.in(0).dim(1);
  return StepFunction([=, p = c.in(0).slot, t = c.out(0).slot,
                       g = c.out(1).slot, o = c.out(2).slot](ValuePointers v) {
    cpu::routeTokensChoose(f32(v[p]), i32(v[t]), f32(v[g]), i32(v[o]), groups,
                           tokensPerGroup, experts, k, capacity, prioritized);
  });
}

Expected<StepFunction> prepareRouteSigmoidTopK(StepContext &c) {
  const Arg &logits = c.in(0);
  int64_t k;
  if (!checkRouteSigmoidTopK(c, k))
    return c.takeError();
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  return StepFunction([=, p = logits.slot, t = c.out(0).slot, g = c.out(1).slot,
                       o = c.out(2).slot](ValuePointers v) {
    cpu::routeSigmoidTopK(f32(v[p]), i32(v[t]), f32(v[g]), i32(v[o]), tokens,
                          experts, k);
  });
}

Expected<StepFunction> prepareRouterLogitsBf16(StepContext &c) {
  const Arg &products = c.in(0), &bias = c.in(1), &logits = c.out(0);
  if (!checkRouterLogitsBf16(c))
    return c.takeError();
  int64_t rows = products.dim(0), cols = products.dim(1);
  return StepFunction(
      [=, p = products.slot, b = bias.slot, o = logits.slot](ValuePointers v) {
        cpu::routerLogitsBf16(f32(v[p]), f32(v[b]), f32(v[o]), rows, cols);
      });
}

Expected<StepFunction> prepareDispatch(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &y = c.out(0);
  if (!c.rank(x, DType::F32, 2) || !c.rank(tokens, DType::I32, 1))
    return c.takeError();
  int64_t slots = tokens.dim(0), numTokens = x.dim(0), d = x.dim(1);
  if (!c.shape(y, DType::F32, {slots, d}))
    return c.takeError();
  return StepFunction(
      [=, a = x.slot, t = tokens.slot, o = y.slot](ValuePointers v) {
        cpu::dispatch(f32(v[a]), i32(v[t]), f32(v[o]), slots, numTokens, d);
      });
}

/// Refuses the gathered form of experts and experts_grad (operand 0 the
/// token rows), which only the CUDA plans use.
bool checkNotGathered(StepContext &c) {
  return c.check(!c.boolAttr("gather"),
                 "attribute 'gather' (the dispatch fused into the "
                 "experts, as cuda plans have it) has no CPU "
                 "implementation");
}

/// An experts step with bf16 products: the kernel and its packed weights.
struct ExpertsBf16Step {
  ExpertsBf16 kernel;
  AlignedBytes packed;
};

Expected<StepFunction> prepareExperts(StepContext &c) {
  const Arg &xd = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5), &b2 = c.in(6), &y = c.out(0);
  Activation act = c.activation("activation");
  if (!checkNotGathered(c) || !c.rank(xd, DType::F32, 2) ||
      !c.rank(offsets, DType::I32, 1) || !c.rank(w1, DType::F32, 3))
    return c.takeError();
  int64_t slots = xd.dim(0), d = xd.dim(1), experts = w1.dim(0), f = w1.dim(2);
  if (!c.shape(tokens, DType::I32, {slots}) ||
      !c.shape(offsets, DType::I32, {experts + 1}) ||
      !c.shape(w1, DType::F32, {experts, d, f}) ||
      !c.shape(b1, DType::F32, {experts, f}) ||
      !c.shape(w2, DType::F32, {experts, f, d}) ||
      !c.shape(b2, DType::F32, {experts, d}) ||
      !c.shape(y, DType::F32, {slots, d}))
    return c.takeError();
  if (c.boolAttr("bf16")) {
    ExpertsBf16 kernel(experts, slots, d, f, b1.value != nullptr,
                       b2.value != nullptr, act);
    int64_t bytes = kernel.packedBytes();
    auto step = std::make_shared<ExpertsBf16Step>(
        ExpertsBf16Step{std::move(kernel), AlignedBytes(bytes)});
    return StepFunction(
        [=, a = xd.slot, t = tokens.slot, o = offsets.slot, c1 = b1.slot,
         c2 = b2.slot, r = y.slot](ValuePointers v) {
          step->kernel.run(f32(v[a]), i32(v[t]), i32(v[o]), step->packed.get(),
                           f32(v[c1]), f32(v[c2]), f32(v[r]));
        },
        [=, k1 = w1.slot, k2 = w2.slot](ValuePointers v) {
          step->kernel.pack(f32(v[k1]), f32(v[k2]), step->packed.get());
        });
  }
  return StepFunction([=, a = xd.slot, t = tokens.slot, o = offsets.slot,
                       k1 = w1.slot, c1 = b1.slot, k2 = w2.slot, c2 = b2.slot,
                       r = y.slot](ValuePointers v) {
    cpu::experts(f32(v[a]), i32(v[t]), i32(v[o]), f32(v[k1]), f32(v[c1]),
                 f32(v[k2]), f32(v[c2]), f32(v[r]), experts, slots, d, f, act);
  });
}

Expected<StepFunction> prepareCombine(StepContext &c) {
  const Arg &yd = c.in(0), &tokens = c.in(1), &gates = c.in(2), &y = c.out(0);
  if (!checkCombine(c, yd, tokens, &gates, y, DType::F32))
    return c.takeError();
  int64_t slots = yd.dim(0), d = yd.dim(1), numTokens = y.dim(0);
  return StepFunction([=, a = yd.slot, t = tokens.slot, g = gates.slot,
                       o = y.slot](ValuePointers v) {
    cpu::combine(f32(v[a]), i32(v[t]), f32(v[g]), f32(v[o]), slots, numTokens,
                 d);
  });
}

/// The loss of a router loss kernel `loss(scores, tokens, experts)`.
template <float (*Loss)(const float *, int64_t, int64_t)>
Expected<StepFunction> prepareRouterLoss(StepContext &c) {
  const Arg &scores = c.in(0), &loss = c.out(0);
  if (!checkRouterScores(c, scores) || !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t tokens = scores.dim(0), experts = scores.dim(1);
  return StepFunction([=, z = scores.slot, o = loss.slot](ValuePointers v) {
    *f32(v[o]) = Loss(f32(v[z]), tokens, experts);
  });
}

/// The gradient of a router loss kernel `grad(scores, tokens, experts,
/// dloss, dscores)`.
template <void (*Grad)(const float *, int64_t, int64_t, float, float *)>
Expected<StepFunction> prepareRouterLossGrad(StepContext &c) {
  const Arg &scores = c.in(0), &dloss = c.in(1), &dscores = c.out(0);
  if (!checkRouterScores(c, scores, &dscores) ||
      !c.shape(dloss, DType::F32, {}))
    return c.takeError();
  int64_t tokens = scores.dim(0), experts = scores.dim(1);
  return StepFunction(
      [=, z = scores.slot, s = dloss.slot, o = dscores.slot](ValuePointers v) {
        Grad(f32(v[z]), tokens, experts, *f32(v[s]), f32(v[o]));
      });
}

/// The communicator over whose ranks' tokens an entropy step's batch mean
/// runs (its `group`), or null for this rank's tokens alone. False (the step
/// failed) when the executor lacks the group.
bool entropyGroup(StepContext &c, const Groups &groups,
                  comm::Communicator *&group) {
  group = nullptr;
  return !c.optionalStringAttr("group") || (group = groupOf(c, groups));
}

/// The log mean of the whole batch from the ranks' log means of equal shares
/// of its tokens: lp_e = log(mean_r exp(lp[r]_e)), over every rank's values in
/// rank order, so every rank computes the same bits.
std::vector<double> logMeanOverRanks(comm::Communicator &group,
                                     const std::vector<double> &local,
                                     const std::string &label) {
  size_t experts = local.size(), ranks = group.size();
  std::vector<double> all(experts * ranks);
  throwIfFailed(group.allGather(local.data(), all.data(),
                                experts * sizeof(double), label));
  std::vector<double> lp(experts);
  for (size_t e = 0; e < experts; ++e) {
    double maximum = -std::numeric_limits<double>::infinity();
    for (size_t r = 0; r < ranks; ++r)
      maximum = std::max(maximum, all[r * experts + e]);
    double sum = 0.0;
    for (size_t r = 0; r < ranks; ++r)
      sum += std::exp(all[r * experts + e] - maximum);
    lp[e] =
        std::isinf(maximum) ? maximum : maximum + std::log(sum / double(ranks));
  }
  return lp;
}

Expected<StepFunction> prepareEntropyRegularizer(StepContext &c,
                                                 const Groups &groups) {
  const Arg &scores = c.in(0), &loss = c.out(0);
  comm::Communicator *group;
  if (!checkRouterScores(c, scores) || !c.shape(loss, DType::F32, {}) ||
      !entropyGroup(c, groups, group))
    return c.takeError();
  int64_t tokens = scores.dim(0), experts = scores.dim(1);
  std::string label = c.label();
  return StepFunction([=, z = scores.slot, o = loss.slot](ValuePointers v) {
    std::vector<double> lp = cpu::logMeanSoftmax(f32(v[z]), tokens, experts);
    if (group)
      lp = logMeanOverRanks(*group, lp, label);
    *f32(v[o]) = cpu::negativeEntropy(lp);
  });
}

Expected<StepFunction> prepareEntropyRegularizerGrad(StepContext &c,
                                                     const Groups &groups) {
  const Arg &scores = c.in(0), &dloss = c.in(1), &dscores = c.out(0);
  comm::Communicator *group;
  if (!checkRouterScores(c, scores, &dscores) ||
      !c.shape(dloss, DType::F32, {}) || !entropyGroup(c, groups, group))
    return c.takeError();
  int64_t tokens = scores.dim(0), experts = scores.dim(1);
  std::string label = c.label();
  return StepFunction([=, z = scores.slot, s = dloss.slot,
                       o = dscores.slot](ValuePointers v) {
    std::vector<double> lp = cpu::logMeanSoftmax(f32(v[z]), tokens, experts);
    float dLoss = *f32(v[s]);
    int64_t batchTokens = tokens;
    if (group) {
      // Every rank returned the one regulariser: its gradient is the sum
      // of the ranks' loss gradients.
      lp = logMeanOverRanks(*group, lp, label);
      throwIfFailed(group->allReduceSum(&dLoss, &dLoss, 1, DType::F32, label));
      batchTokens *= group->size();
    }
    cpu::entropyRegularizerGrad(f32(v[z]), tokens, experts, lp,
                                double(dLoss) / double(batchTokens), f32(v[o]));
  });
}

Expected<StepFunction> prepareLoadBalancingLoss(StepContext &c) {
  const Arg &probs = c.in(0), &loss = c.out(0);
  int64_t groups, k;
  if (!checkRouterScores(c, probs) ||
      !checkLoadBalancing(c, probs, groups, k) ||
      !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t perGroup = probs.dim(0) / groups, experts = probs.dim(1);
  return StepFunction([=, p = probs.slot, o = loss.slot](ValuePointers v) {
    *f32(v[o]) =
        cpu::loadBalancingLoss(f32(v[p]), groups, perGroup, experts, k);
  });
}

Expected<StepFunction> prepareLoadBalancingLossGrad(StepContext &c) {
  const Arg &probs = c.in(0), &dloss = c.in(1), &dprobs = c.out(0);
  int64_t groups, k;
  if (!checkRouterScores(c, probs, &dprobs) ||
      !checkLoadBalancing(c, probs, groups, k) ||
      !c.shape(dloss, DType::F32, {}))
    return c.takeError();
  int64_t perGroup = probs.dim(0) / groups, experts = probs.dim(1);
  return StepFunction(
      [=, p = probs.slot, s = dloss.slot, o = dprobs.slot](ValuePointers v) {
        cpu::loadBalancingLossGrad(f32(v[p]), groups, perGroup, experts, k,
                                   *f32(v[s]), f32(v[o]));
      });
}

Expected<StepFunction> prepareDispatchGrad(StepContext &c) {
  const Arg &dxd = c.in(0), &tokens = c.in(1), &dx = c.out(0);
  if (!checkCombine(c, dxd, tokens, nullptr, dx, DType::F32))
    return c.takeError();
  int64_t slots = dxd.dim(0), d = dxd.dim(1), numTokens = dx.dim(0);
  return StepFunction([=, g = dxd.slot, t = tokens.slot,
                       o = dx.slot](ValuePointers v) {
    cpu::dispatchBackward(f32(v[g]), i32(v[t]), f32(v[o]), slots, numTokens, d);
  });
}

Expected<StepFunction> prepareCombineGrad(StepContext &c) {
  const Arg &yd = c.in(0), &tokens = c.in(1), &gates = c.in(2), &dout = c.in(3),
            &dyd = c.out(0), &dgates = c.out(1);
  if (!checkCombine(c, yd, tokens, &gates, dout, DType::F32) ||
      !c.shape(dyd, DType::F32, yd.value->shape) ||
      !c.shape(dgates, DType::F32, {yd.dim(0)}))
    return c.takeError();
  int64_t slots = yd.dim(0), d = yd.dim(1), numTokens = dout.dim(0);
  return StepFunction([=, a = yd.slot, t = tokens.slot, g = gates.slot,
                       go = dout.slot, o = dyd.slot,
                       og = dgates.slot](ValuePointers v) {
    cpu::combineBackward(f32(v[a]), i32(v[t]), f32(v[g]), f32(v[go]), f32(v[o]),
                         f32(v[og]), slots, numTokens, d);
  });
}

Expected<StepFunction> prepareExpertsGrad(StepContext &c) {
  const Arg &xd = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5), &dyd = c.in(6);
  Activation act = c.activation("activation");
  if (!checkNotGathered(c) || !c.rank(xd, DType::F32, 2) ||
      !c.rank(w1, DType::F32, 3))
    return c.takeError();
  int64_t slots = xd.dim(0), d = xd.dim(1), experts = w1.dim(0), f = w1.dim(2);
  if (!c.shape(tokens, DType::I32, {slots}) ||
      !c.shape(offsets, DType::I32, {experts + 1}) ||
      !c.shape(w1, DType::F32, {experts, d, f}) ||
      !c.shape(b1, DType::F32, {experts, f}) ||
      !c.shape(w2, DType::F32, {experts, f, d}) ||
      !c.shape(dyd, DType::F32, {slots, d}) ||
      !c.shape(c.out(0), DType::F32, {slots, d}) ||
      !c.shape(c.out(1), DType::F32, {experts, d, f}) ||
      !c.shape(c.out(2), DType::F32, {experts, f}) ||
      !c.shape(c.out(3), DType::F32, {experts, f, d}) ||
      !c.shape(c.out(4), DType::F32, {experts, d}))
    return c.takeError();
  // The plan keeps no pre-activations: the backward recomputes them per row
  // tile. Scratch: the backward's H and dP, 2 * slots * f.
  int64_t scratch = c.scratch(2 * slots * f);
  return StepFunction([=, a = xd.slot, t = tokens.slot, o = offsets.slot,
                       k1 = w1.slot, c1 = b1.slot, k2 = w2.slot, g = dyd.slot,
                       r0 = c.out(0).slot, r1 = c.out(1).slot,
                       r2 = c.out(2).slot, r3 = c.out(3).slot,
                       r4 = c.out(4).slot](ValuePointers v) {
    cpu::expertsBackwardRecompute(
        f32(v[a]), i32(v[t]), i32(v[o]), f32(v[k1]), f32(v[c1]), f32(v[k2]),
        f32(v[g]), f32(v[r0]), f32(v[r1]), f32(v[r2]), f32(v[r3]), f32(v[r4]),
        f32(v[scratch]), experts, slots, d, f, act, /*accumulate=*/false);
  });
}

Expected<StepFunction> prepareScatterGateGrad(StepContext &c) {
  const Arg &tokens = c.in(0), &offsets = c.in(1), &dgates = c.in(2),
            &dscores = c.out(0);
  if (!checkGateGrad(c, tokens, offsets, dgates, dscores))
    return c.takeError();
  int64_t numTokens = dscores.dim(0), experts = dscores.dim(1);
  return StepFunction([=, t = tokens.slot, o = offsets.slot, g = dgates.slot,
                       r = dscores.slot](ValuePointers v) {
    cpu::routerGateBackward(Routing::ExpertsChoose, nullptr, i32(v[t]),
                            i32(v[o]), f32(v[g]), f32(v[r]), numTokens,
                            experts);
  });
}

Expected<StepFunction> prepareRouteGrad(StepContext &c) {
  const Arg &logits = c.in(0), &tokens = c.in(1), &offsets = c.in(2),
            &dgates = c.in(3), &dlogits = c.out(0);
  Routing routing = readRouting(c);
  if (!checkGateGrad(c, tokens, offsets, dgates, dlogits) ||
      !c.shape(logits, DType::F32, dlogits.value->shape))
    return c.takeError();
  int64_t numTokens = dlogits.dim(0), experts = dlogits.dim(1);
  bool bf16 = c.boolAttr("router_bf16");
  // The capacity routings gate with softmax probabilities: their gradient
  // goes back through a softmax recomputed into the scratch.
  int64_t scratch =
      routing == Routing::SigmoidTopK ? 0 : c.scratch(numTokens * experts);
  return StepFunction([=, z = logits.slot, t = tokens.slot, o = offsets.slot,
                       g = dgates.slot, r = dlogits.slot](ValuePointers v) {
    float *out = f32(v[r]);
    cpu::routerGateBackward(routing, f32(v[z]), i32(v[t]), i32(v[o]), f32(v[g]),
                            out, numTokens, experts);
    if (routing == Routing::SigmoidTopK)
      return;
    float *probs = f32(v[scratch]);
    (bf16 ? cpu::routerSoftmaxBf16 : cpu::softmax)(f32(v[z]), probs, numTokens,
                                                   experts);
    cpu::softmaxBackward(probs, out, out, numTokens, experts);
  });
}

} // namespace

std::vector<KernelEntry> moeKernels() {
  return {
      {Kernel::RouteExpertsChoose, prepareRouteExpertsChoose},
      {Kernel::RouteTokensChoose, prepareRouteTokensChoose},
      {Kernel::RouteSigmoidTopK, prepareRouteSigmoidTopK},
      {Kernel::RouterLogitsBf16, prepareRouterLogitsBf16},
      {Kernel::Dispatch, prepareDispatch},
      {Kernel::Experts, prepareExperts},
      {Kernel::Combine, prepareCombine},
      {Kernel::RouterZLoss, prepareRouterLoss<cpu::routerZLoss>},
      {Kernel::LoadBalancingLoss, prepareLoadBalancingLoss},
      {Kernel::EntropyRegularizer, nullptr, prepareEntropyRegularizer},
      {Kernel::DispatchGrad, prepareDispatchGrad},
      {Kernel::CombineGrad, prepareCombineGrad},
      {Kernel::ExpertsGrad, prepareExpertsGrad},
      {Kernel::ScatterGateGrad, prepareScatterGateGrad},
      {Kernel::RouteGrad, prepareRouteGrad},
      {Kernel::RouterZLossGrad, prepareRouterLossGrad<cpu::routerZLossGrad>},
      {Kernel::LoadBalancingLossGrad, prepareLoadBalancingLossGrad},
      {Kernel::EntropyRegularizerGrad, nullptr, prepareEntropyRegularizerGrad},
  };
}

} // namespace mixer::cpu
