//===- Attention.cpp - attention op verifiers -----------------------------===//

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixer/VerifyUtils.h"

using namespace mlir;
using namespace mixer::graph;

LogicalResult AttentionOp::verify() {
  if (failed(expectRank(*this, getQuery(), 3, "query")))
    return failure();
  ArrayRef<int64_t> q = shapeOf(getQuery());
  int64_t width = getNumHeads() * getHeadDim();
  if (q[2] != width)
    return emitOpError() << "query width " << q[2] << " must equal num_heads ("
                         << getNumHeads() << ") x head_dim (" << getHeadDim()
                         << ")";
  if (failed(expectShape(*this, getKey(), q, "key")) ||
      failed(expectShape(*this, getValue(), q, "value")) ||
      failed(expectShape(*this, getIds(), {q[0], q[1]}, "ids")) ||
      failed(expectAttentionDropout(*this, getSeed(), getStep(),
                                    getDropoutRate(), getDropoutStream())))
    return failure();
  return expectShape(*this, getResult(), q, "result");
}

double AttentionOp::getFlops() {
  ArrayRef<int64_t> shape = shapeOf(getQuery());
  return 4.0 * shape[0] * shape[1] * shape[1] * shape[2];
}

LogicalResult
AttentionOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                            SmallVectorImpl<Value> &operandGrads) {
  Type type = getQuery().getType();
  // The mask is a function of the key, so the gradient redraws it.
  auto grads = AttentionGradOp::create(
      builder, getLoc(), type, type, type, getQuery(), getKey(), getValue(),
      getIds(), resultGrads[0], getSeed(), getStep(), getNumHeadsAttr(),
      getHeadDimAttr(), getPadIdAttr(), getCausalAttr(), getDropoutRateAttr(),
      getDropoutStreamAttr());
  operandGrads.append(grads->result_begin(), grads->result_end());
  // No gradient for the ids and the noise key.
  operandGrads.append(getNumOperands() - 3, Value());
  return success();
}
