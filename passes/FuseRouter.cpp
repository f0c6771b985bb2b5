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

/// select_experts(softmax(l)) -> route(l); a router_bf16 selection takes
/// only the bfloat16 router's softmax.
struct FuseSoftmaxIntoSelection : OpRewritePattern<SelectExpertsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SelectExpertsOp select,
                                PatternRewriter &rewriter) const override {
    auto softmax = select.getProbs().getDefiningOp<SoftmaxOp>();
    if (!softmax || !softmax->hasOneUse())
      return rewriter.notifyMatchFailure(select, "probabilities are not a "
                                                 "single-use router softmax");
    if (softmax.getBf16() != select.getRouterBf16())
      return rewriter.notifyMatchFailure(
          softmax, "softmax precision differs from the router's");
    Value logits = softmax.getInput();
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
