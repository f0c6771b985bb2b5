//===- FuseExpertGather.cpp - the MoE dispatch fused into the experts -----===//
//
// On cuda the experts read the token rows through the slot tokens in their
// operand loads, so the dispatched copy [slots, d] of a MoE layer's tokens
// need not exist (Passes.td, docs/runtime.md).
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"
#include "runtime/support/TargetInfo.h"

#include "mlir/IR/Builders.h"

namespace mixer {
#define GEN_PASS_DEF_MIXRTFUSEEXPERTGATHER
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using mixer::rt::AllocOp;
using mixer::rt::KernelOp;
using mixer::rt::ViewOp;

namespace {

/// The buffer `value` is (a view of).
Value storageOf(Value value) {
  while (auto view = value.getDefiningOp<ViewOp>())
    value = view.getSource();
  return value;
}

bool isExperts(KernelOp kernel) {
  return kernel.getKernel() == mixer::Kernel::Experts ||
         kernel.getKernel() == mixer::Kernel::ExpertsGrad;
}

/// The experts and experts_grad steps that can read the token rows of
/// `dispatch` instead of its result: every other use of the result is
/// `dispatch` writing it, each of them reads the result as its first operand
/// only, with the dispatch's tokens, and does not gather already. Empty when
/// anything else reads the result, which then must exist.
SmallVector<KernelOp> gatheringUsers(KernelOp dispatch) {
  Value rows = dispatch.getOutputs()[0], tokens = dispatch.getInputs()[1];
  if (!rows.getDefiningOp<AllocOp>())
    return {};
  SmallVector<KernelOp> users;
  for (OpOperand &use : rows.getUses()) {
    Operation *owner = use.getOwner();
    if (owner == dispatch.getOperation())
      continue;
    auto kernel = dyn_cast<KernelOp>(owner);
    if (!kernel || !isExperts(kernel) ||
        use.getOperandNumber() != kernel.getInputs().getBeginOperandIndex() ||
        kernel.getInputs()[1] != tokens || kernel.getParams().get("gather"))
      return {};
    if (!llvm::is_contained(users, kernel))
      users.push_back(kernel);
  }
  return users;
}

/// Whether a kernel after `dispatch` writes the storage of its token rows
/// (an in-place update), so that later reads would not see the rows it
/// copied.
bool rowsChangeLater(KernelOp dispatch) {
  Value source = storageOf(dispatch.getInputs()[0]);
  for (Operation *op = dispatch->getNextNode(); op; op = op->getNextNode())
    if (auto kernel = dyn_cast<KernelOp>(op))
      for (Value output : kernel.getOutputs())
        if (storageOf(output) == source)
          return true;
  return false;
}

struct FuseExpertGatherPass
    : mixer::impl::MixrtFuseExpertGatherBase<FuseExpertGatherPass> {
  using MixrtFuseExpertGatherBase::MixrtFuseExpertGatherBase;

  void runOnOperation() override {
    const mixer::TargetInfo *info = mixer::findTarget(target);
    if (!info || !info->expertsGather)
      return;
    SmallVector<KernelOp> dispatches;
    getOperation().walk([&](KernelOp kernel) {
      if (kernel.getKernel() == mixer::Kernel::Dispatch)
        dispatches.push_back(kernel);
    });
    Builder builder(&getContext());
    for (KernelOp dispatch : dispatches) {
      Value x = dispatch.getInputs()[0], rows = dispatch.getOutputs()[0];
      SmallVector<KernelOp> users = gatheringUsers(dispatch);
      // The experts read x in the element type they would have read rows in.
      if (users.empty() ||
          cast<MemRefType>(x.getType()).getElementType() !=
              cast<MemRefType>(rows.getType()).getElementType() ||
          rowsChangeLater(dispatch))
        continue;
      for (KernelOp kernel : users) {
        kernel.getInputsMutable()[0].set(x);
        NamedAttrList params(kernel.getParams());
        params.set("gather", builder.getBoolAttr(true));
        kernel.setParamsAttr(params.getDictionary(&getContext()));
        kernel->setLoc(
            builder.getFusedLoc({kernel.getLoc(), dispatch.getLoc()}));
      }
      Operation *alloc = rows.getDefiningOp();
      dispatch.erase();
      alloc->erase();
    }
  }
};

} // namespace
