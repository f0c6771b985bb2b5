//===- mixer-opt.cpp - run mixer passes on MLIR files ---------------------===//
//
// The standard MLIR driver with the mixer and mixrt dialects, every mixer pass
// and the mixer-pipeline pipeline registered, and the passes and pipeline
// extensions of the plugins `--load-pass-plugin` names.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  // Before MlirOptMain, which would load a plugin while parsing, too late for
  // its passes to become flags, and go on without one that fails to load.
  if (llvm::Error error = mixer::loadPassPlugins(argc, argv)) {
    llvm::errs() << "mixer-opt: " << llvm::toString(std::move(error)) << "\n";
    return 1;
  }
  mixer::registerMixerPassesAndPipelines();
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  mlir::DialectRegistry registry;
  mixer::registerMixerDialects(registry);
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "mixer optimizer driver\n", registry));
}
