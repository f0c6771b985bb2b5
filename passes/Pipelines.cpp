//===- Pipelines.cpp - the compilation pipeline ---------------------------===//
//
// The one definition of the pipeline, which mixc and mixer-opt both call; its
// extension points, the loading of the plugins that use them, and the record
// of how far a module went, from which mixc continues.
//
//===----------------------------------------------------------------------===//

#include "passes/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Tools/Plugins/PassPlugin.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/ADT/StringSwitch.h"

#include <vector>

using namespace mlir;
using mixer::PipelineStage;

namespace {

/// Passes a plugin adds at a stage.
struct StageExtension {
  PipelineStage stage;
  mixer::PipelineExtension addPasses;
};

/// Every registered extension, in the order registered.
std::vector<StageExtension> &stageExtensions() {
  static std::vector<StageExtension> extensions;
  return extensions;
}

constexpr llvm::StringLiteral kPluginFlag = "load-pass-plugin";

} // namespace

StringRef mixer::stringifyPipelineStage(PipelineStage stage) {
  switch (stage) {
  case PipelineStage::Frontend:
    return "frontend";
  case PipelineStage::Graph:
    return "graph";
  case PipelineStage::Fused:
    return "fused";
  case PipelineStage::Selected:
    return "selected";
  case PipelineStage::Runtime:
    return "runtime";
  case PipelineStage::Planned:
    return "planned";
  }
  llvm_unreachable("unknown pipeline stage");
}

std::optional<PipelineStage> mixer::symbolizePipelineStage(StringRef name) {
  return llvm::StringSwitch<std::optional<PipelineStage>>(name)
      .Case("frontend", PipelineStage::Frontend)
      .Case("graph", PipelineStage::Graph)
      .Case("fused", PipelineStage::Fused)
      .Case("selected", PipelineStage::Selected)
      .Case("runtime", PipelineStage::Runtime)
      .Case("planned", PipelineStage::Planned)
      .Default(std::nullopt);
}

void mixer::buildPipeline(OpPassManager &pm, const PipelineOptions &options,
                          PipelineStage stopAfter,
                          std::optional<PipelineStage> resumeAfter) {
  auto reach = [&](PipelineStage stage, llvm::function_ref<void()> addPasses) {
    if (stage > stopAfter || (resumeAfter && stage <= *resumeAfter))
      return;
    addPasses();
    for (const StageExtension &extension : stageExtensions())
      if (extension.stage == stage)
        extension.addPasses(pm, options);
  };
  // The frontend's own work (building the IR, mixc's output selection) is done
  // before the pass manager runs.
  reach(PipelineStage::Frontend, [] {});
  reach(PipelineStage::Graph, [&] {
    pm.addPass(createMixerVerifyShapes());
    pm.addPass(createCanonicalizerPass());
    pm.addNestedPass<func::FuncOp>(createMixerDecomposeMoe());
    pm.addPass(createMixerPartitionExperts({options.dp, options.ep}));
    if (options.training) {
      pm.addPass(createMixerAutodiff());
      // Gradients of inputs (token embeddings of the batch, ...) are dead.
      pm.addPass(createCanonicalizerPass());
      pm.addPass(createMixerSumOverRanks());
      if (options.optimizer)
        pm.addPass(createMixerApplyOptimizer());
    }
  });
  reach(PipelineStage::Fused, [&] {
    pm.addNestedPass<func::FuncOp>(createMixerFuseRouter());
    pm.addNestedPass<func::FuncOp>(
        createMixerFuseDenseActivation({options.target}));
    pm.addNestedPass<func::FuncOp>(createMixerFuseResidualLayerNorm());
    pm.addPass(createCanonicalizerPass());
    pm.addPass(createCSEPass());
  });
  reach(PipelineStage::Selected, [&] {
    pm.addNestedPass<func::FuncOp>(
        createMixerSelectMixingAlgorithm({options.target, options.precision}));
  });
  reach(PipelineStage::Runtime, [&] {
    pm.addPass(createMixerLowerToRuntime());
    pm.addPass(createMixrtAssignPrecision({options.target, options.precision}));
    pm.addNestedPass<func::FuncOp>(
        createMixrtFuseExpertGather({options.target}));
  });
  reach(PipelineStage::Planned, [&] { pm.addPass(createMixrtPlanMemory()); });
}

void mixer::registerPipelineExtension(PipelineStage stage,
                                      PipelineExtension extension) {
  stageExtensions().push_back({stage, std::move(extension)});
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

void mixer::registerMixerDialects(DialectRegistry &registry) {
  registry.insert<graph::MixerDialect, rt::MixrtDialect, func::FuncDialect>();
}

llvm::Error mixer::loadPassPlugins(int &argc, char **argv) {
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    StringRef arg(argv[i]);
    StringRef name = arg.starts_with("--")  ? arg.drop_front(2)
                     : arg.starts_with("-") ? arg.drop_front(1)
                                            : StringRef();
    std::optional<std::string> path;
    if (name == kPluginFlag) {
      if (i + 1 == argc)
        return llvm::createStringError(llvm::Twine("--") + kPluginFlag +
                                       " needs the path of a plugin");
      path = argv[++i];
    } else if (name.consume_front(kPluginFlag) && name.consume_front("=")) {
      path = name.str();
    }
    if (!path) {
      argv[kept++] = argv[i];
      continue;
    }
    llvm::Expected<PassPlugin> plugin = PassPlugin::load(*path);
    if (!plugin)
      return llvm::createStringError(
          "cannot load pass plugin '" + *path +
          "': " + llvm::toString(plugin.takeError()));
    plugin->registerPassRegistryCallbacks();
  }
  argc = kept;
  argv[argc] = nullptr;
  return llvm::Error::success();
}

void mixer::recordPipelineStage(ModuleOp module, PipelineStage stage,
                                const PipelineOptions &options) {
  std::string printed;
  llvm::raw_string_ostream os(printed);
  options.print(os);
  // print() braces the options; the record keeps the form that
  // `--mixer-pipeline="..."` and parseFromString take.
  Builder builder(module.getContext());
  module->setAttr(mixer::graph::kStageAttr,
                  builder.getStringAttr(stringifyPipelineStage(stage)));
  module->setAttr(
      mixer::graph::kPipelineOptionsAttr,
      builder.getStringAttr(StringRef(printed).drop_front().drop_back()));
}

FailureOr<PipelineStage> mixer::detectPipelineStage(ModuleOp module) {
  Operation *graphOp = nullptr, *runtimeOp = nullptr;
  bool hasArena = false;
  module.walk([&](Operation *op) {
    if (!graphOp && isa_and_nonnull<graph::MixerDialect>(op->getDialect()))
      graphOp = op;
    if (!runtimeOp && isa_and_nonnull<rt::MixrtDialect>(op->getDialect()))
      runtimeOp = op;
    hasArena |= op->hasAttr(mixer::rt::kArenaBytesAttr);
  });
  if (graphOp && runtimeOp)
    return graphOp->emitError()
           << "'" << graphOp->getName()
           << "' left in a module lowered to mixrt: a partly lowered module "
              "cannot continue";
  if (runtimeOp)
    return hasArena ? PipelineStage::Planned : PipelineStage::Runtime;

  auto recorded = module->getAttrOfType<StringAttr>(mixer::graph::kStageAttr);
  if (!recorded)
    return PipelineStage::Frontend;
  std::optional<PipelineStage> stage =
      symbolizePipelineStage(recorded.getValue());
  if (!stage)
    return module.emitError()
           << mixer::graph::kStageAttr << " names no pipeline stage: '"
           << recorded.getValue() << "'";
  if (*stage > PipelineStage::Selected)
    return module.emitError()
           << mixer::graph::kStageAttr << " is '" << recorded.getValue()
           << "' but the module holds no mixrt op";
  return *stage;
}

FailureOr<std::unique_ptr<mixer::PipelineOptions>>
mixer::recordedPipelineOptions(ModuleOp module) {
  auto recorded =
      module->getAttrOfType<StringAttr>(mixer::graph::kPipelineOptionsAttr);
  if (!recorded)
    return std::unique_ptr<PipelineOptions>();
  auto options = std::make_unique<PipelineOptions>();
  std::string error;
  llvm::raw_string_ostream errorStream(error);
  if (failed(options->parseFromString(recorded.getValue(), errorStream)))
    return module.emitError() << mixer::graph::kPipelineOptionsAttr
                              << " does not parse: " << StringRef(error).trim();
  return options;
}
