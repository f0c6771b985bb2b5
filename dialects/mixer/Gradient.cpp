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

double DenseWeightGradOp::getFlops() {
  return 2.0 * cast<ShapedType>(getInput().getType()).getNumElements() *
         shapeOf(getResultGrad()).back();
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

double LinearMixGradOp::getFlops() {
  ArrayRef<int64_t> shape = shapeOf(getInput());
  return 4.0 * shape[0] *
         (shape[1] * shape[2] * shape[2] + shape[1] * shape[1] * shape[2]);
}

LogicalResult EmbedGradOp::verify() {
  if (failed(expectRank(*this, getIds(), 2, "ids")) ||
      failed(expectShape(*this, getTypeIds(), shapeOf(getIds()), "type_ids")) ||
      failed(expectRank(*this, getResultGrad(), 3, "result_grad")) ||
      failed(expectRank(*this, getWordGrad(), 2, "word_grad")) ||
      failed(expectRank(*this, getPositionGrad(), 3, "position_grad")) ||
      failed(expectRank(*this, getTypeGrad(), 2, "type_grad")))
    return failure();
  ArrayRef<int64_t> dy = shapeOf(getResultGrad());
  if (dy[0] != shapeOf(getIds())[0] || dy[1] != shapeOf(getIds())[1])
    return emitOpError("result_grad must be [B, S, width] for ids [B, S]");
  int64_t width = dy[2];
  if (shapeOf(getWordGrad())[1] != width ||
      shapeOf(getTypeGrad())[1] != width ||
      shapeOf(getPositionGrad())[2] != width ||
      shapeOf(getPositionGrad())[0] != 1)
    return emitOpError() << "gradient tables must have width " << width;
  if (shapeOf(getPositionGrad())[1] < dy[1])
    return emitOpError() << "position_grad has "
                         << shapeOf(getPositionGrad())[1]
                         << " rows but the sequence length is " << dy[1];
  return success();
}

LogicalResult AttentionGradOp::verify() {
  if (failed(expectRank(*this, getQuery(), 3, "query")))
    return failure();
  ArrayRef<int64_t> q = shapeOf(getQuery());
  if (q[2] != static_cast<int64_t>(getNumHeads() * getHeadDim()))
    return emitOpError() << "query width " << q[2] << " must equal num_heads ("
                         << getNumHeads() << ") x head_dim (" << getHeadDim()
                         << ")";
  for (auto [value, name] : {std::pair{getKey(), "key"},
                             {getValue(), "value"},
                             {getResultGrad(), "result_grad"},
                             {getQueryGrad(), "query_grad"},
                             {getKeyGrad(), "key_grad"},
                             {getValueGrad(), "value_grad"}})
    if (failed(expectShape(*this, value, q, name)))
      return failure();
  if (failed(expectShape(*this, getIds(), {q[0], q[1]}, "ids")))
    return failure();
  return expectAttentionDropout(*this, getSeed(), getStep(), getDropoutRate(),
                                getDropoutStream());
}

double AttentionGradOp::getFlops() {
  ArrayRef<int64_t> shape = shapeOf(getQuery());
  return 8.0 * shape[0] * shape[1] * shape[1] * shape[2];
}

LogicalResult StructuredMixGradOp::verify() {
  if (failed(expectRank(*this, getInput(), 3, "input")))
    return failure();
  ArrayRef<int64_t> in = shapeOf(getInput());
  int64_t seqLength = getToeplitz() ? 2 * in[1] - 1 : in[1];
  int64_t hiddenLength = getToeplitz() ? 2 * in[2] - 1 : in[2];
  if (failed(expectShape(*this, getResultGrad(), in, "result_grad")) ||
      failed(expectShape(*this, getInputGrad(), in, "input_grad")) ||
      failed(expectShape(*this, getSeqKernel(), {seqLength}, "seq_kernel")) ||
      failed(expectShape(*this, getSeqKernelGrad(), {seqLength},
                         "seq_kernel_grad")) ||
      failed(expectShape(*this, getHiddenKernel(), {hiddenLength},
                         "hidden_kernel")))
    return failure();
  return expectShape(*this, getHiddenKernelGrad(), {hiddenLength},
                     "hidden_kernel_grad");
}

LogicalResult DispatchGradOp::verify() {
  if (failed(expectRank(*this, getResultGrad(), 2, "result_grad")) ||
      failed(expectRank(*this, getResult(), 2, "result")) ||
      failed(expectShape(*this, getTokens(), {shapeOf(getResultGrad())[0]},
                         "tokens")))
    return failure();
  if (shapeOf(getResult())[1] != shapeOf(getResultGrad())[1])
    return emitOpError("result width must equal the slot-row width");
  return success();
}

LogicalResult CombineGradOp::verify() {
  if (failed(expectRank(*this, getInput(), 2, "input")) ||
      failed(expectRank(*this, getResultGrad(), 2, "result_grad")))
    return failure();
  int64_t slots = shapeOf(getInput())[0];
  if (failed(expectShape(*this, getTokens(), {slots}, "tokens")) ||
      failed(expectShape(*this, getGates(), {slots}, "gates")) ||
      failed(expectShape(*this, getInputGrad(), shapeOf(getInput()),
                         "input_grad")) ||
      failed(expectShape(*this, getGatesGrad(), {slots}, "gates_grad")))
    return failure();
  if (shapeOf(getResultGrad())[1] != shapeOf(getInput())[1])
    return emitOpError("result_grad width must equal the slot-row width");
  return success();
}

LogicalResult ExpertsGradOp::verify() {
  if (failed(expectExpertLayout(*this, getOffsets(),
                                getLayout() == ExpertLayout::capacity)) ||
      failed(expectRank(*this, getInput(), 2, "input")) ||
      failed(expectRank(*this, getW1(), 3, "w1")))
    return failure();
  ArrayRef<int64_t> w1 = shapeOf(getW1());
  int64_t experts = w1[0], width = w1[1], hidden = w1[2];
  int64_t slots = shapeOf(getInput())[0];
  if (failed(expectShape(*this, getInput(), {slots, width}, "input")) ||
      failed(expectShape(*this, getTokens(), {slots}, "tokens")) ||
      failed(expectShape(*this, getOffsets(), {experts + 1}, "offsets")) ||
      failed(expectShape(*this, getW2(), {experts, hidden, width}, "w2")) ||
      failed(
          expectShape(*this, getResultGrad(), {slots, width}, "result_grad")) ||
      failed(
          expectShape(*this, getInputGrad(), {slots, width}, "input_grad")) ||
      failed(expectShape(*this, getW1Grad(), w1, "w1_grad")) ||
      failed(expectShape(*this, getB1Grad(), {experts, hidden}, "b1_grad")) ||
      failed(expectShape(*this, getW2Grad(), shapeOf(getW2()), "w2_grad")) ||
      failed(expectShape(*this, getB2Grad(), {experts, width}, "b2_grad")))
    return failure();
  if (getB1())
    return expectShape(*this, getB1(), {experts, hidden}, "b1");
  return success();
}

/// The recomputed up-projection plus four backward products.
double ExpertsGradOp::getFlops() {
  ArrayRef<int64_t> w1 = shapeOf(getW1());
  return 10.0 * shapeOf(getInput())[0] * w1[1] * w1[2];
}

/// The assignment-table operands shared by the router gradients: returns
/// the expert count through `experts`.
static LogicalResult verifyGateGradTable(Operation *op, Value tokens,
                                         Value offsets, Value gatesGrad,
                                         int64_t &experts) {
  if (failed(expectRank(op, tokens, 1, "tokens")) ||
      failed(expectRank(op, offsets, 1, "offsets")) ||
      failed(expectShape(op, gatesGrad, shapeOf(tokens), "gates_grad")))
    return failure();
  experts = shapeOf(offsets)[0] - 1;
  return success();
}

LogicalResult ScatterGateGradOp::verify() {
  int64_t experts = 0;
  if (failed(verifyGateGradTable(*this, getTokens(), getOffsets(),
                                 getGatesGrad(), experts)) ||
      failed(expectRank(*this, getResult(), 2, "result")))
    return failure();
  if (shapeOf(getResult())[1] != experts)
    return emitOpError() << "result must have one column per expert ("
                         << experts << ")";
  return success();
}

LogicalResult RouteGradOp::verify() {
  int64_t experts = 0;
  if (failed(verifyGateGradTable(*this, getTokens(), getOffsets(),
                                 getGatesGrad(), experts)) ||
      failed(expectRank(*this, getLogits(), 2, "logits")) ||
      failed(expectShape(*this, getResult(), shapeOf(getLogits()), "result")))
    return failure();
  if (shapeOf(getLogits())[1] != experts)
    return emitOpError() << "logits must have one column per expert ("
                         << experts << ")";
  return success();
}
