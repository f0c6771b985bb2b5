//===- mixc.cpp - the mixer compiler --------------------------------------===//
//
//   mixc model.json -o model.mxa [--target cpu|cuda [--precision fp32|bf16]]
//        [--batch N] [--seq S]
//        [--outputs sequence_output,pooled_output]
//        [--train [--optimizer none [--noise]]]
//   mixc model.json --emit=<stage>
//   [--load-pass-plugin=<plugin.so>]...
//
// Parses and validates the model, builds the mixer dialect, runs the pipeline
// of passes/Pipelines.cpp and writes the artifact (or the IR of a stage). Input
// errors exit with 2 and leave no output file.
//
//===----------------------------------------------------------------------===//

#include "dialects/mixrt/ExportPlan.h"
#include "frontend/IRBuilder.h"
#include "frontend/ModelParser.h"
#include "passes/Passes.h"
#include "runtime/io/Container.h"
#include "runtime/io/TensorFiles.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/Timing.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

#include <nlohmann/json.hpp>

using namespace mlir;
namespace cl = llvm::cl;

namespace {

/// What mixc writes: the IR after a pipeline stage, the plan, or the artifact.
enum class Emit {
  Frontend,
  Graph,
  Fused,
  Selected,
  Runtime,
  Planned,
  Plan,
  Artifact
};

cl::OptionCategory mixcCategory("mixc options");

/// Plugins load before the command line is parsed (see main).
cl::extrahelp pluginFlag(
    "\n--load-pass-plugin=<path> loads the passes and pipeline extensions of "
    "an MLIR pass\nplugin (docs/passes.md, \"Passes outside the tree: "
    "plugins\").\n");

/// MLIR's flags stay out of the option list (see main) but work.
cl::extrahelp mlirFlags(
    "\nMLIR's debugging flags are accepted too: --mlir-print-ir-after-all,\n"
    "--mlir-print-ir-before=<pass>, --mlir-timing, "
    "--mlir-pass-pipeline-crash-reproducer=<file>,\n"
    "--mlir-print-debuginfo (docs/passes.md, \"Debugging\").\n");

cl::opt<std::string> inputPath(cl::Positional, cl::desc("<model.json>"),
                               cl::Required, cl::cat(mixcCategory));
cl::opt<std::string> outputPath("o", cl::desc("output file"),
                                cl::value_desc("path"), cl::cat(mixcCategory));
cl::opt<std::string> target("target", cl::desc("target: cpu or cuda"),
                            cl::init("cpu"), cl::cat(mixcCategory));

/// The storage precision of activations.
enum class Precision { Fp32, Bf16 };

cl::opt<Precision> precision(
    "precision", cl::desc("activation precision"), cl::init(Precision::Fp32),
    cl::values(clEnumValN(Precision::Fp32, "fp32", "fp32 everywhere (default)"),
               clEnumValN(Precision::Bf16, "bf16",
                          "bf16 activations; parameters, gradients, optimizer "
                          "state and statistics fp32 (--target cuda only)")),
    cl::cat(mixcCategory));
cl::opt<int64_t> batch("batch", cl::desc("batch size the artifact runs"),
                       cl::init(8), cl::cat(mixcCategory));
cl::opt<int64_t> seq("seq",
                     cl::desc("sequence length (default: max_seq_length)"),
                     cl::init(0), cl::cat(mixcCategory));
cl::opt<bool> train("train",
                    cl::desc("compile the training step: forward with "
                             "dropout, losses, backward and the AdamW update "
                             "of every parameter"),
                    cl::init(false), cl::cat(mixcCategory));

/// What a training artifact does with the gradients.
enum class Optimizer { AdamW, None };

cl::opt<Optimizer> optimizer(
    "optimizer", cl::desc("with --train: the update that ends the step"),
    cl::init(Optimizer::AdamW),
    cl::values(clEnumValN(Optimizer::AdamW, "adamw",
                          "update every parameter in place (default)"),
               clEnumValN(Optimizer::None, "none",
                          "no update and no dropout: return the gradient of "
                          "every parameter as grad/<name>")),
    cl::cat(mixcCategory));
cl::opt<bool>
    noise("noise",
          cl::desc("with --train --optimizer=none: keep the training noise "
                   "(dropout, router jitter; inputs seed and step), to check "
                   "gradients under one fixed draw"),
          cl::init(false), cl::cat(mixcCategory));
cl::list<std::string>
    outputs("outputs", cl::CommaSeparated,
            cl::desc("outputs to compute (default: all the model's heads)"),
            cl::value_desc("name,..."), cl::cat(mixcCategory));
cl::opt<Emit> emit(
    "emit", cl::desc("what to write"), cl::init(Emit::Artifact),
    cl::values(
        clEnumValN(Emit::Frontend, "frontend", "mixer IR from the frontend"),
        clEnumValN(
            Emit::Graph, "graph",
            "after verification, canonicalization and MoE decomposition"),
        clEnumValN(Emit::Fused, "fused", "after fusion"),
        clEnumValN(Emit::Selected, "selected",
                   "after mixing-algorithm selection"),
        clEnumValN(Emit::Runtime, "runtime", "after lowering to mixrt"),
        clEnumValN(Emit::Planned, "planned", "mixrt with arena offsets"),
        clEnumValN(Emit::Plan, "plan", "the runtime plan as JSON"),
        clEnumValN(Emit::Artifact, "artifact", "the .mxa artifact (default)")),
    cl::cat(mixcCategory));

constexpr int kInputError = 2;
constexpr int kCompileError = 1;

mixer::PipelineStage stageFor(Emit what) {
  switch (what) {
  case Emit::Frontend:
    return mixer::PipelineStage::Frontend;
  case Emit::Graph:
    return mixer::PipelineStage::Graph;
  case Emit::Fused:
    return mixer::PipelineStage::Fused;
  case Emit::Selected:
    return mixer::PipelineStage::Selected;
  case Emit::Runtime:
    return mixer::PipelineStage::Runtime;
  default:
    return mixer::PipelineStage::Planned;
  }
}

std::string defaultOutputPath() {
  llvm::SmallString<128> path(llvm::sys::path::stem(inputPath));
  path += ".mxa";
  return std::string(path);
}

/// Writes text to -o or stdout.
int writeText(const std::string &text) {
  if (outputPath.empty() || outputPath == "-") {
    llvm::outs() << text;
    return 0;
  }
  mixer::Status status = mixer::io::writeFileAtomic(outputPath, text);
  if (!status.ok()) {
    llvm::errs() << "mixc: " << status.message() << "\n";
    return kCompileError;
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  // Before the command line is registered: the plugins' passes then work in
  // the pass flags (--mlir-print-ir-after=<pass>).
  if (llvm::Error error = mixer::loadPassPlugins(argc, argv)) {
    llvm::errs() << "mixc: " << llvm::toString(std::move(error)) << "\n";
    return kInputError;
  }
  // Registered so that pass names work in --mlir-print-ir-before/after.
  mixer::registerMixerPassesAndPipelines();
  registerAsmPrinterCLOptions();
  registerMLIRContextCLOptions();
  registerPassManagerCLOptions();
  registerDefaultTimingManagerCLOptions();
  // --help lists mixc's options, not those of MLIR and of every LLVM
  // backend linked in (they still parse).
  cl::HideUnrelatedOptions(mixcCategory);
  cl::ParseCommandLineOptions(argc, argv, "mixer compiler\n");

  if (target != "cpu" && target != "cuda") {
    llvm::errs() << "mixc: --target " << target
                 << " is not supported by this build (supported: cpu, cuda)\n";
    return kInputError;
  }
  std::string precisionName = precision == Precision::Bf16 ? "bf16" : "fp32";
  if (target == "cpu" && precision != Precision::Fp32) {
    llvm::errs() << "mixc: --precision " << precisionName
                 << " needs --target cuda: the cpu kernels are fp32\n";
    return kInputError;
  }
  if (batch < 1 || seq < 0) {
    llvm::errs() << "mixc: --batch must be >= 1 and --seq >= 0\n";
    return kInputError;
  }
  if (noise && !(train && optimizer == Optimizer::None)) {
    llvm::errs() << "mixc: --noise needs --train --optimizer=none (a training "
                    "step always has its noise)\n";
    return kInputError;
  }

  mixer::Expected<mixer::ModelConfig> config = mixer::parseModelFile(inputPath);
  if (!config) {
    llvm::errs() << config.message() << "\n";
    return kInputError;
  }

  MLIRContext context;
  // Diagnostics name the model file and place; a dump of the whole module
  // after each would bury them.
  context.printOpOnDiagnostic(false);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  mixer::BuildOptions build;
  build.batch = batch;
  build.seq = seq;
  build.sourcePath = inputPath.getValue();
  build.training = train;
  build.trainingStep = train && optimizer == Optimizer::AdamW;
  build.noise = noise;
  OwningOpRef<ModuleOp> module =
      mixer::buildModelModule(context, *config, build);
  if (!module)
    return kInputError;

  PassManager pm(&context);
  if (failed(applyPassManagerCLOptions(pm)))
    return kInputError;
  DefaultTimingManager timing;
  applyDefaultTimingManagerCLOptions(timing);
  TimingScope timingScope = timing.getRootScope();
  pm.enableTiming(timingScope);
  if (!outputs.empty()) {
    mixer::MixerSelectOutputsOptions selection;
    selection.outputs.assign(outputs.begin(), outputs.end());
    pm.addPass(mixer::createMixerSelectOutputs(selection));
  }
  mixer::PipelineOptions options;
  options.target = target;
  options.precision = precisionName;
  options.training = train;
  options.optimizer = optimizer == Optimizer::AdamW;
  mixer::buildPipeline(pm, options, stageFor(emit));
  if (failed(pm.run(*module)))
    return kCompileError;

  if (emit != Emit::Plan && emit != Emit::Artifact) {
    std::string text;
    llvm::raw_string_ostream os(text);
    module->print(os);
    return writeText(text);
  }

  FailureOr<std::string> plan = mixer::exportPlan(
      *module, {target, precisionName, train ? "train" : "inference"});
  if (failed(plan))
    return kCompileError;
  if (emit == Emit::Plan)
    return writeText(nlohmann::json::parse(*plan).dump(2) + "\n");

  std::string path = outputPath.empty() ? defaultOutputPath() : outputPath;
  mixer::Status status = mixer::io::writeContainer(path, {*plan, ""});
  if (!status.ok()) {
    llvm::errs() << "mixc: " << status.message() << "\n";
    return kCompileError;
  }
  auto summary = nlohmann::json::parse(*plan);
  llvm::outs() << llvm::formatv(
      "mixc: {0} -> {1}: {2} steps, {3} parameters, peak arena {4:F1} MiB "
      "({5} bytes), {6:F2} GFLOP per example\n",
      config->name, path, summary["steps"].size(), summary["params"].size(),
      summary["arena_bytes"].get<int64_t>() / 1048576.0,
      summary["arena_bytes"].get<int64_t>(),
      summary["flops"].get<double>() / 1e9 / batch);
  return 0;
}
