//===- Gradient.cpp - verifiers of the backward-graph ops -----------------===//

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixer/VerifyUtils.h"

using namespace mlir;
using namespace mixer::graph;

/// Number of rows of a [..., C] tensor.
static int64_t leadingRows(Value value) {
  int64_t rows = 1;
  for (int64_t d : shapeOf(value).drop_back())
    rows *= d;
  return rows;
}

LogicalResult DenseWeightGradOp::verify() {
  if (leadingRows(getInput()) != leadingRows(getResultGrad()))
    return emitOpError("input and result_grad must have the same rows");
  int64_t k = shapeOf(getInput()).back(), n = shapeOf(getResultGrad()).back();
  if (getTransposeWeight())
    return expectShape(*this, getResult(), {n, k}, "result");
  return expectShape(*this, getResult(), {k, n}, "result");
}

LogicalResult ReduceRowsOp::verify() {
  if (shapeOf(getInput()).empty())
    return emitOpError("input must have rank >= 1");
  return expectShape(*this, getResult(), {shapeOf(getInput()).back()},
                     "result");
}

LogicalResult LayerNormGradOp::verify() {
  ArrayRef<int64_t> in = shapeOf(getInput());
  if (in.empty())
    return emitOpError("input must have rank >= 1");
  if (failed(expectShape(*this, getResultGrad(), in, "result_grad")) ||
      failed(expectShape(*this, getScale(), {in.back()}, "scale")) ||
      failed(expectShape(*this, getInputGrad(), in, "input_grad")) ||
      failed(expectShape(*this, getScaleGrad(), {in.back()}, "scale_grad")))
    return failure();
  return expectShape(*this, getBiasGrad(), {in.back()}, "bias_grad");
}

LogicalResult TakePositionGradOp::verify() {
  if (failed(expectRank(*this, getResult(), 3, "result")))
    return failure();
  ArrayRef<int64_t> out = shapeOf(getResult());
  if (static_cast<int64_t>(getIndex()) >= out[1])
    return emitOpError() << "position " << getIndex()
                         << " is outside the sequence of length " << out[1];
  return expectShape(*this, getResultGrad(), {out[0], out[2]}, "result_grad");
}

LogicalResult LinearMixGradOp::verify() {
  if (failed(expectRank(*this, getInput(), 3, "input")))
    return failure();
  ArrayRef<int64_t> in = shapeOf(getInput());
  if (failed(expectShape(*this, getResultGrad(), in, "result_grad")) ||
      failed(
          expectShape(*this, getSeqKernel(), {in[1], in[1]}, "seq_kernel")) ||
      failed(expectShape(*this, getHiddenKernel(), {in[2], in[2]},
                         "hidden_kernel")) ||
      failed(expectShape(*this, getInputGrad(), in, "input_grad")) ||
      failed(expectShape(*this, getSeqKernelGrad(), {in[1], in[1]},
                         "seq_kernel_grad")))
    return failure();
  return expectShape(*this, getHiddenKernelGrad(), {in[2], in[2]},
                     "hidden_kernel_grad");
}
