//===- Collective.cpp - collective op verifiers and gradients -------------===//

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixer/VerifyUtils.h"

#include "mlir/IR/BuiltinOps.h"

using namespace mlir;
using namespace mixer::graph;

int64_t Mesh::groupSize(StringRef group) const {
  if (group == kExpertGroup)
    return ep;
  if (group == kExpertDataGroup)
    return dp;
  return world();
}

Mesh mixer::graph::meshOf(Operation *op) {
  auto module =
      isa<ModuleOp>(op) ? cast<ModuleOp>(op) : op->getParentOfType<ModuleOp>();
  Mesh mesh;
  auto recorded =
      module ? module->getAttrOfType<DictionaryAttr>(kMeshAttr) : nullptr;
  if (!recorded)
    return mesh;
  auto read = [&](StringRef name, int64_t &value) {
    if (auto size = recorded.getAs<IntegerAttr>(name))
      value = size.getInt();
  };
  read("dp", mesh.dp);
  read("ep", mesh.ep);
  return mesh;
}

namespace {

/// Checks `group` against the plan kernel's groups and returns its size in
/// the module's mesh.
FailureOr<int64_t> verifyGroup(Operation *op, StringRef group) {
  const mixer::KernelAttribute *groups =
      mixer::kernelInfo(mixer::Kernel::AllToAll).findAttribute("group");
  if (!groups->allows(group)) {
    std::string names;
    for (std::string_view name : *groups->values)
      names += (names.empty() ? "" : ", ") + std::string(name);
    return op->emitOpError()
           << "group must be one of " << names << ", got '" << group << "'";
  }
  return meshOf(op).groupSize(group);
}

/// Checks offsets I32[blocks + 1] with blocks a positive multiple of
/// `multiple`; returns the blocks.
FailureOr<int64_t> verifyOffsets(Operation *op, Value offsets, int64_t multiple,
                                 StringRef what) {
  if (failed(expectRank(op, offsets, 1, what)))
    return failure();
  int64_t blocks = shapeOf(offsets)[0] - 1;
  if (blocks < 1 || blocks % multiple != 0)
    return op->emitOpError()
           << what << " must have k·" << multiple << " + 1 entries, k >= 1, "
           << "but has " << blocks + 1;
  return blocks;
}

/// Checks that `result` has rows of the input's width and element type.
LogicalResult verifyRows(Operation *op, Value input, Value result) {
  if (shapeOf(input).empty())
    return op->emitOpError("input must have at least one dimension");
  auto in = cast<RankedTensorType>(input.getType());
  auto out = cast<RankedTensorType>(result.getType());
  if (in.getElementType() != out.getElementType() ||
      in.getShape().drop_front() != out.getShape().drop_front())
    return op->emitOpError()
           << "result must hold rows of the input's width and element type";
  return success();
}

} // namespace

LogicalResult AllToAllOp::verify() {
  FailureOr<int64_t> size = verifyGroup(*this, getGroup());
  if (failed(size) || failed(verifyRows(*this, getInput(), getResult())))
    return failure();
  if (shapeOf(getInput())[0] % *size != 0)
    return emitOpError() << "input rows (" << shapeOf(getInput())[0]
                         << ") must divide into the " << *size
                         << " ranks of group '" << getGroup() << "'";
  return success();
}

LogicalResult AllToAllVOp::verify() {
  FailureOr<int64_t> size = verifyGroup(*this, getGroup());
  if (failed(size) || failed(verifyRows(*this, getInput(), getResult())) ||
      failed(verifyOffsets(*this, getOffsets(), *size, "offsets")))
    return failure();
  return expectShape(*this, getReceivedOffsets(), shapeOf(getOffsets()),
                     "received_offsets");
}

LogicalResult AllReduceOp::verify() { return verifyGroup(*this, getGroup()); }

LogicalResult PermuteBlocksOp::verify() {
  int64_t outer = getOuter(), inner = getInner();
  if (failed(verifyRows(*this, getInput(), getResult())) ||
      failed(expectShape(*this, getResult(), shapeOf(getInput()), "result")) ||
      failed(
          expectShape(*this, getOffsets(), {outer * inner + 1}, "offsets")) ||
      failed(expectShape(*this, getPermutedOffsets(), {outer * inner + 1},
                         "permuted_offsets")))
    return failure();
  return expectShape(*this, getGroupOffsets(), {inner + 1}, "group_offsets");
}

//===----------------------------------------------------------------------===//
// Gradients: every collective is linear; its transpose moves the gradient
// back the way the data came.
//===----------------------------------------------------------------------===//

LogicalResult AllToAllOp::buildGradients(OpBuilder &builder,
                                         ValueRange resultGrads,
                                         SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(
      AllToAllOp::create(builder, getLoc(), resultGrads[0], getGroupAttr()));
  return success();
}

LogicalResult
AllToAllVOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                            SmallVectorImpl<Value> &operandGrads) {
  Value grad = resultGrads[0];
  if (grad)
    grad = AllToAllVOp::create(builder, getLoc(), getInput().getType(),
                               getOffsets().getType(), grad,
                               getReceivedOffsets(), getGroupAttr())
               .getResult();
  operandGrads.append({grad, Value()});
  return success();
}

LogicalResult
AllReduceOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                            SmallVectorImpl<Value> &operandGrads) {
  operandGrads.push_back(
      AllReduceOp::create(builder, getLoc(), resultGrads[0], getGroupAttr()));
  return success();
}

LogicalResult
PermuteBlocksOp::buildGradients(OpBuilder &builder, ValueRange resultGrads,
                                SmallVectorImpl<Value> &operandGrads) {
  Value grad = resultGrads[0];
  if (grad)
    grad = PermuteBlocksOp::create(
               builder, getLoc(), getInput().getType(), getOffsets().getType(),
               RankedTensorType::get({static_cast<int64_t>(getOuter()) + 1},
                                     builder.getI32Type()),
               grad, getPermutedOffsets(), getInnerAttr(), getOuterAttr())
               .getResult();
  operandGrads.append({grad, Value()});
  return success();
}
