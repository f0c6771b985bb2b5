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
      failed(expectShape(*this, getIds(), {q[0], q[1]}, "ids")))
    return failure();
  return expectShape(*this, getResult(), q, "result");
}
