//===- MixrtDialect.cpp - runtime-level dialect ---------------------------===//

#include "dialects/mixrt/MixrtDialect.h"
#include "runtime/support/KernelSignatures.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mixer::rt;

#include "dialects/mixrt/MixrtDialect.cpp.inc"

void MixrtDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/mixrt/MixrtOps.cpp.inc"
      >();
}

/// Arena offsets are aligned for full-width vector loads.
static constexpr int64_t kArenaAlignment = 64;

LogicalResult AllocOp::verify() {
  if (auto offset = getOffset(); offset && *offset % kArenaAlignment != 0)
    return emitOpError() << "offset " << *offset << " is not a multiple of "
                         << kArenaAlignment;
  return success();
}

LogicalResult ViewOp::verify() {
  auto source = cast<MemRefType>(getSource().getType());
  auto result = cast<MemRefType>(getResult().getType());
  if (source.getElementType() != result.getElementType())
    return emitOpError("element type must not change");
  if (source.getNumElements() != result.getNumElements())
    return emitOpError() << "cannot view " << source.getNumElements()
                         << " elements as " << result.getNumElements();
  return success();
}

LogicalResult KernelOp::verify() {
  const mixer::KernelSignature *signature =
      mixer::findKernelSignature(getCallee().str());
  if (!signature)
    return emitOpError() << "unknown kernel '" << getCallee() << "'";
  int numOperands = static_cast<int>(getInputs().size());
  bool operandsFit = signature->numOperands == mixer::kVariadic
                         ? numOperands >= 1
                         : numOperands == signature->numOperands;
  if (!operandsFit ||
      static_cast<int>(getOutputs().size()) != signature->numResults) {
    InFlightDiagnostic diag = emitOpError()
                              << "kernel '" << getCallee() << "' takes ";
    if (signature->numOperands == mixer::kVariadic)
      diag << "one or more";
    else
      diag << signature->numOperands;
    return diag << " operands and " << signature->numResults << " results, got "
                << getInputs().size() << " and " << getOutputs().size();
  }
  for (NamedAttribute attr : getParams()) {
    if (!signature->hasAttribute(attr.getName().strref()))
      return emitOpError() << "kernel '" << getCallee()
                           << "' has no attribute '"
                           << attr.getName().getValue() << "'";
  }
  // The state results of a kernel that updates parameters or optimizer
  // state are the storage the function's arguments are bound to, never an
  // arena buffer; every other result is in the arena and leaves the
  // arguments alone.
  for (auto [index, output] : llvm::enumerate(getOutputs())) {
    bool argument = isa<BlockArgument>(output);
    Value storage = output;
    while (auto view = storage.getDefiningOp<ViewOp>())
      storage = view.getSource();
    bool state = signature->isStateResult(index);
    if (state && !argument)
      return emitOpError() << "kernel '" << getCallee()
                           << "' updates parameters or state in place: its "
                              "result "
                           << index << " must be a function argument";
    if (!state && isa<BlockArgument>(storage))
      return emitOpError() << "kernel '" << getCallee()
                           << "' cannot write a function argument"
                           << (signature->updatesState()
                                   ? " with result " + std::to_string(index)
                                   : std::string(" (only kernels that update "
                                                 "state do)"));
  }
  return success();
}

#define GET_OP_CLASSES
#include "dialects/mixrt/MixrtOps.cpp.inc"
