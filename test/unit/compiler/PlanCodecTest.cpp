//===- PlanCodecTest.cpp - the plan codec over compiled models ------------===//
//
// Compiles models of models/tiny under several configurations, as mixc
// does, and checks the plan codec on their plans: toJson of what fromJson
// reads back is the same text, and fromJson of toJson gives the same plan.
//
//===----------------------------------------------------------------------===//

#include "dialects/mixrt/ExportPlan.h"
#include "frontend/IRBuilder.h"
#include "frontend/ModelParser.h"
#include "passes/Passes.h"
#include "runtime/exec/Plan.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

using namespace mlir;

namespace {

struct Config {
  const char *target;
  const char *precision;
  bool training;
};

/// The plan of models/tiny/`model`.json compiled for `config` with batch 2.
mixer::exec::Plan compile(const std::string &model, const Config &config) {
  mixer::Expected<mixer::ModelConfig> parsed = mixer::parseModelFile(
      std::string(MIXER_TINY_MODELS_DIR) + "/" + model + ".json");
  EXPECT_TRUE(parsed.ok()) << parsed.message();
  if (!parsed)
    return {};
  MLIRContext context;
  DialectRegistry registry;
  mixer::registerMixerDialects(registry);
  context.appendDialectRegistry(registry);
  mixer::BuildOptions build;
  build.batch = 2;
  build.training = config.training;
  build.trainingStep = config.training;
  OwningOpRef<ModuleOp> module =
      mixer::buildModelModule(context, *parsed, build);
  EXPECT_TRUE(module);
  if (!module)
    return {};
  mixer::PipelineOptions options;
  options.target = config.target;
  options.precision = config.precision;
  options.training = config.training;
  PassManager pm(&context);
  mixer::buildPipeline(pm, options);
  EXPECT_TRUE(succeeded(pm.run(*module)));
  mixer::exec::Plan plan;
  EXPECT_TRUE(
      succeeded(mixer::exportPlan(*module,
                                  {config.target, config.precision,
                                   config.training ? "train" : "inference"},
                                  plan)));
  return plan;
}

TEST(PlanCodecTest, RoundTripsThePlansOfTheModels) {
  const Config configs[] = {
      {"cpu", "fp32", false}, {"cpu", "fp32", true}, {"cuda", "bf16", true}};
  for (const char *model : {"bert_tiny", "sparse_mixer_tiny", "sigma_moe_tiny",
                            "fnet_tiny", "toeplitz_tiny"}) {
    for (const Config &config : configs) {
      SCOPED_TRACE(std::string(model) + " " + config.target + " " +
                   config.precision + (config.training ? " train" : ""));
      mixer::exec::Plan compiled = compile(model, config);
      ASSERT_FALSE(compiled.steps.empty());
      std::string text = compiled.toJson();
      mixer::Expected<mixer::exec::Plan> read =
          mixer::exec::Plan::fromJson(text, "model.mxa");
      ASSERT_TRUE(read.ok()) << read.message();
      // The compiler leaves the derived counts to the reader; everything
      // the plan states survives.
      EXPECT_EQ(read->toJson(), text);
      EXPECT_EQ(read->steps, compiled.steps);
      EXPECT_EQ(read->training.has_value(), config.training);
      mixer::Expected<mixer::exec::Plan> again =
          mixer::exec::Plan::fromJson(read->toJson(), "model.mxa");
      ASSERT_TRUE(again.ok()) << again.message();
      EXPECT_TRUE(*again == *read);
    }
  }
}

/// A field that toJson leaves out or misspells shows as a difference.
TEST(PlanCodecTest, DifferencesSurviveTheRoundTrip) {
  mixer::exec::Plan plan = compile("bert_tiny", {"cpu", "fp32", true});
  ASSERT_TRUE(plan.training.has_value());
  mixer::exec::Plan changed = plan;
  changed.training->adamw.weightDecay = 0.5;
  changed.heads.classes = 3;
  changed.forwardSteps -= 1;
  EXPECT_NE(changed.toJson(), plan.toJson());
  mixer::Expected<mixer::exec::Plan> read =
      mixer::exec::Plan::fromJson(changed.toJson(), "model.mxa");
  ASSERT_TRUE(read.ok()) << read.message();
  EXPECT_EQ(read->training->adamw.weightDecay, 0.5);
  EXPECT_EQ(read->heads.classes, 3);
  EXPECT_EQ(read->forwardSteps, plan.forwardSteps - 1);
}

} // namespace
