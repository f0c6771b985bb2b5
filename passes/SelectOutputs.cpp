//===- SelectOutputs.cpp - keep only the requested model outputs ----------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/StringExtras.h"

namespace mixer {
#define GEN_PASS_DEF_MIXERSELECTOUTPUTS
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;

namespace {

struct SelectOutputsPass
    : mixer::impl::MixerSelectOutputsBase<SelectOutputsPass> {
  using MixerSelectOutputsBase::MixerSelectOutputsBase;

  void runOnOperation() override {
    auto func = getOperation().lookupSymbol<func::FuncOp>("forward");
    auto names =
        func ? func->getAttrOfType<ArrayAttr>(mixer::graph::kOutputsAttr)
             : ArrayAttr();
    if (!names) {
      getOperation().emitError("no @forward function with mixer.outputs");
      return signalPassFailure();
    }
    auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
    SmallVector<Value> kept;
    SmallVector<Attribute> keptNames;
    for (const std::string &wanted : outputs) {
      auto it = llvm::find_if(names, [&](Attribute name) {
        return cast<StringAttr>(name).getValue() == wanted;
      });
      if (it == names.end()) {
        SmallVector<StringRef> available;
        for (Attribute name : names)
          available.push_back(cast<StringAttr>(name).getValue());
        func.emitError() << "model has no output '" << wanted
                         << "' (outputs: " << llvm::join(available, ", ")
                         << ")";
        return signalPassFailure();
      }
      kept.push_back(ret.getOperand(it - names.begin()));
      keptNames.push_back(*it);
    }
    OpBuilder builder(ret);
    func::ReturnOp::create(builder, ret.getLoc(), kept);
    ret.erase();
    func.setType(builder.getFunctionType(func.getArgumentTypes(),
                                         ValueRange(kept).getTypes()));
    func->setAttr(mixer::graph::kOutputsAttr, builder.getArrayAttr(keptNames));
  }
};

} // namespace
