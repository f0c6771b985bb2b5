//===- PipelineTest.cpp - pipeline stages and extension points ------------===//

#include "passes/Passes.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

using namespace mlir;
using mixer::PipelineStage;

namespace {

constexpr PipelineStage kStages[] = {
    PipelineStage::Frontend, PipelineStage::Graph,   PipelineStage::Fused,
    PipelineStage::Selected, PipelineStage::Runtime, PipelineStage::Planned};

/// A pass that does nothing, named after the stage an extension added it at.
struct MarkerPass : PassWrapper<MarkerPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(MarkerPass)

  explicit MarkerPass(PipelineStage stage)
      : name(("marker-" + mixer::stringifyPipelineStage(stage)).str()) {}
  StringRef getArgument() const override { return name; }
  void runOnOperation() override {}

  std::string name;
};

/// The pipeline as text, with a marker pass at every extension point.
std::string pipelineText(PipelineStage stopAfter,
                         std::optional<PipelineStage> resumeAfter) {
  // Extensions stay registered for the life of the process.
  static bool registered = [] {
    for (PipelineStage stage : kStages)
      mixer::registerPipelineExtension(
          stage, [stage](OpPassManager &pm, const mixer::PipelineOptions &) {
            pm.addPass(std::make_unique<MarkerPass>(stage));
          });
    return true;
  }();
  (void)registered;
  MLIRContext context;
  PassManager pm(&context);
  mixer::PipelineOptions options;
  options.training = true;
  mixer::buildPipeline(pm, options, stopAfter, resumeAfter);
  std::string text;
  llvm::raw_string_ostream os(text);
  pm.printAsTextualPipeline(os);
  return text;
}

/// Checks that `names` appear in `text` in this order.
void expectInOrder(const std::string &text,
                   std::initializer_list<const char *> names) {
  size_t previous = 0;
  for (const char *name : names) {
    size_t at = text.find(name, previous);
    ASSERT_NE(at, std::string::npos)
        << name << " missing after position " << previous << " in " << text;
    previous = at;
  }
}

TEST(PipelineTest, StageNamesRoundTrip) {
  for (PipelineStage stage : kStages)
    EXPECT_EQ(
        mixer::symbolizePipelineStage(mixer::stringifyPipelineStage(stage)),
        stage);
  EXPECT_EQ(mixer::symbolizePipelineStage("fusion"), std::nullopt);
}

TEST(PipelineTest, ExtensionsRunWhenTheirStageIsReached) {
  expectInOrder(pipelineText(PipelineStage::Planned, std::nullopt),
                {"marker-frontend", "mixer-verify-shapes",
                 "mixer-apply-optimizer", "marker-graph", "mixer-fuse-router",
                 "cse", "marker-fused", "mixer-select-mixing-algorithm",
                 "marker-selected", "mixer-lower-to-runtime",
                 "mixrt-fuse-expert-gather", "marker-runtime",
                 "mixrt-plan-memory", "marker-planned"});
}

TEST(PipelineTest, ResumingSkipsTheReachedStagesAndTheirExtensions) {
  std::string text = pipelineText(PipelineStage::Planned, PipelineStage::Fused);
  EXPECT_EQ(text.find("marker-fused"), std::string::npos) << text;
  EXPECT_EQ(text.find("mixer-fuse-router"), std::string::npos) << text;
  expectInOrder(text, {"mixer-select-mixing-algorithm", "marker-selected",
                       "marker-planned"});
}

TEST(PipelineTest, StoppingLeavesOutLaterStagesAndTheirExtensions) {
  std::string text = pipelineText(PipelineStage::Fused, std::nullopt);
  EXPECT_EQ(text.find("marker-selected"), std::string::npos) << text;
  EXPECT_EQ(text.find("mixer-select-mixing-algorithm"), std::string::npos)
      << text;
  expectInOrder(text, {"marker-graph", "mixer-fuse-router", "marker-fused"});
}

TEST(PipelineTest, NothingIsLeftBetweenTheReachedStageAndTheStop) {
  std::string text = pipelineText(PipelineStage::Fused, PipelineStage::Fused);
  for (const char *prefix : {"mixer-", "mixrt-", "marker-", "canonicalize"})
    EXPECT_EQ(text.find(prefix), std::string::npos) << text;
}

} // namespace
