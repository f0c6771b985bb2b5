//===- ExpandGelu.cpp - a pass plugin that rewrites mixer ops -------------===//
//
// Spells every `mixer.activation gelu` out as the tanh formula mixer's GELU
// computes, gelu(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in mixer's
// elementwise ops: the artifact computes the same values with the `multiply`,
// `scale`, `add` and `activation tanh` kernels, as a backend without a GELU
// kernel would need. The pass matches and builds ops through their C++
// classes, which resolve against the one copy in libMixerCompiler.so that mixc
// and mixer-opt run on; it also joins their pipeline at the graph stage:
//   mixc model.json --load-pass-plugin=libMixerExpandGeluPlugin.so
//   mixer-opt in.mlir --load-pass-plugin=libMixerExpandGeluPlugin.so \
//       --mixer-expand-gelu
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Tools/Plugins/PassPlugin.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include "llvm/Config/llvm-config.h"

using namespace mlir;
using namespace mixer::graph;

namespace {

/// gelu(x) = h + h * tanh(c * (x + a * x^3)) with h = x / 2.
struct ExpandGelu : OpRewritePattern<ActivationOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(ActivationOp op,
                                PatternRewriter &rewriter) const override {
    if (op.getKind() != Activation::gelu)
      return rewriter.notifyMatchFailure(op, "not a GELU");
    Location loc = op.getLoc();
    auto scale = [&](Value value, double factor) {
      return ScaleOp::create(rewriter, loc, value,
                             rewriter.getF64FloatAttr(factor));
    };
    Value x = op.getInput();
    Value cube = MultiplyOp::create(rewriter, loc,
                                    MultiplyOp::create(rewriter, loc, x, x), x);
    Value inner = scale(AddOp::create(rewriter, loc, x, scale(cube, 0.044715)),
                        0.7978845608028654);
    Value tanh = ActivationOp::create(rewriter, loc, inner, Activation::tanh);
    Value half = scale(x, 0.5);
    rewriter.replaceOpWithNewOp<AddOp>(
        op, half, MultiplyOp::create(rewriter, loc, half, tanh));
    return success();
  }
};

struct ExpandGeluPass
    : PassWrapper<ExpandGeluPass, OperationPass<func::FuncOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(ExpandGeluPass)

  StringRef getArgument() const override { return "mixer-expand-gelu"; }
  StringRef getDescription() const override {
    return "Spell GELU activations out as tanh and elementwise arithmetic";
  }
  void getDependentDialects(DialectRegistry &registry) const override {
    registry.insert<MixerDialect>();
  }

  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<ExpandGelu>(&getContext());
    (void)applyPatternsGreedily(getOperation(), std::move(patterns));
  }
};

} // namespace

extern "C" LLVM_ATTRIBUTE_WEAK PassPluginLibraryInfo mlirGetPassPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "MixerExpandGelu", LLVM_VERSION_STRING, [] {
            PassRegistration<ExpandGeluPass>();
            // At the graph stage: before fusion folds the GELU into its dense.
            mixer::registerPipelineExtension(
                mixer::PipelineStage::Graph,
                [](OpPassManager &pm, const mixer::PipelineOptions &) {
                  pm.addNestedPass<func::FuncOp>(
                      std::make_unique<ExpandGeluPass>());
                });
          }};
}
