//===- Mixing.cpp - token-mixing op verifiers -----------------------------===//

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixer/VerifyUtils.h"

using namespace mlir;
using namespace mixer::graph;

/// Mixing ops map [B, S, D] to the same shape.
static LogicalResult verifyMixingInput(Operation *op, Value input,
                                       Value result) {
  if (failed(expectRank(op, input, 3, "input")))
    return failure();
  return expectShape(op, result, shapeOf(input), "result");
}

LogicalResult LinearMixOp::verify() {
  if (failed(verifyMixingInput(*this, getInput(), getResult())))
    return failure();
  int64_t seq = shapeOf(getInput())[1], width = shapeOf(getInput())[2];
  if (failed(expectShape(*this, getSeqKernel(), {seq, seq}, "seq_kernel")))
    return failure();
  return expectShape(*this, getHiddenKernel(), {width, width}, "hidden_kernel");
}

double LinearMixOp::getFlops() {
  ArrayRef<int64_t> shape = shapeOf(getInput());
  return 2.0 * shape[0] *
         (shape[1] * shape[2] * shape[2] + shape[1] * shape[1] * shape[2]);
}

LogicalResult SpectralMixOp::verify() {
  return verifyMixingInput(*this, getInput(), getResult());
}

LogicalResult StructuredMixOp::verify() {
  if (failed(verifyMixingInput(*this, getInput(), getResult())))
    return failure();
  int64_t seq = shapeOf(getInput())[1], width = shapeOf(getInput())[2];
  // Toeplitz matrices of size n are defined by 2n - 1 diagonals.
  auto kernelLength = [&](int64_t n) { return getToeplitz() ? 2 * n - 1 : n; };
  if (failed(expectShape(*this, getSeqKernel(), {kernelLength(seq)},
                         "seq_kernel")))
    return failure();
  return expectShape(*this, getHiddenKernel(), {kernelLength(width)},
                     "hidden_kernel");
}

//===----------------------------------------------------------------------===//
// Gradients
//===----------------------------------------------------------------------===//

LogicalResult
LinearMixOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                            SmallVectorImpl<Value> &operandGrads) {
  auto grads = LinearMixGradOp::create(
      builder, getLoc(), getInput().getType(), getSeqKernel().getType(),
      getHiddenKernel().getType(), getInput(), getSeqKernel(),
      getHiddenKernel(), resultGrads[0]);
  operandGrads.append(grads->result_begin(), grads->result_end());
  return success();
}

/// Re(F_S X F_D) and its Hartley counterpart are self-adjoint: the DFT and
/// cas matrices are symmetric, so the input gradient is the same mixing
/// applied to the result gradient.
LogicalResult
SpectralMixOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                              SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(SpectralMixOp::create(builder, getLoc(), getType(),
                                               resultGrads[0], getHartleyAttr(),
                                               getAlgorithmAttr()));
  return success();
}

LogicalResult
StructuredMixOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                                SmallVectorImpl<Value> &operandGrads) {
  auto grads = StructuredMixGradOp::create(
      builder, getLoc(), getInput().getType(), getSeqKernel().getType(),
      getHiddenKernel().getType(), getInput(), getSeqKernel(),
      getHiddenKernel(), resultGrads[0], getToeplitzAttr());
  operandGrads.append(grads->result_begin(), grads->result_end());
  return success();
}
