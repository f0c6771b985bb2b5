//===- FuseRouter.cpp - router softmax + expert selection fusion ----------===//

#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mixer {
#define GEN_PASS_DEF_MIXERFUSEROUTER
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;

namespace {

/// Strips a single-use mixer.round_bf16 from `value` if `required`; returns
/// null when the expected rounding is absent.
Value skipRounding(Value value, bool required) {
  if (!required)
    return value;
  auto round = value.getDefiningOp<RoundBf16Op>();
  if (!round || !round->hasOneUse())
    return Value();
  return round.getInput();
}

/// select_experts(softmax(l)) -> route(l), with the bf16 roundings of
/// router_bf16 on both sides of the softmax absorbed as well.
struct FuseSoftmaxIntoSelection : OpRewritePattern<SelectExpertsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SelectExpertsOp select,
                                PatternRewriter &rewriter) const override {
    bool bf16 = select.getRouterBf16();
    Value probs = skipRounding(select.getProbs(), bf16);
    auto softmax = probs ? probs.getDefiningOp<SoftmaxOp>() : SoftmaxOp();
    if (!softmax || !softmax->hasOneUse())
      return rewriter.notifyMatchFailure(select, "probabilities are not a "
                                                 "single-use router softmax");
    Value logits = skipRounding(softmax.getInput(), bf16);
    if (!logits)
      return rewriter.notifyMatchFailure(softmax, "missing bf16 rounding");
    rewriter.replaceOpWithNewOp<RouteOp>(
        select, select.getResultTypes(), logits, select.getRoutingAttr(),
        select.getNumGroupsAttr(), select.getCapacityAttr(), select.getKAttr(),
        select.getBatchPrioritizedAttr(), select.getRouterBf16Attr());
    return success();
  }
};

struct FuseRouterPass : mixer::impl::MixerFuseRouterBase<FuseRouterPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseSoftmaxIntoSelection>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      getOperation().emitWarning("router fusion did not converge");
  }
};

} // namespace
