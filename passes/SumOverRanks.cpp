//===- SumOverRanks.cpp - the ranks' contributions summed over the mesh ---===//
//
// The training step of a parallel program computes on each rank its share of
// the objective (the IR builder divides by global counts), so the whole
// step's loss and gradients are sums over ranks: a gradient of a replicated
// parameter over the world, an expert gradient over the ranks that hold the
// same experts (its slice already gathers the contributions of the whole
// expert group through the all-to-alls' gradients), and each reported loss
// over the world. The sums come after mixer-autodiff, so they are not
// themselves differentiated.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/StringMap.h"

namespace mixer {
#define GEN_PASS_DEF_MIXERSUMOVERRANKS
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;

namespace {

constexpr StringLiteral kGradPrefix = "grad/";

/// The `mixer.shard` of each parameter of `func` by name (null for a
/// replicated parameter).
llvm::StringMap<DictionaryAttr> parameterShards(func::FuncOp func) {
  llvm::StringMap<DictionaryAttr> shards;
  for (BlockArgument arg : func.getArguments())
    if (auto name =
            func.getArgAttrOfType<StringAttr>(arg.getArgNumber(), kParamAttr))
      shards[name.getValue()] =
          func.getArgAttrOfType<DictionaryAttr>(arg.getArgNumber(), kShardAttr);
  return shards;
}

LogicalResult sumOverRanks(func::FuncOp func, const Mesh &mesh) {
  auto names = func->getAttrOfType<ArrayAttr>(kOutputsAttr);
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  if (!names || names.size() != ret.getNumOperands())
    return func.emitError("mixer.outputs must name every result");
  llvm::StringMap<DictionaryAttr> shards = parameterShards(func);
  OpBuilder builder(ret);
  auto sum = [&](unsigned index, StringRef group) {
    Value value = ret.getOperand(index);
    ret.setOperand(index, AllReduceOp::create(builder, value.getLoc(), value,
                                              builder.getStringAttr(group)));
  };
  for (auto [index, nameAttr] : llvm::enumerate(names)) {
    StringRef name = cast<StringAttr>(nameAttr).getValue();
    auto type = cast<RankedTensorType>(ret.getOperand(index).getType());
    if (name.consume_front(kGradPrefix)) {
      auto shard = shards.find(name);
      if (shard == shards.end())
        return func.emitError() << "gradient result 'grad/" << name
                                << "' names no parameter of the function";
      if (!shard->second) {
        sum(index, kWorldGroup);
        func.setResultAttr(index, kReplicatedAttr, builder.getUnitAttr());
        continue;
      }
      if (mesh.dp > 1)
        sum(index, kExpertDataGroup);
      func.setResultAttr(index, kShardAttr, shard->second);
      continue;
    }
    // Scalars of a training step are the losses: contributions to sum.
    if (type.getRank() == 0 && type.getElementType().isF32()) {
      sum(index, kWorldGroup);
      func.setResultAttr(index, kReplicatedAttr, builder.getUnitAttr());
    }
  }
  return success();
}

struct SumOverRanksPass : mixer::impl::MixerSumOverRanksBase<SumOverRanksPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    Mesh mesh = meshOf(module);
    if (mesh.world() == 1)
      return;
    auto func = module.lookupSymbol<func::FuncOp>("forward");
    if (!func) {
      module.emitError("no @forward function to sum over the ranks");
      return signalPassFailure();
    }
    if (failed(sumOverRanks(func, mesh)))
      signalPassFailure();
  }
};

} // namespace
