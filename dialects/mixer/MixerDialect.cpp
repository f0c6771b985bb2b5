//===- MixerDialect.cpp - mixer dialect registration ----------------------===//

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixer/VerifyUtils.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"

#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mixer::graph;

#include "dialects/mixer/GradientInterface.cpp.inc"
#include "dialects/mixer/KernelInterface.cpp.inc"
#include "dialects/mixer/MixerDialect.cpp.inc"
#include "dialects/mixer/MixerEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "dialects/mixer/MixerAttrs.cpp.inc"

void MixerDialect::initialize() {
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dialects/mixer/MixerAttrs.cpp.inc"
      >();
  addOperations<
#define GET_OP_LIST
#include "dialects/mixer/MixerOps.cpp.inc"
      >();
}

static std::string formatShape(llvm::ArrayRef<int64_t> shape) {
  std::string text = "[";
  llvm::raw_string_ostream os(text);
  llvm::interleaveComma(shape, os);
  os << "]";
  return text;
}

LogicalResult mixer::graph::expectShape(Operation *op, Value value,
                                        llvm::ArrayRef<int64_t> expected,
                                        llvm::StringRef what) {
  llvm::ArrayRef<int64_t> actual = shapeOf(value);
  if (actual == expected)
    return success();
  return op->emitOpError() << what << " must have shape "
                           << formatShape(expected) << " but has "
                           << formatShape(actual);
}

LogicalResult mixer::graph::expectRank(Operation *op, Value value, int64_t rank,
                                       llvm::StringRef what) {
  int64_t actual = shapeOf(value).size();
  if (actual == rank)
    return success();
  return op->emitOpError() << what << " must have rank " << rank
                           << " but has rank " << actual;
}

#define GET_OP_CLASSES
#include "dialects/mixer/MixerOps.cpp.inc"
