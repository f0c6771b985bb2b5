//===- FuseDenseActivation.cpp - bias + activation epilogue fusion --------===//

#include "passes/Passes.h"
#include "runtime/support/TargetInfo.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mixer {
#define GEN_PASS_DEF_MIXERFUSEDENSEACTIVATION
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;

namespace {

/// activation(dense(x)) -> dense(x) {activation}.
struct FuseActivationIntoDense : OpRewritePattern<ActivationOp> {
  FuseActivationIntoDense(MLIRContext *context, const mixer::TargetInfo &target)
      : OpRewritePattern(context), target(target) {}

  LogicalResult matchAndRewrite(ActivationOp activation,
                                PatternRewriter &rewriter) const override {
    auto dense = activation.getInput().getDefiningOp<DenseOp>();
    if (!dense)
      return rewriter.notifyMatchFailure(activation, "input is not a dense");
    if (!target.fusesDenseActivation(stringifyActivation(activation.getKind())))
      return rewriter.notifyMatchFailure(activation,
                                         "no GEMM epilogue on this target");
    if (dense.getActivation() != Activation::none)
      return rewriter.notifyMatchFailure(dense, "dense already activates");
    if (!dense->hasOneUse())
      return rewriter.notifyMatchFailure(dense, "pre-activation value is used");
    rewriter.modifyOpInPlace(dense, [&] {
      dense.setActivation(activation.getKind());
      dense->setLoc(
          rewriter.getFusedLoc({dense.getLoc(), activation.getLoc()}));
    });
    rewriter.replaceOp(activation, dense.getResult());
    return success();
  }

  const mixer::TargetInfo &target;
};

struct FuseDenseActivationPass
    : mixer::impl::MixerFuseDenseActivationBase<FuseDenseActivationPass> {
  using MixerFuseDenseActivationBase::MixerFuseDenseActivationBase;

  void runOnOperation() override {
    const mixer::TargetInfo *info = mixer::findTarget(target);
    if (!info) {
      getOperation().emitError()
          << "unknown target '" << target << "' (expected "
          << mixer::targetNames(" or ") << ")";
      return signalPassFailure();
    }
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseActivationIntoDense>(&getContext(), *info);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      getOperation().emitWarning("dense-activation fusion did not converge");
  }
};

} // namespace
