//===- CountMixerOps.cpp - an out-of-tree pass loaded into mixer-opt ------===//
//
// A pass plugin: built as a shared library that links nothing of MLIR
// statically (the host tool provides it), loaded with
//   mixer-opt --load-pass-plugin=libMixerCountOpsPlugin.so --mixer-count-ops
// It works on operations generically (by name), so it needs none of mixer's
// C++ headers; it records how many ops of each mixer kind every function
// has, as a `mixer.op_counts` dictionary attribute.
//
//===----------------------------------------------------------------------===//

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Tools/Plugins/PassPlugin.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Config/llvm-config.h"

#include <map>

using namespace mlir;

namespace {

struct CountMixerOpsPass
    : PassWrapper<CountMixerOpsPass, OperationPass<func::FuncOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(CountMixerOpsPass)

  StringRef getArgument() const override { return "mixer-count-ops"; }
  StringRef getDescription() const override {
    return "Record how many mixer ops of each kind a function has";
  }

  void runOnOperation() override {
    // Sorted by name so the attribute prints the same every time.
    std::map<std::string, int64_t> counts;
    getOperation().walk([&](Operation *op) {
      if (op->getName().getDialectNamespace() == "mixer")
        ++counts[op->getName().stripDialect().str()];
    });
    Builder builder(&getContext());
    SmallVector<NamedAttribute> entries;
    for (const auto &[name, count] : counts)
      entries.push_back(
          builder.getNamedAttr(name, builder.getI64IntegerAttr(count)));
    getOperation()->setAttr("mixer.op_counts",
                            builder.getDictionaryAttr(entries));
  }
};

} // namespace

extern "C" LLVM_ATTRIBUTE_WEAK PassPluginLibraryInfo mlirGetPassPluginInfo() {
  return {MLIR_PLUGIN_API_VERSION, "MixerCountOps", LLVM_VERSION_STRING,
          [] { PassRegistration<CountMixerOpsPass>(); }};
}
