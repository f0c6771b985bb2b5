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

namespace {

/// Whether `attr` is of the type the interface attribute `name` takes, and
/// that type's description; an empty description for an unknown name.
std::pair<bool, StringRef> checkInterfaceAttr(StringRef name, Attribute attr) {
  auto isString = [&] { return isa<StringAttr>(attr); };
  auto isInteger = [&] { return isa<IntegerAttr>(attr); };
  auto isDictionary = [&] { return isa<DictionaryAttr>(attr); };
  auto isStringArray = [&] {
    auto array = dyn_cast<ArrayAttr>(attr);
    return array && llvm::all_of(array, llvm::IsaPred<StringAttr>);
  };
  if (name == kInputAttr || name == kParamAttr || name == kStateAttr ||
      name == kUpdateAttr || name == kModelAttr || name == kStageAttr ||
      name == kPipelineOptionsAttr)
    return {isString(), "a string"};
  if (name == kInitAttr || name == kTrainingAttr || name == kHeadsAttr ||
      name == kShardAttr || name == kMeshAttr)
    return {isDictionary(), "a dictionary"};
  if (name == kOptionalAttr || name == kReplicatedAttr)
    return {isa<UnitAttr>(attr), "a unit attribute"};
  if (name == kOutputsAttr)
    return {isStringArray(), "an array of strings"};
  if (name == kBatchAttr || name == kSeqAttr || name == kPadIdAttr ||
      name == kVocabSizeAttr)
    return {isInteger(), "an integer"};
  return {false, ""};
}

/// Checks `attr`, when it is an interface attribute, for its type and for
/// being one of those allowed at `where`. Other names pass: pass plugins may
/// annotate the IR with attributes of their own.
LogicalResult verifyInterfaceAttr(Operation *op, NamedAttribute attr,
                                  ArrayRef<StringRef> allowed,
                                  StringRef where) {
  StringRef name = attr.getName().getValue();
  auto [ok, expected] = checkInterfaceAttr(name, attr.getValue());
  if (expected.empty())
    return success();
  if (!llvm::is_contained(allowed, name))
    return op->emitError() << "'" << name << "' is not " << where
                           << " attribute";
  if (!ok)
    return op->emitError() << "'" << name << "' must be " << expected;
  return success();
}

} // namespace

LogicalResult MixerDialect::verifyRegionArgAttribute(Operation *op, unsigned,
                                                     unsigned,
                                                     NamedAttribute attr) {
  return verifyInterfaceAttr(op, attr,
                             {kInputAttr, kParamAttr, kStateAttr, kInitAttr,
                              kOptionalAttr, kShardAttr},
                             "an argument");
}

LogicalResult MixerDialect::verifyRegionResultAttribute(Operation *op, unsigned,
                                                        unsigned,
                                                        NamedAttribute attr) {
  return verifyInterfaceAttr(
      op, attr, {kUpdateAttr, kReplicatedAttr, kShardAttr}, "a result");
}

LogicalResult MixerDialect::verifyOperationAttribute(Operation *op,
                                                     NamedAttribute attr) {
  if (auto mesh = dyn_cast<DictionaryAttr>(attr.getValue());
      mesh && attr.getName() == kMeshAttr) {
    for (NamedAttribute entry : mesh) {
      auto size = dyn_cast<IntegerAttr>(entry.getValue());
      if ((entry.getName() != "dp" && entry.getName() != "ep") || !size ||
          size.getInt() < 1)
        return op->emitError()
               << "'" << kMeshAttr << "' holds the positive integers dp and ep";
    }
  }
  return verifyInterfaceAttr(op, attr,
                             {kOutputsAttr, kTrainingAttr, kModelAttr,
                              kBatchAttr, kSeqAttr, kPadIdAttr, kVocabSizeAttr,
                              kHeadsAttr, kStageAttr, kPipelineOptionsAttr,
                              kMeshAttr},
                             "a function or module");
}
