//===- Pipelines.cpp - the compilation pipeline ---------------------------===//
//
// The one definition of the pipeline; mixc and mixer-opt both call it.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void mixer::buildPipeline(OpPassManager &pm, const PipelineOptions &options,
                          PipelineStage stopAfter) {
  auto beyondStop = [&](PipelineStage stage) { return stage > stopAfter; };
  if (beyondStop(PipelineStage::Graph))
    return;
  pm.addPass(createMixerVerifyShapes());
  pm.addPass(createCanonicalizerPass());
  pm.addNestedPass<func::FuncOp>(createMixerDecomposeMoe());
  if (options.training) {
    pm.addPass(createMixerAutodiff());
    // Gradients of inputs (token embeddings of the batch, ...) are dead.
    pm.addPass(createCanonicalizerPass());
    if (options.optimizer)
      pm.addPass(createMixerApplyOptimizer());
  }
  if (beyondStop(PipelineStage::Fused))
    return;
  pm.addNestedPass<func::FuncOp>(createMixerFuseRouter());
  pm.addNestedPass<func::FuncOp>(
      createMixerFuseDenseActivation({options.target}));
  pm.addNestedPass<func::FuncOp>(createMixerFuseResidualLayerNorm());
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  if (beyondStop(PipelineStage::Selected))
    return;
  pm.addNestedPass<func::FuncOp>(
      createMixerSelectMixingAlgorithm({options.target, options.precision}));
  if (beyondStop(PipelineStage::Runtime))
    return;
  pm.addPass(createMixerLowerToRuntime());
  pm.addPass(createMixrtAssignPrecision({options.target, options.precision}));
  pm.addNestedPass<func::FuncOp>(createMixrtFuseExpertGather({options.target}));
  if (beyondStop(PipelineStage::Planned))
    return;
  pm.addPass(createMixrtPlanMemory());
}

void mixer::registerMixerPassesAndPipelines() {
  registerMixerPasses();
  PassPipelineRegistration<PipelineOptions>(
      "mixer-pipeline",
      "The full mixer pipeline: verify, decompose, fuse, select algorithms, "
      "lower to mixrt and plan memory",
      [](OpPassManager &pm, const PipelineOptions &options) {
        buildPipeline(pm, options);
      });
}
