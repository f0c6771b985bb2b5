//===- FuseDenseActivation.cpp - bias + activation epilogue fusion --------===//

#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mixer {
#define GEN_PASS_DEF_MIXERFUSEDENSEACTIVATION
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;

namespace {

/// Whether a GEMM epilogue of `target` applies `kind`: the CPU's oneDNN
/// post-ops have every activation, cuBLASLt epilogues only ReLU and GELU.
bool hasEpilogue(StringRef target, Activation kind) {
  return target != "cuda" || kind == Activation::relu ||
         kind == Activation::gelu;
}

/// activation(dense(x)) -> dense(x) {activation}.
struct FuseActivationIntoDense : OpRewritePattern<ActivationOp> {
  FuseActivationIntoDense(MLIRContext *context, StringRef target)
      : OpRewritePattern(context), target(target.str()) {}

  LogicalResult matchAndRewrite(ActivationOp activation,
                                PatternRewriter &rewriter) const override {
    auto dense = activation.getInput().getDefiningOp<DenseOp>();
    if (!dense)
      return rewriter.notifyMatchFailure(activation, "input is not a dense");
    if (!hasEpilogue(target, activation.getKind()))
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

  std::string target;
};

struct FuseDenseActivationPass
    : mixer::impl::MixerFuseDenseActivationBase<FuseDenseActivationPass> {
  using MixerFuseDenseActivationBase::MixerFuseDenseActivationBase;

  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseActivationIntoDense>(&getContext(), target);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      getOperation().emitWarning("dense-activation fusion did not converge");
  }
};

} // namespace
