//===- Autodiff.cpp - reverse-mode differentiation of @forward ------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace mixer {
#define GEN_PASS_DEF_MIXERAUTODIFF
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using namespace mixer::graph;

namespace {

/// Accumulates gradients per value while the backward graph is built.
class GradientMap {
public:
  explicit GradientMap(OpBuilder &builder) : builder(builder) {}

  Value lookup(Value value) const { return grads.lookup(value); }

  /// Adds `grad` to what `value` has received so far.
  void accumulate(Value value, Value grad) {
    Value &slot = grads[value];
    slot = slot ? AddOp::create(builder, grad.getLoc(), slot, grad).getResult()
                : grad;
  }

private:
  OpBuilder &builder;
  DenseMap<Value, Value> grads;
};

/// Index of the output named `name`, or -1.
int64_t outputIndex(ArrayAttr names, StringRef name) {
  for (auto [index, attr] : llvm::enumerate(names))
    if (cast<StringAttr>(attr).getValue() == name)
      return index;
  return -1;
}

LogicalResult differentiate(func::FuncOp func) {
  auto names = func->getAttrOfType<ArrayAttr>(mixer::graph::kOutputsAttr);
  int64_t lossIndex = names ? outputIndex(names, "loss") : -1;
  if (lossIndex < 0)
    return func.emitError("no output named 'loss' to differentiate");
  Block &body = func.getBody().front();
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  Value loss = ret.getOperand(lossIndex);
  auto lossType = dyn_cast<RankedTensorType>(loss.getType());
  if (!lossType || lossType.getRank() != 0)
    return func.emitError("the loss must be a scalar tensor<f32>");

  OpBuilder builder(ret);
  GradientMap grads(builder);
  grads.accumulate(loss, FillOp::create(builder, loss.getLoc(), lossType,
                                        builder.getF64FloatAttr(1.0)));

  SmallVector<Operation *> forwardOps;
  for (Operation &op : body.without_terminator())
    forwardOps.push_back(&op);
  for (Operation *op : llvm::reverse(forwardOps)) {
    SmallVector<Value> resultGrads;
    for (Value result : op->getResults())
      resultGrads.push_back(grads.lookup(result));
    if (llvm::none_of(resultGrads, [](Value g) { return bool(g); }))
      continue;
    auto differentiable = dyn_cast<GradientOpInterface>(op);
    if (!differentiable)
      return op->emitOpError("has no gradient");
    SmallVector<Value> operandGrads;
    if (failed(
            differentiable.buildGradients(builder, resultGrads, operandGrads)))
      return failure();
    assert(operandGrads.size() == op->getNumOperands() &&
           "one gradient (or null) per operand");
    for (auto [operand, grad] : llvm::zip(op->getOperands(), operandGrads))
      if (grad)
        grads.accumulate(operand, grad);
  }

  SmallVector<Value> results(ret.getOperands());
  SmallVector<Attribute> outputNames(names.begin(), names.end());
  for (BlockArgument arg : func.getArguments()) {
    auto param = func.getArgAttrOfType<StringAttr>(arg.getArgNumber(),
                                                   mixer::graph::kParamAttr);
    if (!param)
      continue;
    Value grad = grads.lookup(arg);
    if (!grad)
      grad = FillOp::create(builder, arg.getLoc(), arg.getType(),
                            builder.getF64FloatAttr(0.0));
    results.push_back(grad);
    outputNames.push_back(builder.getStringAttr("grad/" + param.getValue()));
  }
  func::ReturnOp::create(builder, ret.getLoc(), results);
  ret.erase();
  func.setType(builder.getFunctionType(func.getArgumentTypes(),
                                       ValueRange(results).getTypes()));
  func->setAttr(mixer::graph::kOutputsAttr, builder.getArrayAttr(outputNames));
  return success();
}

struct AutodiffPass : mixer::impl::MixerAutodiffBase<AutodiffPass> {
  void runOnOperation() override {
    auto func = getOperation().lookupSymbol<func::FuncOp>("forward");
    if (!func) {
      getOperation().emitError("no @forward function to differentiate");
      return signalPassFailure();
    }
    if (failed(differentiate(func)))
      signalPassFailure();
  }
};

} // namespace
