//===- Passes.h - mixer compiler passes and pipelines -----------*- C++ -*-===//

#ifndef MIXER_PASSES_PASSES_H
#define MIXER_PASSES_PASSES_H

#include "dialects/mixer/MixerDialect.h"
#include "dialects/mixrt/MixrtDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassOptions.h"

#include "llvm/Support/Error.h"

#include <functional>
#include <optional>

namespace mixer {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// Named points of the pipeline: where `mixc --emit` stops, where mixc
/// continues IR from, and where plugins add passes (extension points).
enum class PipelineStage {
  Frontend, ///< IR as the frontend built it
  Graph,    ///< verified, canonicalized, MoE decomposed
  Fused,    ///< fusions applied
  Selected, ///< mixing algorithms chosen
  Runtime,  ///< lowered to mixrt
  Planned,  ///< arena offsets assigned (the full pipeline)
};

/// The stage's name as `mixc --emit` spells it ("fused").
llvm::StringRef stringifyPipelineStage(PipelineStage stage);

/// The stage called `name`, if there is one.
std::optional<PipelineStage> symbolizePipelineStage(llvm::StringRef name);

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
  Option<int64_t> dp{*this, "dp",
                     llvm::cl::desc("data-parallel replicas of the mesh"),
                     llvm::cl::init(1)};
  Option<int64_t> ep{*this, "ep",
                     llvm::cl::desc("expert shards of the mesh "
                                    "(mixer-partition-experts)"),
                     llvm::cl::init(1)};
};

/// Builds the pipeline that takes IR from the stage it has reached,
/// `resumeAfter` (none: as the frontend built it), up to and including
/// `stopAfter`. Each stage adds its passes, then those of the extensions
/// registered at it.
void buildPipeline(mlir::OpPassManager &pm, const PipelineOptions &options,
                   PipelineStage stopAfter = PipelineStage::Planned,
                   std::optional<PipelineStage> resumeAfter = std::nullopt);

/// Adds passes to the module-level `pm` at an extension point.
using PipelineExtension = std::function<void(mlir::OpPassManager &pm,
                                             const PipelineOptions &options)>;

/// Makes every pipeline built afterwards (mixc's, mixer-opt's
/// `--mixer-pipeline`) run the passes `extension` adds as soon as the IR
/// reaches `stage`: after the stage's own passes and the extensions registered
/// there before, so `mixc --emit=<stage>` shows their effect. Pass plugins call
/// it from their registration function (docs/passes.md).
void registerPipelineExtension(PipelineStage stage,
                               PipelineExtension extension);

/// Registers every pass and the `mixer-pipeline` pipeline.
void registerMixerPassesAndPipelines();

/// Registers the dialects of mixer IR: mixer, mixrt and func.
void registerMixerDialects(mlir::DialectRegistry &registry);

/// Loads the MLIR pass plugins (`mlirGetPassPluginInfo`) that
/// `--load-pass-plugin=<path>` or `--load-pass-plugin <path>` arguments name,
/// running their registration, and removes those arguments. Tools call it
/// before they parse their command line, so that the plugins' passes are
/// known to it (`--mlir-print-ir-after=<pass>`, mixer-opt's `--<pass>`). The
/// error names the file of a plugin that does not load.
llvm::Error loadPassPlugins(int &argc, char **argv);

/// Records in `module` that it has reached `stage` under `options`, as the
/// module attributes `mixer.stage` and `mixer.pipeline_options`; mixc
/// continues from there.
void recordPipelineStage(mlir::ModuleOp module, PipelineStage stage,
                         const PipelineOptions &options);

/// The stage `module` has reached: runtime, or planned once it has arena
/// offsets, when it holds mixrt ops; else the stage it records; else frontend.
/// Emits an error and fails for IR no stage describes: mixer and mixrt ops
/// mixed, or a recorded stage that is unknown or that the IR has not reached.
mlir::FailureOr<PipelineStage> detectPipelineStage(mlir::ModuleOp module);

/// The pipeline options `module` records, or null if it records none. Emits an
/// error and fails if they do not parse.
mlir::FailureOr<std::unique_ptr<PipelineOptions>>
recordedPipelineOptions(mlir::ModuleOp module);

} // namespace mixer

#endif // MIXER_PASSES_PASSES_H
