//===- mixc.cpp - the mixer compiler --------------------------------------===//
//
//   mixc model.json -o model.mxa [--target cpu|cuda [--precision fp32|bf16]]
//        [--batch N] [--seq S]
//        [--outputs sequence_output,pooled_output]
//        [--train [--optimizer none [--noise]]]
//   mixc model.json --emit=<stage>
//   mixc input.mlir [-o model.mxa | --emit=<stage>]
//   [--load-pass-plugin=<plugin.so>]...
//
// Parses and validates the model, builds the mixer dialect, runs the pipeline
// of passes/Pipelines.cpp and writes the artifact (or the IR of a stage). IR
// (.mlir) continues from the stage it has reached with the pipeline options
// `--emit` recorded in it. Input errors exit with 2 and leave no output file.
//
//===----------------------------------------------------------------------===//

#include "dialects/mixrt/ExportPlan.h"
#include "frontend/IRBuilder.h"
#include "frontend/ModelParser.h"
#include "passes/Passes.h"
#include "runtime/exec/Plan.h"
#include "runtime/io/Container.h"
#include "runtime/io/TensorFiles.h"
#include "runtime/support/TargetInfo.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Support/Timing.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/raw_ostream.h"

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

cl::opt<std::string> inputPath(cl::Positional,
                               cl::desc("<model.json | input.mlir>"),
                               cl::Required, cl::cat(mixcCategory));
cl::opt<std::string> outputPath("o", cl::desc("output file"),
                                cl::value_desc("path"), cl::cat(mixcCategory));
cl::opt<std::string> target("target", cl::desc("target: cpu or cuda"),
                            cl::init("cpu"), cl::cat(mixcCategory));

/// The storage precision of activations.
enum class Precision { Fp32, Bf16 };

cl::opt<Precision> precision(
    "precision", cl::desc("activation precision"), cl::init(Precision::Fp32),
    cl::values(
        clEnumValN(Precision::Fp32, "fp32", "fp32 everywhere (default)"),
        clEnumValN(Precision::Bf16, "bf16",
                   "bf16 products and activations; parameters, gradients, "
                   "optimizer state and statistics fp32 (cpu: the "
                   "dense layers and experts, inference only)")),
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
cl::opt<int64_t>
    dp("dp",
       cl::desc("data-parallel replicas: the artifact runs on a mesh of dp × "
                "ep ranks (mpirun -np dp·ep), each on batch / (dp·ep) "
                "examples"),
       cl::init(1), cl::cat(mixcCategory));
cl::opt<int64_t>
    ep("ep",
       cl::desc("expert shards: each rank holds num_experts / ep experts of "
                "every MoE layer, its slot rows exchanged by all-to-all"),
       cl::init(1), cl::cat(mixcCategory));
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

/// Whether the input is IR to continue rather than a model.
bool inputIsIR() { return llvm::sys::path::extension(inputPath) == ".mlir"; }

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

/// Builds the module of the model file.
OwningOpRef<ModuleOp> buildModel(MLIRContext &context) {
  mixer::Expected<mixer::ModelConfig> config = mixer::parseModelFile(inputPath);
  if (!config) {
    llvm::errs() << config.message() << "\n";
    return nullptr;
  }
  mixer::BuildOptions build;
  build.batch = batch;
  build.seq = seq;
  build.sourcePath = inputPath.getValue();
  build.training = train;
  build.trainingStep = train && optimizer == Optimizer::AdamW;
  build.noise = noise;
  build.world = dp * ep;
  if (dp * ep > 1) {
    mixer::Status fits = mixer::checkMesh(
        inputPath, *config, {dp, ep, batch, seq, static_cast<bool>(train)});
    if (!fits.ok()) {
      llvm::errs() << fits.message() << "\n";
      return nullptr;
    }
  }
  return mixer::buildModelModule(context, *config, build);
}

/// Parses IR to continue into `module` and finds the stage it has reached;
/// the pipeline options it records replace those of the flags in `options`.
FailureOr<mixer::PipelineStage> parseIR(MLIRContext &context,
                                        llvm::SourceMgr &sourceMgr,
                                        OwningOpRef<ModuleOp> &module,
                                        mixer::PipelineOptions &options) {
  std::string error;
  std::unique_ptr<llvm::MemoryBuffer> file = openInputFile(inputPath, &error);
  if (!file) {
    llvm::errs() << "mixc: " << error << "\n";
    return failure();
  }
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  if (!module)
    return failure();
  FailureOr<mixer::PipelineStage> stage = mixer::detectPipelineStage(*module);
  FailureOr<std::unique_ptr<mixer::PipelineOptions>> recorded =
      mixer::recordedPipelineOptions(*module);
  if (failed(stage) || failed(recorded))
    return failure();
  if (!*recorded)
    return stage;
  for (const cl::Option *flag : std::initializer_list<const cl::Option *>{
           &target, &precision, &train, &optimizer, &dp, &ep}) {
    if (flag->getNumOccurrences()) {
      std::string record;
      llvm::raw_string_ostream os(record);
      (*recorded)->print(os);
      llvm::errs() << "mixc: " << inputPath
                   << " records the pipeline options it was compiled with "
                   << record << "; --" << flag->ArgStr
                   << " cannot change them\n";
      return failure();
    }
  }
  options.copyOptionValuesFrom(**recorded);
  return stage;
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

  const mixer::TargetInfo *targetInfo = mixer::findTarget(target);
  if (!targetInfo) {
    llvm::errs() << "mixc: --target " << target
                 << " is not supported by this build (supported: "
                 << mixer::targetNames(", ") << ")\n";
    return kInputError;
  }
  std::string precisionName = precision == Precision::Bf16 ? "bf16" : "fp32";
  if (!targetInfo->bf16 && precision != Precision::Fp32) {
    llvm::errs() << "mixc: --precision " << precisionName
                 << " is not supported by --target " << target << "\n";
    return kInputError;
  }
  if (train && precision != Precision::Fp32 && !targetInfo->bf16Training) {
    llvm::errs() << "mixc: --train --precision " << precisionName
                 << " is not supported by --target " << target
                 << " yet (its training steps are fp32)\n";
    return kInputError;
  }
  if (inputIsIR()) {
    for (const cl::Option *flag : std::initializer_list<const cl::Option *>{
             &batch, &seq, std::addressof(outputs), &noise}) {
      if (flag->getNumOccurrences()) {
        llvm::errs() << "mixc: --" << flag->ArgStr
                     << " applies to a model; the IR of " << inputPath
                     << " was built with it\n";
        return kInputError;
      }
    }
  }
  if (batch < 1 || seq < 0) {
    llvm::errs() << "mixc: --batch must be >= 1 and --seq >= 0\n";
    return kInputError;
  }
  if (dp < 1 || ep < 1) {
    llvm::errs() << "mixc: --dp and --ep must be >= 1\n";
    return kInputError;
  }
  if (dp * ep > 1) {
    if (!inputIsIR() && batch % (dp * ep) != 0) {
      llvm::errs() << "mixc: --batch " << batch << " does not divide into the "
                   << dp * ep << " ranks of the mesh (--dp " << dp << " × --ep "
                   << ep << ")\n";
      return kInputError;
    }
    if (target != "cpu") {
      llvm::errs() << "mixc: --dp and --ep compile for --target cpu; CUDA "
                      "collectives are not supported yet\n";
      return kInputError;
    }
  }
  if (noise && !(train && optimizer == Optimizer::None)) {
    llvm::errs() << "mixc: --noise needs --train --optimizer=none (a training "
                    "step always has its noise)\n";
    return kInputError;
  }

  MLIRContext context;
  DialectRegistry registry;
  mixer::registerMixerDialects(registry);
  context.appendDialectRegistry(registry);
  // Diagnostics name the model file and place; a dump of the whole module
  // after each would bury them.
  context.printOpOnDiagnostic(false);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  mixer::PipelineOptions options;
  options.target = target;
  options.precision = precisionName;
  options.training = train;
  options.optimizer = optimizer == Optimizer::AdamW;
  options.dp = dp;
  options.ep = ep;
  OwningOpRef<ModuleOp> module;
  std::optional<mixer::PipelineStage> reached;
  if (inputIsIR()) {
    FailureOr<mixer::PipelineStage> stage =
        parseIR(context, sourceMgr, module, options);
    if (failed(stage))
      return kInputError;
    reached = *stage;
  } else {
    module = buildModel(context);
    if (!module)
      return kInputError;
  }
  mixer::PipelineStage stopAfter = stageFor(emit);
  if (reached && *reached > stopAfter) {
    llvm::errs() << "mixc: " << inputPath << " is at stage "
                 << mixer::stringifyPipelineStage(*reached)
                 << ", past --emit=" << mixer::stringifyPipelineStage(stopAfter)
                 << "\n";
    return kInputError;
  }

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
  mixer::buildPipeline(pm, options, stopAfter, reached);
  if (failed(pm.run(*module)))
    return kCompileError;

  if (emit != Emit::Plan && emit != Emit::Artifact) {
    mixer::recordPipelineStage(*module, stopAfter, options);
    std::string text;
    llvm::raw_string_ostream os(text);
    module->print(os);
    return writeText(text);
  }

  mixer::exec::Plan plan;
  if (failed(mixer::exportPlan(*module,
                               {options.target, options.precision,
                                options.training ? "train" : "inference"},
                               plan)))
    return kCompileError;
  if (emit == Emit::Plan)
    return writeText(plan.toJson(2) + "\n");

  std::string path = outputPath.empty() ? defaultOutputPath() : outputPath;
  mixer::Status status = mixer::io::writeContainer(path, {plan.toJson(), ""});
  if (!status.ok()) {
    llvm::errs() << "mixc: " << status.message() << "\n";
    return kCompileError;
  }
  // IR without an input_ids input records batch 0.
  // A parallel plan's flops are one rank's, on its share of the batch.
  int64_t examples = std::max<int64_t>(plan.batch / plan.mesh.world(), 1);
  llvm::outs() << llvm::formatv(
      "mixc: {0} -> {1}: {2} steps, {3} parameters, peak arena {4:F1} MiB "
      "({5} bytes), {6:F2} GFLOP per example\n",
      plan.model, path, plan.steps.size(), plan.params.size(),
      plan.arenaBytes / 1048576.0, plan.arenaBytes,
      plan.flops / 1e9 / examples);
  // A parallel plan: what each rank sends per step.
  if (plan.mesh.world() > 1) {
    int64_t total = 0;
    std::string kinds;
    for (const auto &[kernel, bytes] : plan.commBytes) {
      total += bytes;
      kinds += llvm::formatv(", {0} {1}", kernel, bytes).str();
    }
    llvm::outs() << llvm::formatv(
        "mixc: mesh dp {0} × ep {1}: each rank sends at most {2:F3} MiB per "
        "step to the others ({3} bytes{4})\n",
        plan.mesh.dp, plan.mesh.ep, total / 1048576.0, total, kinds);
  }
  return 0;
}
