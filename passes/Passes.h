//===- Passes.h - mixer compiler passes and pipelines -----------*- C++ -*-===//

#ifndef MIXER_PASSES_PASSES_H
#define MIXER_PASSES_PASSES_H

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixrt/MixrtDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassOptions.h"

namespace mixer {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// Named points of the pipeline where `mixc --emit` can stop.
enum class PipelineStage {
  Frontend, ///< IR as the frontend built it
  Graph,    ///< verified, canonicalized, MoE decomposed
  Fused,    ///< fusions applied
  Selected, ///< mixing algorithms chosen
  Runtime,  ///< lowered to mixrt
  Planned,  ///< arena offsets assigned (the full pipeline)
};

/// Options of the compilation pipeline, shared by mixc and mixer-opt.
struct PipelineOptions : mlir::PassPipelineOptions<PipelineOptions> {
  Option<std::string> target{*this, "target",
                             llvm::cl::desc("target: cpu or cuda"),
                             llvm::cl::init("cpu")};
  Option<std::string> precision{
      *this, "precision",
      llvm::cl::desc("activation precision: fp32, or bf16 (cuda only)"),
      llvm::cl::init("fp32")};
  Option<bool> training{
      *this, "training",
      llvm::cl::desc("differentiate the loss (mixer-autodiff) before fusion"),
      llvm::cl::init(false)};
  Option<bool> optimizer{
      *this, "optimizer",
      llvm::cl::desc("with training: end the step with the AdamW update "
                     "(mixer-apply-optimizer) instead of returning the "
                     "gradients"),
      llvm::cl::init(true)};
};

/// Builds the pipeline from frontend IR up to and including `stopAfter`.
void buildPipeline(mlir::OpPassManager &pm, const PipelineOptions &options,
                   PipelineStage stopAfter = PipelineStage::Planned);

/// Registers every pass and the `mixer-pipeline` pipeline.
void registerMixerPassesAndPipelines();

} // namespace mixer

#endif // MIXER_PASSES_PASSES_H
