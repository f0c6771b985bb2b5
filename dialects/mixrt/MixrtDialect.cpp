//===- MixrtDialect.cpp - runtime-level dialect ---------------------------===//

#include "dialects/mixrt/MixrtDialect.h"
#include "runtime/support/PlanFormat.h"

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

LogicalResult AllocOp::verify() {
  if (auto offset = getOffset();
      offset && *offset % mixer::kArenaAlignment != 0)
    return emitOpError() << "offset " << *offset << " is not a multiple of "
                         << mixer::kArenaAlignment;
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

/// Whether `value` is a step attribute of `attribute`'s type.
static bool hasKernelType(Attribute value,
                          const mixer::KernelAttribute &attribute) {
  switch (attribute.type) {
  case mixer::AttrType::Bool:
    return isa<BoolAttr>(value);
  case mixer::AttrType::Int: {
    auto integer = dyn_cast<IntegerAttr>(value);
    return integer && integer.getType().isSignlessInteger(64);
  }
  case mixer::AttrType::Real: {
    auto real = dyn_cast<FloatAttr>(value);
    return real && real.getType().isF64();
  }
  case mixer::AttrType::String: {
    auto string = dyn_cast<StringAttr>(value);
    return string && attribute.allows(string.getValue());
  }
  }
  return false;
}

/// The attribute type `attribute` needs, for messages.
static std::string describeKernelType(const mixer::KernelAttribute &attribute) {
  switch (attribute.type) {
  case mixer::AttrType::Bool:
    return "a bool";
  case mixer::AttrType::Int:
    return "an i64";
  case mixer::AttrType::Real:
    return "an f64";
  case mixer::AttrType::String:
    break;
  }
  std::string text = "one of";
  for (std::string_view value : *attribute.values)
    text += " \"" + std::string(value) + "\"";
  return text;
}

LogicalResult KernelOp::verify() {
  const mixer::KernelInfo *info = mixer::findKernel(getCallee());
  if (!info)
    return emitOpError() << "unknown kernel '" << getCallee() << "'";
  size_t numOperands = getInputs().size();
  bool operandsFit = info->isVariadic() ? numOperands >= 1
                                        : numOperands == info->operands.size();
  if (!operandsFit || getOutputs().size() != info->results.size()) {
    InFlightDiagnostic diag = emitOpError()
                              << "kernel '" << getCallee() << "' takes ";
    if (info->isVariadic())
      diag << "one or more";
    else
      diag << info->operands.size();
    return diag << " operands and " << info->results.size() << " results, got "
                << getInputs().size() << " and " << getOutputs().size();
  }
  for (auto [index, input] : llvm::enumerate(getInputs()))
    if (input.getDefiningOp<NoneOp>() && !info->operand(index).optional)
      return emitOpError() << "kernel '" << getCallee() << "' needs operand "
                           << index << " (" << info->operand(index).name
                           << "), which is mixrt.none";
  for (NamedAttribute attr : getParams()) {
    const mixer::KernelAttribute *attribute =
        info->findAttribute(attr.getName().strref());
    if (!attribute)
      return emitOpError() << "kernel '" << getCallee()
                           << "' has no attribute '"
                           << attr.getName().getValue() << "'";
    if (!hasKernelType(attr.getValue(), *attribute))
      return emitOpError() << "kernel '" << getCallee() << "' attribute '"
                           << attr.getName().getValue() << "' must be "
                           << describeKernelType(*attribute) << ", not "
                           << attr.getValue();
  }
  for (const mixer::KernelAttribute &attribute : info->attributes)
    if (!attribute.optional && !getParams().get(attribute.name))
      return emitOpError() << "kernel '" << getCallee()
                           << "' needs the attribute '" << attribute.name
                           << "'";
  // The state results of a kernel that updates parameters or optimizer
  // state are the storage the function's arguments are bound to, never an
  // arena buffer; every other result is in the arena and leaves the
  // arguments alone.
  for (auto [index, output] : llvm::enumerate(getOutputs())) {
    bool argument = isa<BlockArgument>(output);
    Value storage = output;
    while (auto view = storage.getDefiningOp<ViewOp>())
      storage = view.getSource();
    bool state = info->result(index).state;
    if (state && !argument)
      return emitOpError() << "kernel '" << getCallee()
                           << "' updates parameters or state in place: its "
                              "result "
                           << index << " must be a function argument";
    if (!state && isa<BlockArgument>(storage))
      return emitOpError() << "kernel '" << getCallee()
                           << "' cannot write a function argument"
                           << (info->updatesState()
                                   ? " with result " + std::to_string(index)
                                   : std::string(" (only kernels that update "
                                                 "state do)"));
  }
  return success();
}

#define GET_OP_CLASSES
#include "dialects/mixrt/MixrtOps.cpp.inc"

LogicalResult MixrtDialect::verifyOperationAttribute(Operation *op,
                                                     NamedAttribute attr) {
  StringRef name = attr.getName().getValue();
  if (name == kFlopsAttr) {
    if (!isa<FloatAttr>(attr.getValue()))
      return op->emitError() << "'" << name << "' must be a float";
    return success();
  }
  if (name == kArenaBytesAttr) {
    if (!isa<IntegerAttr>(attr.getValue()))
      return op->emitError() << "'" << name << "' must be an integer";
    return success();
  }
  return success();
}
