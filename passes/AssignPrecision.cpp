//===- AssignPrecision.cpp - activation buffers in the plan's precision ---===//
//
// Decides, per arena buffer, whether it holds an activation (stored in the
// plan's precision) or a value that stays fp32, from the kernels that write
// and read it: the result precisions and fp32 operands of
// runtime/support/Kernels.def (Passes.td, docs/runtime.md). On a target whose
// TargetInfo lists its bf16 kernels (the CPU), those kernels' steps are
// marked to compute in bf16 and only the buffers between two of them are
// stored in bf16.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"
#include "runtime/support/TargetInfo.h"

#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/DenseSet.h"

namespace mixer {
#define GEN_PASS_DEF_MIXRTASSIGNPRECISION
#include "passes/Passes.h.inc"
} // namespace mixer

using namespace mlir;
using mixer::KernelInfo;
using mixer::ResultPrecision;
using mixer::rt::AllocOp;
using mixer::rt::KernelOp;
using mixer::rt::NoneOp;
using mixer::rt::ViewOp;

namespace {

/// The arena buffer `value` lives in (through views), or null.
AllocOp storageOf(Value value) {
  while (auto view = value.getDefiningOp<ViewOp>())
    value = view.getSource();
  return value.getDefiningOp<AllocOp>();
}

/// Whether `value` is an f32 tensor (not a scalar, not an absent operand).
bool isFloatBuffer(Value value) {
  auto type = cast<MemRefType>(value.getType());
  return type.getElementType().isF32() && type.getRank() > 0 &&
         !value.getDefiningOp<NoneOp>();
}

class PrecisionAssignment {
public:
  explicit PrecisionAssignment(func::FuncOp func) : func(func) {
    func.walk([&](KernelOp kernel) {
      kernels.push_back(kernel);
      for (auto [index, output] : llvm::enumerate(kernel.getOutputs()))
        if (AllocOp alloc = storageOf(output))
          writer[alloc] = {kernel,
                           kernel.getKernelInfo().result(index).precision};
    });
  }

  /// Chooses the bf16 buffers and retypes them, their views and the
  /// function's results; on a target that marks its bf16 products, marks
  /// them and keeps in bf16 only the buffers between two such kernels.
  void run(const mixer::TargetInfo &target);

private:
  /// The buffers the kernels would store in bf16 given the fp32 demands
  /// found so far.
  llvm::DenseSet<Operation *> candidates() const;
  /// Adds the buffers that must be fp32 for the kernels reading them;
  /// returns whether any was new.
  bool addDemands(const llvm::DenseSet<Operation *> &lowered);
  void demand(Value operand, const llvm::DenseSet<Operation *> &lowered,
              bool &changed);
  void retype(const llvm::DenseSet<Operation *> &lowered);
  /// Marks the steps of `target`'s bf16 kernels whose results are
  /// activations (`bf16 = true`) and returns the buffers of `lowered` that
  /// only such steps write and read, and that the function does not return.
  llvm::DenseSet<Operation *>
  markProducts(const mixer::TargetInfo &target,
               const llvm::DenseSet<Operation *> &lowered);

  /// A kernel writing a buffer, and the precision of the result that does.
  struct Write {
    KernelOp kernel;
    ResultPrecision precision = ResultPrecision::Fp32;
  };

  func::FuncOp func;
  SmallVector<KernelOp> kernels;
  /// The last write of each buffer.
  DenseMap<Operation *, Write> writer;
  llvm::DenseSet<Operation *> fp32;
};

llvm::DenseSet<Operation *> PrecisionAssignment::candidates() const {
  llvm::DenseSet<Operation *> lowered;
  auto isLowered = [&](Value value) {
    AllocOp alloc = storageOf(value);
    return alloc && lowered.contains(alloc);
  };
  // Program order: a follower sees the decisions about its operands.
  for (KernelOp kernel : kernels) {
    const KernelInfo &info = kernel.getKernelInfo();
    bool operandsLowered = llvm::all_of(kernel.getInputs(), [&](Value in) {
      return !isFloatBuffer(in) || isLowered(in);
    });
    for (auto [index, output] : llvm::enumerate(kernel.getOutputs())) {
      AllocOp alloc = storageOf(output);
      if (!alloc || !isFloatBuffer(output) || fp32.contains(alloc))
        continue;
      ResultPrecision precision = info.result(index).precision;
      if (precision == ResultPrecision::Activation ||
          (precision == ResultPrecision::FollowsOperands && operandsLowered))
        lowered.insert(alloc);
    }
  }
  return lowered;
}

void PrecisionAssignment::demand(Value operand,
                                 const llvm::DenseSet<Operation *> &lowered,
                                 bool &changed) {
  AllocOp alloc = storageOf(operand);
  if (!alloc || !lowered.contains(alloc) || !fp32.insert(alloc).second)
    return;
  changed = true;
  // An elementwise chain before an fp32 reader runs in fp32 back to the
  // producer that starts it.
  Write write = writer.lookup(alloc);
  if (write.precision == ResultPrecision::FollowsOperands)
    for (Value in : write.kernel.getInputs())
      demand(in, lowered, changed);
}

bool PrecisionAssignment::addDemands(
    const llvm::DenseSet<Operation *> &lowered) {
  bool changed = false;
  for (KernelOp kernel : kernels)
    for (auto [index, operand] : llvm::enumerate(kernel.getInputs()))
      if (kernel.getKernelInfo().operand(index).fp32)
        demand(operand, lowered, changed);
  return changed;
}

void PrecisionAssignment::retype(const llvm::DenseSet<Operation *> &lowered) {
  Type bf16 = BFloat16Type::get(func.getContext());
  auto lower = [&](Value value) {
    auto type = cast<MemRefType>(value.getType());
    value.setType(MemRefType::get(type.getShape(), bf16));
  };
  func.walk([&](Operation *op) {
    if (isa<AllocOp, ViewOp>(op) &&
        lowered.contains(storageOf(op->getResult(0))))
      lower(op->getResult(0));
  });
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  func.setType(FunctionType::get(func.getContext(),
                                 func.getBody().getArgumentTypes(),
                                 ret.getOperandTypes()));
}

llvm::DenseSet<Operation *>
PrecisionAssignment::markProducts(const mixer::TargetInfo &target,
                                  const llvm::DenseSet<Operation *> &lowered) {
  llvm::DenseSet<Operation *> kept = lowered;
  auto keepOnlyIf = [&](Value value, bool ok) {
    if (AllocOp alloc = storageOf(value); alloc && !ok)
      kept.erase(alloc);
  };
  for (KernelOp kernel : kernels) {
    bool takesBf16 = target.takesBf16(kernel.getCallee());
    for (Value in : kernel.getInputs())
      keepOnlyIf(in, takesBf16);
    for (Value out : kernel.getOutputs()) {
      keepOnlyIf(out, takesBf16);
      // The router's product stays fp32 (its logits are never lowered).
      AllocOp alloc = storageOf(out);
      if (takesBf16 && alloc && lowered.contains(alloc)) {
        NamedAttrList params(kernel.getParams());
        params.set("bf16", BoolAttr::get(func.getContext(), true));
        kernel.setParamsAttr(params.getDictionary(func.getContext()));
      }
    }
  }
  // Outputs reach the user in fp32.
  auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  for (Value result : ret.getOperands())
    keepOnlyIf(result, false);
  return kept;
}

void PrecisionAssignment::run(const mixer::TargetInfo &target) {
  // fp32 demands only grow, so this reaches a fixed point.
  llvm::DenseSet<Operation *> lowered = candidates();
  while (addDemands(lowered))
    lowered = candidates();
  if (target.bf16Kernels.size() != 0)
    lowered = markProducts(target, lowered);
  retype(lowered);
}

struct AssignPrecisionPass
    : mixer::impl::MixrtAssignPrecisionBase<AssignPrecisionPass> {
  using MixrtAssignPrecisionBase::MixrtAssignPrecisionBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (precision != "fp32" && precision != "bf16") {
      module.emitError() << "unknown precision '" << precision
                         << "' (expected fp32 or bf16)";
      return signalPassFailure();
    }
    if (precision == "fp32")
      return;
    for (auto func : module.getOps<func::FuncOp>()) {
      const mixer::TargetInfo *info = mixer::findTarget(target);
      if (!info || !info->bf16) {
        func.emitError() << "precision bf16 is not supported by target '"
                         << target << "'";
        return signalPassFailure();
      }
      PrecisionAssignment(func).run(*info);
    }
  }
};

} // namespace
