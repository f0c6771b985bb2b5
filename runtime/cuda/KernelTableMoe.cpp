//===- KernelTableMoe.cpp - Mixture-of-experts steps on CUDA --------------===//
//
// The factories of the CUDA kernel table for the Moe family of Kernels.def:
// routing, the experts (capacity and grouped), gathers, scatters and the router
// losses.
//
//===----------------------------------------------------------------------===//

#include "runtime/cuda/KernelTableFamilies.h"

#include "runtime/cuda/Gemm.h"

#include <string>
#include <type_traits>

namespace mixer::cuda {

namespace {

Expected<DeviceStep> prepareRouteExpertsChoose(StepContext &c) {
  int64_t groups, tokensPerGroup, capacity;
  if (!exec::checkRouteExpertsChoose(c, groups, tokensPerGroup, capacity))
    return c.takeError();
  int64_t experts = c.in(0).dim(1);
  return DeviceStep([=, p = c.in(0).slot, t = c.out(0).slot, g = c.out(1).slot,
                     o = c.out(2).slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    // The plan's probabilities: no softmax (no logits).
    return routeExpertsChoose(nullptr, as<float>(v[p]), as<int32_t>(v[t]),
                              as<float>(v[g]), as<int32_t>(v[o]), groups,
                              tokensPerGroup, experts, capacity, ctx.stream);
  });
}

Expected<DeviceStep> prepareRouteTokensChoose(StepContext &c) {
  int64_t groups, tokensPerGroup, capacity, k;
  bool prioritized;
  if (!exec::checkRouteTokensChoose(c, groups, tokensPerGroup, capacity, k,
                                    prioritized))
    return c.takeError();
  int64_t experts = c.in(0).dim(1);
  return DeviceStep([=, p = c.in(0).slot, t = c.out(0).slot, g = c.out(1).slot,
                     o = c.out(2).slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return routeTokensChoose(
        as<float>(v[p]), as<int32_t>(v[t]), as<float>(v[g]), as<int32_t>(v[o]),
        groups, tokensPerGroup, experts, k, capacity, prioritized, ctx.stream);
  });
}

Expected<DeviceStep> prepareRouteSigmoidTopK(StepContext &c) {
  const Arg &logits = c.in(0);
  int64_t k;
  if (!exec::checkRouteSigmoidTopK(c, k))
    return c.takeError();
  int64_t tokens = logits.dim(0), experts = logits.dim(1);
  return DeviceStep([=, p = logits.slot, t = c.out(0).slot, g = c.out(1).slot,
                     o = c.out(2).slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return routeSigmoidTopK(as<float>(v[p]), as<int32_t>(v[t]), as<float>(v[g]),
                            as<int32_t>(v[o]), tokens, experts, k, ctx.stream);
  });
}

Expected<DeviceStep> prepareRouterZLoss(StepContext &c) {
  const Arg &logits = c.in(0), &loss = c.out(0);
  if (!c.rank(logits, DType::F32, 2) || !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t numTokens = logits.dim(0), experts = logits.dim(1);
  // The squares of the row logsumexps, in double.
  int64_t scratch = c.scratch(2 * numTokens);
  return DeviceStep(
      [=, z = logits.slot, o = loss.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        return routerZLoss(as<float>(v[z]), as<float>(v[o]), numTokens, experts,
                           as<double>(v[scratch]), ctx.stream);
      });
}

Expected<DeviceStep> prepareLoadBalancingLoss(StepContext &c) {
  const Arg &probs = c.in(0), &loss = c.out(0);
  int64_t groups, k;
  if (!exec::checkRouterScores(c, c.in(0)) ||
      !exec::checkLoadBalancing(c, c.in(0), groups, k) ||
      !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t perGroup = probs.dim(0) / groups, experts = probs.dim(1);
  // The (group, expert) terms, in double.
  int64_t scratch = c.scratch(2 * groups * experts);
  return DeviceStep([=, p = probs.slot,
                     o = loss.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return loadBalancingLoss(as<float>(v[p]), as<float>(v[o]), groups, perGroup,
                             experts, k, as<double>(v[scratch]), ctx.stream);
  });
}

Expected<DeviceStep> prepareLoadBalancingLossGrad(StepContext &c) {
  const Arg &probs = c.in(0), &dloss = c.in(1), &dprobs = c.out(0);
  int64_t groups, k;
  if (!exec::checkRouterScores(c, c.in(0)) ||
      !exec::checkLoadBalancing(c, c.in(0), groups, k) ||
      !c.shape(dloss, DType::F32, {}) ||
      !c.shape(dprobs, DType::F32, probs.value->shape))
    return c.takeError();
  int64_t perGroup = probs.dim(0) / groups, experts = probs.dim(1);
  // The gradient row of every group.
  int64_t scratch = c.scratch(groups * experts);
  return DeviceStep([=, p = probs.slot, s = dloss.slot,
                     o = dprobs.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return loadBalancingLossGrad(as<float>(v[p]), as<float>(v[s]),
                                 as<float>(v[o]), groups, perGroup, experts, k,
                                 as<float>(v[scratch]), ctx.stream);
  });
}

Expected<DeviceStep> prepareRouterZLossGrad(StepContext &c) {
  const Arg &logits = c.in(0), &dloss = c.in(1), &dlogits = c.out(0);
  if (!c.rank(logits, DType::F32, 2) || !c.shape(dloss, DType::F32, {}) ||
      !c.shape(dlogits, DType::F32, logits.value->shape))
    return c.takeError();
  int64_t numTokens = logits.dim(0), experts = logits.dim(1);
  return DeviceStep([=, z = logits.slot, s = dloss.slot,
                     o = dlogits.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return routerZLossGrad(as<float>(v[z]), as<float>(v[s]), as<float>(v[o]),
                           numTokens, experts, ctx.stream);
  });
}

Expected<DeviceStep> prepareDispatch(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &y = c.out(0);
  DType dtype;
  if (!activationType(c, x, dtype) || !c.rank(x, dtype, 2) ||
      !c.rank(tokens, DType::I32, 1))
    return c.takeError();
  int64_t slots = tokens.dim(0), numTokens = x.dim(0), d = x.dim(1);
  if (!c.shape(y, dtype, {slots, d}))
    return c.takeError();
  bool bf16 = dtype == DType::BF16;
  return DeviceStep(
      [=, a = x.slot, t = tokens.slot, o = y.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        return byPrecision(bf16, [&](auto *tag) {
          using T = std::remove_pointer_t<decltype(tag)>;
          return dispatchRows(as<T>(v[a]), as<int32_t>(v[t]), as<T>(v[o]),
                              slots, numTokens, d, ctx.stream, ctx.idCheck(1));
        });
      });
}

/// combine (with gates) and dispatch_grad (without): the slot rows summed
/// into their tokens' rows.
Expected<DeviceStep> prepareCombineRows(StepContext &c, bool withGates) {
  const Arg &yd = c.in(0), &tokens = c.in(1), &y = c.out(0);
  DType dtype;
  if (!activationType(c, yd, dtype) ||
      !exec::checkCombine(c, yd, tokens, withGates ? &c.in(2) : nullptr, y,
                          dtype))
    return c.takeError();
  int64_t slots = yd.dim(0), d = yd.dim(1), numTokens = y.dim(0);
  int64_t scratch = c.scratch(numTokens + 1 + slots);
  int64_t gates = withGates ? c.in(2).slot : -1;
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = yd.slot, t = tokens.slot,
                     o = y.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return combineRows(as<T>(v[a]), as<int32_t>(v[t]),
                         gates < 0 ? nullptr : as<float>(v[gates]), as<T>(v[o]),
                         slots, numTokens, d, as<int32_t>(v[scratch]),
                         ctx.stream, ctx.idCheck(1));
    });
  });
}

Expected<DeviceStep> prepareCombine(StepContext &c) {
  return prepareCombineRows(c, /*withGates=*/true);
}

Expected<DeviceStep> prepareDispatchGrad(StepContext &c) {
  return prepareCombineRows(c, /*withGates=*/false);
}

Expected<DeviceStep> prepareCombineGrad(StepContext &c) {
  const Arg &yd = c.in(0), &tokens = c.in(1), &gates = c.in(2), &dout = c.in(3),
            &dyd = c.out(0), &dgates = c.out(1);
  DType dtype;
  if (!activationType(c, yd, dtype) ||
      !exec::checkCombine(c, yd, tokens, &gates, dout, dtype) ||
      !c.shape(dyd, dtype, yd.value->shape) ||
      !c.shape(dgates, DType::F32, {yd.dim(0)}))
    return c.takeError();
  int64_t slots = yd.dim(0), d = yd.dim(1), numTokens = dout.dim(0);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = yd.slot, t = tokens.slot, g = gates.slot,
                     go = dout.slot, o = dyd.slot,
                     og = dgates.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return combineBackward(as<T>(v[a]), as<int32_t>(v[t]), as<float>(v[g]),
                             as<T>(v[go]), as<T>(v[o]), as<float>(v[og]), slots,
                             numTokens, d, ctx.stream, ctx.idCheck(1));
    });
  });
}

/// Reads the optional attribute `gather` of `experts` or `experts_grad` and
/// checks their rows x (`dtype`) and tokens I32[slots]: x is the slot rows
/// [slots, D], or, with `gather`, the token rows [T, D] (any T >= 1) that
/// the tokens index, the dispatch fused into the experts.
bool checkExpertRows(StepContext &c, bool &gather, DType &dtype) {
  const Arg &x = c.in(0), &tokens = c.in(1);
  gather = c.boolAttr("gather");
  if (!activationType(c, x, dtype) || !c.rank(x, dtype, 2) ||
      !c.rank(tokens, DType::I32, 1))
    return false;
  if (gather)
    return c.check(x.dim(0) >= 1,
                   x.role + " is " + exec::describe(x.value->shape, dtype) +
                       " but gathering experts need at least one token row");
  return c.shape(x, dtype, {tokens.dim(0), x.dim(1)});
}

/// Reads the activation (none or gelu) and `gather` of `experts` or
/// `experts_grad` and checks x (see checkExpertRows), tokens I32[slots],
/// offsets I32[E + 1] and the fp32 weights w1 [E, D, F], b1 [E, F], w2 [E,
/// F, D] of a capacity routing (every expert owns slots / E consecutive
/// slots).
bool checkExperts(StepContext &c, bool &gelu, bool &gather, DType &dtype) {
  const Arg &x = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5);
  const std::string &activation = c.stringAttr("activation");
  if (!checkExpertRows(c, gather, dtype) || !c.rank(w1, DType::F32, 3))
    return false;
  int64_t slots = tokens.dim(0), d = x.dim(1), experts = w1.dim(0),
          f = w1.dim(2);
  gelu = activation == "gelu";
  return c.check(gelu || activation == "none",
                 "activation '" + activation +
                     "' has no cuBLASLt epilogue (only none and gelu)") &&
         c.shape(offsets, DType::I32, {experts + 1}) &&
         c.shape(w1, DType::F32, {experts, d, f}) &&
         c.shape(b1, DType::F32, {experts, f}) &&
         c.shape(w2, DType::F32, {experts, f, d}) &&
         c.check(experts > 0 && slots % experts == 0,
                 std::to_string(slots) + " slots do not split evenly over " +
                     std::to_string(experts) + " experts");
}

/// Floats of scratch holding `n` activation values, bf16 or fp32, aligned as
/// alignedFloats.
int64_t activationFloats(bool bf16, int64_t n) {
  return bf16 ? bf16Floats(n) : alignedFloats(n);
}

/// Consecutive blocks of a step's scratch, each sized by activationFloats:
/// taken in the order the step's reservation adds them up.
class ScratchBlocks {
public:
  explicit ScratchBlocks(void *scratch) : next(static_cast<float *>(scratch)) {}

  /// The next block, holding `n` values of T.
  template <typename T> T *take(int64_t n) {
    T *block = reinterpret_cast<T *>(next);
    next += activationFloats(std::is_same_v<T, Bf16>, n);
    return block;
  }

private:
  float *next;
};

/// The weights w1 [E, D, F] and w2 [E, F, D] of capacity experts as their
/// products read them.
template <typename T> struct ExpertWeights { const T *up, *down; };

/// The fp32 masters w1 and w2 (n values each) for products over T: the
/// masters themselves, or for bf16 activations the masters rounded to bf16
/// into the next two blocks of the scratch at every run.
template <typename T>
Expected<ExpertWeights<T>> expertWeights(void *w1, void *w2, int64_t n,
                                         ScratchBlocks &scratch,
                                         cudaStream_t stream) {
  if constexpr (std::is_same_v<T, float>) {
    return ExpertWeights<T>{as<float>(w1), as<float>(w2)};
  } else {
    Bf16 *up = scratch.take<Bf16>(n), *down = scratch.take<Bf16>(n);
    Status status = narrowToBf16(as<float>(w1), up, n, stream);
    if (!status || !(status = narrowToBf16(as<float>(w2), down, n, stream)))
      return status;
    return ExpertWeights<T>{up, down};
  }
}

/// Scratch floats of expertWeights.
int64_t expertWeightFloats(bool bf16, int64_t n) {
  return bf16 ? 2 * bf16Floats(n) : 0;
}

/// The first layer of every expert, rows slot rows each, as one strided
/// batch: out = xs w1[e] (+ b1[e]), then GELU when `epilogue` says so.
template <typename T>
GemmProblem<T> expertsUp(int64_t experts, int64_t rows, int64_t d, int64_t f,
                         const T *xs, const T *w1, const float *b1, T *out,
                         GemmEpilogue epilogue) {
  GemmProblem<T> up = packed(false, false, rows, f, d, xs, w1, out);
  up.batch = experts;
  up.strideA = rows * d, up.strideB = d * f, up.strideC = rows * f;
  up.epilogue = epilogue, up.bias = b1, up.strideBias = f;
  return up;
}

/// The slot rows xd [slots, d] of a capacity experts step: x itself, or with
/// `gather` its rows tokens[i] gathered by the dispatch kernel into
/// `gathered` (the tokens being the step's operand 1).
template <typename T>
Expected<const T *> slotRows(bool gather, const T *x, const int32_t *tokens,
                             T *gathered, int64_t slots, int64_t numTokens,
                             int64_t d, const LaunchContext &ctx) {
  if (!gather)
    return x;
  if (Status status = dispatchRows(x, tokens, gathered, slots, numTokens, d,
                                   ctx.stream, ctx.idCheck(1));
      !status)
    return status;
  return static_cast<const T *>(gathered);
}

/// The experts of a capacity routing (route_experts_choose or
/// route_tokens_choose: every expert owns the same number of consecutive
/// slots), one strided batch of products per layer over the slot rows
/// (gathered first when the step gathers). bf16 activations run on the
/// tensor cores with the weights rounded to bf16, the hidden layer in bf16.
/// The empty slots' rows are zeroed afterwards, as the CPU kernel leaves
/// them.
Expected<DeviceStep> prepareCapacityExperts(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &w1 = c.in(3), &b1 = c.in(4),
            &w2 = c.in(5), &b2 = c.in(6), &y = c.out(0);
  bool gelu, gather;
  DType dtype;
  if (!checkExperts(c, gelu, gather, dtype))
    return c.takeError();
  int64_t slots = tokens.dim(0), numTokens = x.dim(0), d = x.dim(1),
          experts = w1.dim(0), f = w1.dim(2);
  if (!c.shape(b2, DType::F32, {experts, d}) || !c.shape(y, dtype, {slots, d}))
    return c.takeError();
  int64_t rows = slots / experts;
  bool bf16 = dtype == DType::BF16;
  // (bf16) w1 and w2 rounded to bf16, the hidden layer, then (gather) the
  // gathered xd.
  int64_t scratch = c.scratch(expertWeightFloats(bf16, experts * d * f) +
                              activationFloats(bf16, slots * f) +
                              (gather ? activationFloats(bf16, slots * d) : 0));
  GemmEpilogue first = gelu       ? GemmEpilogue::Gelu
                       : b1.value ? GemmEpilogue::Bias
                                  : GemmEpilogue::None;
  GemmEpilogue second = b2.value ? GemmEpilogue::Bias : GemmEpilogue::None;
  return DeviceStep([=, a = x.slot, t = tokens.slot, k1 = w1.slot, c1 = b1.slot,
                     k2 = w2.slot, c2 = b2.slot,
                     o = y.slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) -> Status {
      using T = std::remove_pointer_t<decltype(tag)>;
      ScratchBlocks blocks(v[scratch]);
      Expected<ExpertWeights<T>> w =
          expertWeights<T>(v[k1], v[k2], experts * d * f, blocks, ctx.stream);
      if (!w)
        return w.takeStatus();
      T *hidden = blocks.take<T>(slots * f);
      const int32_t *slotTokens = as<int32_t>(v[t]);
      Expected<const T *> input =
          slotRows(gather, as<T>(v[a]), slotTokens,
                   gather ? blocks.take<T>(slots * d) : nullptr, slots,
                   numTokens, d, ctx);
      if (!input)
        return input.takeStatus();
      T *out = as<T>(v[o]);
      // Per expert e: rows [e * rows, (e + 1) * rows).
      GemmProblem<T> up = expertsUp(experts, rows, d, f, *input, w->up,
                                    as<float>(v[c1]), hidden, first);
      GemmProblem<T> down =
          packed(false, false, rows, d, f, hidden, w->down, out);
      down.batch = experts;
      down.strideA = rows * f, down.strideB = f * d, down.strideC = rows * d;
      down.epilogue = second, down.bias = as<float>(v[c2]), down.strideBias = d;
      for (const GemmProblem<T> &product : {up, down})
        if (Status status = ctx.gemm->gemm(product); !status)
          return status;
      return zeroEmptySlots(slotTokens, out, slots, d, ctx.stream);
    });
  });
}

/// The gradient of `experts` (cpu::expertsBackwardRecompute): the
/// pre-activations P = xd w1 + b1 are recomputed, then per expert e, with the
/// empty slots' rows of dyd zeroed in a copy (the CPU kernel skips them),
///   dP = (dyd w2^T) * act'(P),  dxd = dP w1^T,
///   dw1 = xd^T dP,  dw2 = act(P)^T dyd,
/// each a strided batch over the experts; db1 and db2 are the column sums of
/// dP and dyd over each expert's rows. A gathering step gathers xd first;
/// dxd stays one row per slot. bf16 activations run on the tensor cores as
/// in `experts`, with P, dP and act(P) in bf16 and the weight gradients
/// accumulated into the fp32 results.
Expected<DeviceStep> prepareCapacityExpertsGrad(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &w1 = c.in(3), &b1 = c.in(4),
            &w2 = c.in(5), &dyd = c.in(6);
  bool gelu, gather;
  DType dtype;
  if (!checkExperts(c, gelu, gather, dtype))
    return c.takeError();
  int64_t slots = tokens.dim(0), numTokens = x.dim(0), d = x.dim(1),
          experts = w1.dim(0), f = w1.dim(2);
  if (!c.shape(dyd, dtype, {slots, d}) ||
      !c.shape(c.out(0), dtype, {slots, d}) ||
      !c.shape(c.out(1), DType::F32, {experts, d, f}) ||
      !c.shape(c.out(2), DType::F32, {experts, f}) ||
      !c.shape(c.out(3), DType::F32, {experts, f, d}) ||
      !c.shape(c.out(4), DType::F32, {experts, d}))
    return c.takeError();
  int64_t rows = slots / experts;
  bool bf16 = dtype == DType::BF16;
  // (bf16) w1 and w2 rounded to bf16, P (then act(P)), dP, dyd with the
  // empty slots' rows zeroed, then (gather) the gathered xd.
  int64_t rowFloats = activationFloats(bf16, slots * d);
  int64_t scratch = c.scratch(expertWeightFloats(bf16, experts * d * f) +
                              2 * activationFloats(bf16, slots * f) +
                              rowFloats + (gather ? rowFloats : 0));
  GemmEpilogue first = b1.value ? GemmEpilogue::Bias : GemmEpilogue::None;
  return DeviceStep([=, a = x.slot, t = tokens.slot, k1 = w1.slot, c1 = b1.slot,
                     k2 = w2.slot, g = dyd.slot, r0 = c.out(0).slot,
                     r1 = c.out(1).slot, r2 = c.out(2).slot, r3 = c.out(3).slot,
                     r4 = c.out(4).slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) -> Status {
      using T = std::remove_pointer_t<decltype(tag)>;
      ScratchBlocks blocks(v[scratch]);
      Expected<ExpertWeights<T>> w =
          expertWeights<T>(v[k1], v[k2], experts * d * f, blocks, ctx.stream);
      if (!w)
        return w.takeStatus();
      T *preact = blocks.take<T>(slots * f),
        *dpreact = blocks.take<T>(slots * f), *dys = blocks.take<T>(slots * d);
      const int32_t *slotTokens = as<int32_t>(v[t]);
      Status status = copyOf(v[g], dys, slots * d * sizeof(T), ctx.stream);
      if (!status ||
          !(status = zeroEmptySlots(slotTokens, dys, slots, d, ctx.stream)))
        return status;
      Expected<const T *> input =
          slotRows(gather, as<T>(v[a]), slotTokens,
                   gather ? blocks.take<T>(slots * d) : nullptr, slots,
                   numTokens, d, ctx);
      if (!input)
        return input.takeStatus();
      GemmProblem<T> up = expertsUp(experts, rows, d, f, *input, w->up,
                                    as<float>(v[c1]), preact, first);
      // dH = dyd w2^T [rows, f].
      GemmProblem<T> dh =
          packed(false, true, rows, f, d, dys, w->down, dpreact);
      dh.batch = experts;
      dh.strideA = rows * d, dh.strideB = f * d, dh.strideC = rows * f;
      for (const GemmProblem<T> &product : {up, dh})
        if (!(status = ctx.gemm->gemm(product)))
          return status;
      // dP = dH * GELU'(P), then P becomes H = GELU(P), both in place.
      if (gelu &&
          (!(status = biasGeluBackward(preact, nullptr, dpreact, dpreact,
                                       nullptr, slots, f, false, ctx.stream)) ||
           !(status = biasGelu(preact, nullptr, preact, slots, f, ctx.stream))))
        return status;
      // dxd = dP w1^T [rows, d].
      GemmProblem<T> dx =
          packed(false, true, rows, d, f, dpreact, w->up, as<T>(v[r0]));
      dx.batch = experts;
      dx.strideA = rows * f, dx.strideB = d * f, dx.strideC = rows * d;
      if (!(status = ctx.gemm->gemm(dx)))
        return status;
      // dw1 = xd^T dP [d, f], dw2 = H^T dyd [f, d], accumulated in fp32.
      GemmProblem<T, float> dw1 =
          packed(true, false, d, f, rows, *input, dpreact, as<float>(v[r1]));
      dw1.batch = experts;
      dw1.strideA = rows * d, dw1.strideB = rows * f, dw1.strideC = d * f;
      GemmProblem<T, float> dw2 =
          packed(true, false, f, d, rows, preact, dys, as<float>(v[r3]));
      dw2.batch = experts;
      dw2.strideA = rows * f, dw2.strideB = rows * d, dw2.strideC = f * d;
      for (const GemmProblem<T, float> &product : {dw1, dw2})
        if (!(status = ctx.gemm->gemm(product)))
          return status;
      for (int64_t e = 0; e < experts; ++e)
        if (!(status =
                  columnSum(dpreact + e * rows * f, as<float>(v[r2]) + e * f,
                            rows, f, ctx.stream)) ||
            !(status = columnSum(dys + e * rows * d, as<float>(v[r4]) + e * d,
                                 rows, d, ctx.stream)))
          return status;
      return Status::success();
    });
  });
}

Expected<DeviceStep> prepareScatterGateGrad(StepContext &c) {
  const Arg &tokens = c.in(0), &offsets = c.in(1), &dgates = c.in(2),
            &dscores = c.out(0);
  if (!exec::checkGateGrad(c, tokens, offsets, dgates, dscores))
    return c.takeError();
  int64_t slots = tokens.dim(0), numTokens = dscores.dim(0),
          experts = dscores.dim(1);
  return DeviceStep([=, t = tokens.slot, o = offsets.slot, g = dgates.slot,
                     r = dscores.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return scatterGateGrad(as<int32_t>(v[t]), as<int32_t>(v[o]),
                           as<float>(v[g]), as<float>(v[r]), slots, numTokens,
                           experts, ctx.stream, nullptr, ctx.idCheck(0));
  });
}

Expected<DeviceStep> prepareEntropyRegularizer(StepContext &c) {
  const Arg &logits = c.in(0), &loss = c.out(0);
  if (!exec::checkRouterScores(c, logits) || !c.shape(loss, DType::F32, {}))
    return c.takeError();
  int64_t numTokens = logits.dim(0), experts = logits.dim(1);
  // The row logsumexps and the column log-means, in double.
  int64_t scratch = c.scratch(2 * (numTokens + experts));
  return DeviceStep(
      [=, z = logits.slot, o = loss.slot](const LaunchContext &ctx) {
        void *const *v = ctx.device;
        return entropyRegularizer(as<float>(v[z]), as<float>(v[o]), numTokens,
                                  experts, as<double>(v[scratch]), ctx.stream);
      });
}

Expected<DeviceStep> prepareEntropyRegularizerGrad(StepContext &c) {
  const Arg &logits = c.in(0), &dloss = c.in(1), &dlogits = c.out(0);
  if (!exec::checkRouterScores(c, logits) || !c.shape(dloss, DType::F32, {}) ||
      !c.shape(dlogits, DType::F32, logits.value->shape))
    return c.takeError();
  int64_t numTokens = logits.dim(0), experts = logits.dim(1);
  int64_t scratch = c.scratch(2 * (numTokens + experts));
  return DeviceStep([=, z = logits.slot, s = dloss.slot,
                     o = dlogits.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return entropyRegularizerGrad(as<float>(v[z]), as<float>(v[s]),
                                  as<float>(v[o]), numTokens, experts,
                                  as<double>(v[scratch]), ctx.stream);
  });
}

/// The gradient of the router logits from the gate gradients: scattered to
/// their (token, expert) entries, times sigmoid' for sigmoid top-k routing;
/// the capacity routings gate with softmax probabilities, so their gradient
/// then goes back through the softmax, recomputed into the scratch.
Expected<DeviceStep> prepareRouterLogitsBf16(StepContext &c) {
  const Arg &products = c.in(0), &bias = c.in(1), &logits = c.out(0);
  if (!exec::checkRouterLogitsBf16(c))
    return c.takeError();
  int64_t rows = products.dim(0), cols = products.dim(1);
  return DeviceStep([=, p = products.slot, b = bias.slot,
                     o = logits.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return routerLogitsBf16(as<float>(v[p]), as<float>(v[b]), as<float>(v[o]),
                            rows, cols, ctx.stream);
  });
}

Expected<DeviceStep> prepareRouteGrad(StepContext &c) {
  const Arg &logits = c.in(0), &tokens = c.in(1), &offsets = c.in(2),
            &dgates = c.in(3), &dlogits = c.out(0);
  Routing routing = exec::readRouting(c);
  if (!exec::checkGateGrad(c, tokens, offsets, dgates, dlogits) ||
      !c.shape(logits, DType::F32, dlogits.value->shape))
    return c.takeError();
  int64_t slots = tokens.dim(0), numTokens = dlogits.dim(0),
          experts = dlogits.dim(1);
  bool sigmoid = routing == Routing::SigmoidTopK;
  bool bf16 = c.boolAttr("router_bf16");
  int64_t scratch = sigmoid ? 0 : c.scratch(numTokens * experts);
  return DeviceStep([=, z = logits.slot, t = tokens.slot, o = offsets.slot,
                     g = dgates.slot,
                     r = dlogits.slot](const LaunchContext &ctx) -> Status {
    void *const *v = ctx.device;
    const float *scores = as<float>(v[z]);
    float *out = as<float>(v[r]);
    Status status =
        scatterGateGrad(as<int32_t>(v[t]), as<int32_t>(v[o]), as<float>(v[g]),
                        out, slots, numTokens, experts, ctx.stream,
                        sigmoid ? scores : nullptr, ctx.idCheck(1));
    if (!status || sigmoid)
      return status;
    float *probs = as<float>(v[scratch]);
    status =
        bf16 ? routerSoftmaxBf16(scores, probs, numTokens, experts, ctx.stream)
             : softmax(scores, probs, numTokens, experts, ctx.stream);
    if (!status)
      return status;
    return softmaxBackward(probs, out, out, numTokens, experts, ctx.stream);
  });
}

/// Reads the activation of grouped experts: none, relu or gelu.
bool expertActivation(StepContext &c, ExpertActivation &act) {
  Activation kind = c.activation("activation");
  act = kind == Activation::Relu   ? ExpertActivation::Relu
        : kind == Activation::Gelu ? ExpertActivation::Gelu
                                   : ExpertActivation::None;
  return c.check(kind == Activation::None || kind == Activation::Relu ||
                     kind == Activation::Gelu,
                 "activation '" + c.stringAttr("activation") +
                     "' has no grouped-experts epilogue (only none, relu and "
                     "gelu)");
}

/// Reads the activation and `gather` and checks x (see checkExpertRows),
/// tokens I32[slots], offsets I32[E + 1] and the fp32 weights w1 [E, D, F],
/// b1 [E, F], w2 [E, F, D] of `experts` or `experts_grad` on grouped
/// experts, which gather in their operand loads. The layout's device arrays
/// are set at launch.
bool checkGroupedExperts(StepContext &c, GroupedExperts &g, DType &dtype) {
  const Arg &x = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5);
  if (!expertActivation(c, g.activation) ||
      !checkExpertRows(c, g.gather, dtype) || !c.rank(w1, DType::F32, 3))
    return false;
  g.slots = tokens.dim(0), g.d = x.dim(1), g.experts = w1.dim(0),
  g.f = w1.dim(2), g.numTokens = x.dim(0);
  return c.shape(offsets, DType::I32, {g.experts + 1}) &&
         c.shape(w1, DType::F32, {g.experts, g.d, g.f}) &&
         c.shape(b1, DType::F32, {g.experts, g.f}) &&
         c.shape(w2, DType::F32, {g.experts, g.f, g.d}) &&
         c.check(g.d > 0 && g.f > 0,
                 w1.role + " is " +
                     exec::describe(w1.value->shape, DType::F32) +
                     " but the experts need at least "
                     "one input and one hidden unit");
}

/// The layout `g` over the device arrays of the step's tokens (operand 1)
/// and offsets.
GroupedExperts grouped(GroupedExperts g, const LaunchContext &ctx,
                       int64_t tokens, int64_t offsets) {
  g.tokens = as<int32_t>(ctx.device[tokens]);
  g.offsets = as<int32_t>(ctx.device[offsets]);
  g.check = ctx.idCheck(1);
  return g;
}

/// `experts` of the grouped layout, whose slot counts are known only on the
/// device (sigma-MoE's top-k routing): the grouped kernels, one launch per
/// layer, gathering the token rows in their loads when the step gathers.
Expected<DeviceStep> prepareGroupedExperts(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5), &b2 = c.in(6), &y = c.out(0);
  GroupedExperts g;
  DType dtype;
  if (!checkGroupedExperts(c, g, dtype) ||
      !c.shape(b2, DType::F32, {g.experts, g.d}) ||
      !c.shape(y, dtype, {g.slots, g.d}))
    return c.takeError();
  // The hidden layer.
  int64_t scratch = c.scratch(g.slots * g.f);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, t = tokens.slot, o = offsets.slot,
                     k1 = w1.slot, c1 = b1.slot, k2 = w2.slot, c2 = b2.slot,
                     r = y.slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return groupedExperts(as<T>(v[a]), as<float>(v[k1]), as<float>(v[c1]),
                            as<float>(v[k2]), as<float>(v[c2]), as<T>(v[r]),
                            as<float>(v[scratch]), grouped(g, ctx, t, o),
                            ctx.stream);
    });
  });
}

Expected<DeviceStep> prepareGroupedExpertsGrad(StepContext &c) {
  const Arg &x = c.in(0), &tokens = c.in(1), &offsets = c.in(2), &w1 = c.in(3),
            &b1 = c.in(4), &w2 = c.in(5), &dyd = c.in(6);
  GroupedExperts g;
  DType dtype;
  if (!checkGroupedExperts(c, g, dtype) ||
      !c.shape(dyd, dtype, {g.slots, g.d}) ||
      !c.shape(c.out(0), dtype, {g.slots, g.d}) ||
      !c.shape(c.out(1), DType::F32, {g.experts, g.d, g.f}) ||
      !c.shape(c.out(2), DType::F32, {g.experts, g.f}) ||
      !c.shape(c.out(3), DType::F32, {g.experts, g.f, g.d}) ||
      !c.shape(c.out(4), DType::F32, {g.experts, g.d}))
    return c.takeError();
  // The recomputed pre-activations P and their gradient dP.
  int64_t scratch = c.scratch(2 * g.slots * g.f);
  bool bf16 = dtype == DType::BF16;
  return DeviceStep([=, a = x.slot, t = tokens.slot, o = offsets.slot,
                     k1 = w1.slot, c1 = b1.slot, k2 = w2.slot, gy = dyd.slot,
                     r0 = c.out(0).slot, r1 = c.out(1).slot, r2 = c.out(2).slot,
                     r3 = c.out(3).slot,
                     r4 = c.out(4).slot](const LaunchContext &ctx) {
    void *const *v = ctx.device;
    return byPrecision(bf16, [&](auto *tag) {
      using T = std::remove_pointer_t<decltype(tag)>;
      return groupedExpertsBackward(
          as<T>(v[a]), as<float>(v[k1]), as<float>(v[c1]), as<float>(v[k2]),
          as<T>(v[gy]), as<T>(v[r0]), as<float>(v[r1]), as<float>(v[r2]),
          as<float>(v[r3]), as<float>(v[r4]), as<float>(v[scratch]),
          grouped(g, ctx, t, o), ctx.stream);
    });
  });
}

/// `experts` and `experts_grad` by the layout the plan gives them: strided
/// batches for a capacity routing, the grouped kernels for any offsets.
Expected<DeviceStep> prepareExperts(StepContext &c) {
  return exec::readExpertLayout(c) == ExpertLayout::Capacity
             ? prepareCapacityExperts(c)
             : prepareGroupedExperts(c);
}

Expected<DeviceStep> prepareExpertsGrad(StepContext &c) {
  return exec::readExpertLayout(c) == ExpertLayout::Capacity
             ? prepareCapacityExpertsGrad(c)
             : prepareGroupedExpertsGrad(c);
}

} // namespace

std::vector<TableEntry> moeKernels() {
  return {
      {Kernel::RouterZLoss, prepareRouterZLoss},
      {Kernel::RouterZLossGrad, prepareRouterZLossGrad},
      {Kernel::LoadBalancingLoss, prepareLoadBalancingLoss},
      {Kernel::LoadBalancingLossGrad, prepareLoadBalancingLossGrad},
      {Kernel::Dispatch, prepareDispatch},
      {Kernel::Experts, prepareExperts},
      {Kernel::ExpertsGrad, prepareExpertsGrad},
      {Kernel::Combine, prepareCombine},
      {Kernel::DispatchGrad, prepareDispatchGrad},
      {Kernel::CombineGrad, prepareCombineGrad},
      {Kernel::ScatterGateGrad, prepareScatterGateGrad},
      {Kernel::RouteExpertsChoose, prepareRouteExpertsChoose},
      {Kernel::RouteTokensChoose, prepareRouteTokensChoose},
      {Kernel::RouteSigmoidTopK, prepareRouteSigmoidTopK},
      {Kernel::EntropyRegularizer, prepareEntropyRegularizer},
      {Kernel::EntropyRegularizerGrad, prepareEntropyRegularizerGrad},
      {Kernel::RouteGrad, prepareRouteGrad},
      {Kernel::RouterLogitsBf16, prepareRouterLogitsBf16},
  };
}

} // namespace mixer::cuda
