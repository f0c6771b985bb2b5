//===- VerifyShapes.cpp - static shape and type verification --------------===//

#include "passes/Passes.h"

#include "mlir/IR/BuiltinOps.h"

namespace mixer {
#define GEN_PASS_DEF_MIXERVERIFYSHAPES
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;

namespace {

/// Why `type` is not a supported static tensor type, or empty if it is.
std::string unsupportedReason(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor)
    return "is not a ranked tensor";
  if (!tensor.hasStaticShape())
    return "has a dynamic shape: recompile for a fixed batch and sequence";
  Type element = tensor.getElementType();
  if (!element.isF32() && !element.isInteger(32))
    return "has element type other than f32 or i32";
  return "";
}

struct VerifyShapesPass : mixer::impl::MixerVerifyShapesBase<VerifyShapesPass> {
  void runOnOperation() override {
    bool failedAny = false;
    getOperation().walk([&](func::FuncOp func) {
      for (auto [index, arg] : llvm::enumerate(func.getArguments())) {
        bool named = func.getArgAttr(index, mixer::graph::kInputAttr) ||
                     func.getArgAttr(index, mixer::graph::kParamAttr) ||
                     func.getArgAttr(index, mixer::graph::kStateAttr);
        if (!named) {
          func.emitError() << "argument " << index
                           << " is neither a model input (mixer.input), a "
                              "parameter (mixer.param) nor optimizer state "
                              "(mixer.state)";
          failedAny = true;
        }
        std::string reason = unsupportedReason(arg.getType());
        if (!reason.empty()) {
          func.emitError() << "argument " << index << " " << reason;
          failedAny = true;
        }
      }
      func.walk([&](Operation *op) {
        for (auto [index, result] : llvm::enumerate(op->getResults())) {
          std::string reason = unsupportedReason(result.getType());
          if (!reason.empty()) {
            op->emitError() << "result " << index << " " << reason;
            failedAny = true;
          }
        }
      });
    });
    if (failedAny)
      signalPassFailure();
  }
};

} // namespace
