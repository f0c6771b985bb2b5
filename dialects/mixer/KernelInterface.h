//===- KernelInterface.h - how ops lower to plan kernels --------*- C++ -*-===//
//
// The interfaces of KernelInterface.td, and what the methods that Mixer_Op
// generates for an op with a `kernel` build on.
//
//===----------------------------------------------------------------------===//

#ifndef MIXER_DIALECTS_MIXER_KERNELINTERFACE_H
#define MIXER_DIALECTS_MIXER_KERNELINTERFACE_H

#include "runtime/support/KernelVocabulary.h"

#include "mlir/IR/OpDefinition.h"

#include "llvm/ADT/SmallVector.h"

#include "dialects/mixer/KernelInterface.h.inc"

namespace mixer::graph {

/// The kernel operands of `op`: one per ODS operand (null where an optional
/// one is absent), then null for each optional operand the kernel takes
/// beyond the op's; or all of them for a variadic kernel.
template <typename OpT>
llvm::SmallVector<mlir::Value> kernelOperands(OpT op, unsigned odsOperands) {
  const KernelInfo &info = kernelInfo(OpT::getKernel());
  if (info.isVariadic())
    return llvm::SmallVector<mlir::Value>(op->getOperands());
  llvm::SmallVector<mlir::Value> operands;
  for (unsigned i = 0; i < odsOperands; ++i) {
    mlir::Operation::operand_range range = op.getODSOperands(i);
    operands.push_back(range.empty() ? mlir::Value() : *range.begin());
  }
  operands.resize(info.operands.size());
  return operands;
}

} // namespace mixer::graph

#endif // MIXER_DIALECTS_MIXER_KERNELINTERFACE_H
