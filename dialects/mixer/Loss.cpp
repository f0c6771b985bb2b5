//===- Loss.cpp - training losses and scalar arithmetic -------------------===//

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixer/VerifyUtils.h"

using namespace mlir;
using namespace mixer::graph;

LogicalResult GatherPositionsOp::verify() {
  if (failed(expectRank(*this, getInput(), 3, "input")) ||
      failed(expectRank(*this, getPositions(), 2, "positions")))
    return failure();
  ArrayRef<int64_t> in = shapeOf(getInput()), pos = shapeOf(getPositions());
  if (pos[0] != in[0])
    return emitOpError("positions must have one row per example");
  return expectShape(*this, getResult(), {pos[0] * pos[1], in[2]}, "result");
}

LogicalResult GatherPositionsGradOp::verify() {
  if (failed(expectRank(*this, getResult(), 3, "result")) ||
      failed(expectRank(*this, getPositions(), 2, "positions")))
    return failure();
  ArrayRef<int64_t> out = shapeOf(getResult()), pos = shapeOf(getPositions());
  if (pos[0] != out[0])
    return emitOpError("positions must have one row per example");
  return expectShape(*this, getResultGrad(), {pos[0] * pos[1], out[2]},
                     "result_grad");
}

LogicalResult SoftmaxCrossEntropyOp::verify() {
  if (failed(expectRank(*this, getLogits(), 2, "logits")))
    return failure();
  int64_t rows = shapeOf(getLogits())[0];
  if (failed(expectShape(*this, getLabels(), {rows}, "labels")))
    return failure();
  if (getWeights())
    return expectShape(*this, getWeights(), {rows}, "weights");
  return success();
}

LogicalResult LabelMaskOp::verify() {
  return expectShape(*this, getResult(), shapeOf(getLabels()), "result");
}

LogicalResult ArgmaxOp::verify() {
  ArrayRef<int64_t> shape = shapeOf(getInput());
  if (shape.empty())
    return emitOpError("needs an input of rank 1 or more");
  return expectShape(*this, getResult(), shape.drop_back(), "result");
}

LogicalResult SquaredErrorOp::verify() {
  return expectShape(*this, getTarget(), shapeOf(getPrediction()), "target");
}

//===----------------------------------------------------------------------===//
// Gradients
//===----------------------------------------------------------------------===//

LogicalResult MultiplyOp::buildGradients(OpBuilder &builder,
                                         ValueRange resultGrads,
                                         SmallVectorImpl<Value> &operandGrads) {
  Value dy = resultGrads[0];
  operandGrads.push_back(MultiplyOp::create(builder, getLoc(), dy, getRhs()));
  operandGrads.push_back(MultiplyOp::create(builder, getLoc(), dy, getLhs()));
  return success();
}

/// d(a/b) = da/b − (a/b)·db/b.
LogicalResult DivideOp::buildGradients(OpBuilder &builder,
                                       ValueRange resultGrads,
                                       SmallVectorImpl<Value> &operandGrads) {
  Value lhsGrad = DivideOp::create(builder, getLoc(), resultGrads[0], getRhs());
  Value rhsGrad = ScaleOp::create(
      builder, getLoc(),
      MultiplyOp::create(builder, getLoc(), lhsGrad, getResult()),
      builder.getF64FloatAttr(-1.0));
  operandGrads.append({lhsGrad, rhsGrad});
  return success();
}

LogicalResult ScaleOp::buildGradients(OpBuilder &builder,
                                      ValueRange resultGrads,
                                      SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(
      ScaleOp::create(builder, getLoc(), resultGrads[0], getFactorAttr()));
  return success();
}

LogicalResult
GatherPositionsOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                                  SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(GatherPositionsGradOp::create(
      builder, getLoc(), getInput().getType(), resultGrads[0], getPositions()));
  operandGrads.push_back(Value());
  return success();
}

/// Labels are integers; weights are data, not parameters: no gradients.
LogicalResult
SoftmaxCrossEntropyOp::buildGradients(OpBuilder &builder,
                                      ValueRange resultGrads,
                                      SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(SoftmaxCrossEntropyGradOp::create(
      builder, getLoc(), getLogits().getType(), getLogits(), getLabels(),
      resultGrads[0], getWeights()));
  operandGrads.push_back(Value());
  if (getWeights())
    operandGrads.push_back(Value());
  return success();
}

/// d/dp Σ (p − t)² = 2 (p − t), scaled by the loss gradient.
LogicalResult
SquaredErrorOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                               SmallVectorImpl<Value> &operandGrads) {
  Location loc = getLoc();
  Value residual =
      AddOp::create(builder, loc, getPrediction(),
                    ScaleOp::create(builder, loc, getTarget(),
                                    builder.getF64FloatAttr(-1.0)));
  Value scale = BroadcastOp::create(builder, loc, getPrediction().getType(),
                                    resultGrads[0]);
  operandGrads.push_back(ScaleOp::create(
      builder, loc, MultiplyOp::create(builder, loc, residual, scale),
      builder.getF64FloatAttr(2.0)));
  operandGrads.push_back(Value());
  return success();
}

/// Labels are data: nothing flows back through the mask.
LogicalResult
LabelMaskOp::buildGradients(OpBuilder &, ValueRange,
                            SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(Value());
  return success();
}
