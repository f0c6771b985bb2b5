//===- Embedding.cpp - embedding op verifiers -----------------------------===//

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixer/VerifyUtils.h"

using namespace mlir;
using namespace mixer::graph;

LogicalResult EmbedOp::verify() {
  if (failed(expectRank(*this, getIds(), 2, "ids")) ||
      failed(expectShape(*this, getTypeIds(), shapeOf(getIds()), "type_ids")) ||
      failed(expectRank(*this, getWord(), 2, "word table")) ||
      failed(expectRank(*this, getPosition(), 3, "position table")) ||
      failed(expectRank(*this, getType(), 2, "type table")))
    return failure();
  int64_t batch = shapeOf(getIds())[0], seq = shapeOf(getIds())[1];
  int64_t width = shapeOf(getWord())[1];
  ArrayRef<int64_t> pos = shapeOf(getPosition());
  if (pos[0] != 1 || pos[2] != width)
    return emitOpError() << "position table must be [1, S, " << width
                         << "] (width of the word table)";
  if (pos[1] < seq)
    return emitOpError() << "position table has " << pos[1]
                         << " rows but the sequence length is " << seq;
  if (shapeOf(getType())[1] != width)
    return emitOpError() << "type table width " << shapeOf(getType())[1]
                         << " differs from the word table width " << width;
  return expectShape(*this, getResult(), {batch, seq, width}, "result");
}

LogicalResult EmbedOp::buildGradients(OpBuilder &builder,
                                      ValueRange resultGrads,
                                      SmallVectorImpl<Value> &operandGrads) {
  auto grads = EmbedGradOp::create(builder, getLoc(), getWord().getType(),
                                   getPosition().getType(), getType().getType(),
                                   getIds(), getTypeIds(), resultGrads[0]);
  // Token and type ids are integers: no gradient.
  operandGrads.append({Value(), Value()});
  operandGrads.append(grads->result_begin(), grads->result_end());
  return success();
}
