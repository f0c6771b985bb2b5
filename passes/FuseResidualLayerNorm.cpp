//===- FuseResidualLayerNorm.cpp - residual + LayerNorm fusion ------------===//

#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mixer {
#define GEN_PASS_DEF_MIXERFUSERESIDUALLAYERNORM
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;

namespace {

/// layer_norm(add(a, b)) -> add_layer_norm(a, b) when the sum is not reused.
struct FuseAddIntoLayerNorm : OpRewritePattern<LayerNormOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(LayerNormOp norm,
                                PatternRewriter &rewriter) const override {
    auto add = norm.getInput().getDefiningOp<AddOp>();
    if (!add)
      return rewriter.notifyMatchFailure(norm, "input is not a sum");
    if (!add->hasOneUse())
      return rewriter.notifyMatchFailure(add, "the sum is used elsewhere");
    rewriter.replaceOpWithNewOp<AddLayerNormOp>(
        norm, norm.getType(), add.getLhs(), add.getRhs(), norm.getScale(),
        norm.getBias(), norm.getEpsilonAttr());
    return success();
  }
};

struct FuseResidualLayerNormPass
    : mixer::impl::MixerFuseResidualLayerNormBase<FuseResidualLayerNormPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseAddIntoLayerNorm>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      getOperation().emitWarning("residual-LayerNorm fusion did not converge");
  }
};

} // namespace
