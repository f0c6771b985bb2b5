//===- Training.cpp - noise and optimizer op verifiers and gradients ------===//

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixer/VerifyUtils.h"

using namespace mlir;
using namespace mixer::graph;

LogicalResult mixer::graph::expectNoiseRate(Operation *op, double rate,
                                            StringRef what) {
  // A dropout rate of 1 would divide by zero, a jitter of 1 or more could
  // flip signs.
  if (rate >= 0 && rate < 1)
    return success();
  return op->emitOpError() << what << " must be in [0, 1), got " << rate;
}

LogicalResult
mixer::graph::expectAttentionDropout(Operation *op, Value seed, Value step,
                                     std::optional<APFloat> rate,
                                     std::optional<uint64_t> stream) {
  if (rate.has_value() != stream.has_value())
    return op->emitOpError("dropout_rate and dropout_stream go together");
  if (bool(seed) != rate.has_value() || bool(step) != rate.has_value())
    return op->emitOpError("takes the noise operands seed and step exactly "
                           "when it has a dropout_rate");
  if (rate)
    return expectNoiseRate(op, rate->convertToDouble(), "dropout_rate");
  return success();
}

LogicalResult RandomScaleOp::verify() {
  return expectNoiseRate(*this, getRate().convertToDouble(), "rate");
}

LogicalResult DropExpertsOp::verify() {
  if (failed(expectRank(*this, getInput(), 2, "input")))
    return failure();
  return expectNoiseRate(*this, getRate().convertToDouble(), "rate");
}

LogicalResult GlobalNormOp::verify() {
  if (getInputs().empty())
    return emitOpError("needs at least one operand");
  return success();
}

LogicalResult AdamWOp::verify() {
  auto inUnitInterval = [](double b) { return b >= 0 && b < 1; };
  if (!inUnitInterval(getB1().convertToDouble()) ||
      !inUnitInterval(getB2().convertToDouble()))
    return emitOpError("b1 and b2 must be in [0, 1)");
  if (!(getEps().convertToDouble() > 0))
    return emitOpError("eps must be positive");
  if (!(getWeightDecay().convertToDouble() >= 0))
    return emitOpError("weight_decay must not be negative");
  double maxNorm = getMaxNorm().convertToDouble();
  if (!(maxNorm >= 0))
    return emitOpError("max_norm must not be negative");
  if (bool(getNorm()) != (maxNorm > 0))
    return emitOpError("takes a norm operand exactly when max_norm > 0");
  if (bool(getMicroStep()) != (getMicroSteps() > 1))
    return emitOpError("takes a micro_step operand exactly when micro_steps "
                       "> 1");
  return success();
}

/// The factors depend only on the key and the element: the op is linear in
/// its input with a fixed diagonal, so it is its own adjoint.
LogicalResult
RandomScaleOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                              SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(RandomScaleOp::create(
      builder, getLoc(), resultGrads[0], getSeed(), getStep(), getKindAttr(),
      getRateAttr(), getStreamAttr(), getBlocksAttr()));
  operandGrads.append({Value(), Value()});
  return success();
}

/// The same experts are dropped in the backward pass; their gradients are 0.
LogicalResult
DropExpertsOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                              SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(DropExpertsOp::create(
      builder, getLoc(), resultGrads[0], getSeed(), getStep(), getRateAttr(),
      getStreamAttr(), builder.getUnitAttr()));
  operandGrads.append({Value(), Value()});
  return success();
}
