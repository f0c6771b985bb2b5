//===- Dense.cpp - dense, normalisation and pointwise ops -----------------===//

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixer/VerifyUtils.h"

#include "mlir/IR/Matchers.h"

using namespace mlir;
using namespace mixer::graph;

LogicalResult DenseOp::verify() {
  if (failed(expectRank(*this, getWeight(), 2, "weight")))
    return failure();
  ArrayRef<int64_t> in = shapeOf(getInput());
  if (in.empty())
    return emitOpError("input must have rank >= 1");
  ArrayRef<int64_t> w = shapeOf(getWeight());
  int64_t k = getTransposeWeight() ? w[1] : w[0];
  int64_t n = getTransposeWeight() ? w[0] : w[1];
  if (in.back() != k)
    return emitOpError() << "input feature size " << in.back()
                         << " does not match the weight's contracted size "
                         << k;
  if (getBias() && failed(expectShape(*this, getBias(), {n}, "bias")))
    return failure();
  SmallVector<int64_t> out(in.begin(), in.end());
  out.back() = n;
  return expectShape(*this, getResult(), out, "result");
}

double DenseOp::getFlops() {
  int64_t n = shapeOf(getResult()).back();
  return 2.0 * cast<ShapedType>(getInput().getType()).getNumElements() * n;
}

/// Checks scale/bias of a LayerNorm over the last axis of `input`.
static LogicalResult verifyNormParams(Operation *op, Value input, Value scale,
                                      Value bias, Value result) {
  ArrayRef<int64_t> in = shapeOf(input);
  if (in.empty())
    return op->emitOpError("input must have rank >= 1");
  if (failed(expectShape(op, scale, {in.back()}, "scale")) ||
      failed(expectShape(op, bias, {in.back()}, "bias")))
    return failure();
  return expectShape(op, result, in, "result");
}

LogicalResult LayerNormOp::verify() {
  if (getEpsilon().convertToDouble() <= 0)
    return emitOpError("epsilon must be positive");
  return verifyNormParams(*this, getInput(), getScale(), getBias(),
                          getResult());
}

LogicalResult AddLayerNormOp::verify() {
  if (getEpsilon().convertToDouble() <= 0)
    return emitOpError("epsilon must be positive");
  if (failed(
          expectShape(*this, getResidual(), shapeOf(getInput()), "residual")))
    return failure();
  return verifyNormParams(*this, getInput(), getScale(), getBias(),
                          getResult());
}

OpFoldResult ActivationOp::fold(FoldAdaptor) {
  if (getKind() == Activation::none)
    return getInput();
  return {};
}

LogicalResult ReshapeOp::verify() {
  auto in = cast<RankedTensorType>(getInput().getType());
  auto out = cast<RankedTensorType>(getResult().getType());
  if (in.getElementType() != out.getElementType())
    return emitOpError("element type must not change");
  if (in.getNumElements() != out.getNumElements())
    return emitOpError() << "cannot reshape " << in.getNumElements()
                         << " elements into " << out.getNumElements();
  return success();
}

OpFoldResult ReshapeOp::fold(FoldAdaptor) {
  if (getInput().getType() == getResult().getType())
    return getInput();
  // reshape(reshape(x)) == reshape(x): row-major reshapes compose.
  if (auto inner = getInput().getDefiningOp<ReshapeOp>()) {
    getInputMutable().assign(inner.getInput());
    return getResult();
  }
  return {};
}

LogicalResult TakePositionOp::verify() {
  if (failed(expectRank(*this, getInput(), 3, "input")))
    return failure();
  ArrayRef<int64_t> in = shapeOf(getInput());
  if (static_cast<int64_t>(getIndex()) >= in[1])
    return emitOpError() << "position " << getIndex()
                         << " is outside the sequence of length " << in[1];
  return expectShape(*this, getResult(), {in[0], in[2]}, "result");
}

LogicalResult PoolOp::verify() {
  if (failed(expectRank(*this, getInput(), 3, "input")))
    return failure();
  ArrayRef<int64_t> in = shapeOf(getInput());
  if (failed(expectShape(*this, getIds(), {in[0], in[1]}, "ids")))
    return failure();
  if (getMode() == PoolMode::cls && in[1] == 0)
    return emitOpError("cannot take position 0 of an empty sequence");
  return expectShape(*this, getResult(), {in[0], in[2]}, "result");
}

//===----------------------------------------------------------------------===//
// Gradients
//===----------------------------------------------------------------------===//

LogicalResult DenseOp::buildGradients(OpBuilder &builder,
                                      ValueRange resultGrads,
                                      SmallVectorImpl<Value> &operandGrads) {
  if (getActivation() != Activation::none)
    return emitOpError("has a fused activation whose input is not kept: "
                       "differentiate before mixer-fuse-dense-activation");
  Location loc = getLoc();
  Value dy = resultGrads[0];
  // dX = dY · Wᵀ for a [K, N] weight, dY · W for a transposed [N, K] one.
  auto dx = DenseOp::create(builder, loc, getInput().getType(), dy, getWeight(),
                            Value());
  dx.setTransposeWeight(!getTransposeWeight());
  auto dw = DenseWeightGradOp::create(builder, loc, getWeight().getType(),
                                      getInput(), dy, getTransposeWeightAttr());
  operandGrads.append({dx, dw});
  if (getBias())
    operandGrads.push_back(
        ReduceRowsOp::create(builder, loc, getBias().getType(), dy));
  return success();
}

LogicalResult
LayerNormOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                            SmallVectorImpl<Value> &operandGrads) {
  auto grads = LayerNormGradOp::create(
      builder, getLoc(), getInput().getType(), getScale().getType(),
      getBias().getType(), getInput(), getScale(), resultGrads[0],
      getEpsilonAttr());
  operandGrads.append(grads->result_begin(), grads->result_end());
  return success();
}

LogicalResult
ActivationOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                             SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(ActivationGradOp::create(builder, getLoc(), getInput(),
                                                  resultGrads[0], getKind()));
  return success();
}

LogicalResult AddOp::buildGradients(OpBuilder &, ValueRange resultGrads,
                                    SmallVectorImpl<Value> &operandGrads) {
  operandGrads.append({resultGrads[0], resultGrads[0]});
  return success();
}

LogicalResult SoftmaxOp::buildGradients(OpBuilder &builder,
                                        ValueRange resultGrads,
                                        SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(
      SoftmaxGradOp::create(builder, getLoc(), getResult(), resultGrads[0]));
  return success();
}

LogicalResult ReshapeOp::buildGradients(OpBuilder &builder,
                                        ValueRange resultGrads,
                                        SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(ReshapeOp::create(
      builder, getLoc(), getInput().getType(), resultGrads[0]));
  return success();
}

LogicalResult
TakePositionOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                               SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(TakePositionGradOp::create(
      builder, getLoc(), getInput().getType(), resultGrads[0], getIndexAttr()));
  return success();
}

LogicalResult
ReduceSumOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                            SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(BroadcastOp::create(
      builder, getLoc(), getInput().getType(), resultGrads[0]));
  return success();
}

LogicalResult
BroadcastOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                            SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(ReduceSumOp::create(
      builder, getLoc(), getInput().getType(), resultGrads[0]));
  return success();
}

/// Rounding passes gradients straight through, as a dtype cast does in the
/// reference's autodiff.
LogicalResult
RoundBf16Op::buildGradients(OpBuilder &, ValueRange resultGrads,
                            SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(resultGrads[0]);
  return success();
}
