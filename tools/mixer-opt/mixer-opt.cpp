//===- mixer-opt.cpp - run mixer passes on MLIR files ---------------------===//
//
// The standard MLIR driver with the mixer and mixrt dialects, every mixer pass
// and the mixer-pipeline pipeline registered.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mixer::registerMixerPassesAndPipelines();
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  mlir::DialectRegistry registry;
  registry.insert<mixer::graph::MixerDialect, mixer::rt::MixrtDialect,
                  mlir::func::FuncDialect>();
  return mlir::asMainReturnCode(
      mlir::MlirOptMain(argc, argv, "mixer optimizer driver\n", registry));
}
