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
  /// Expert shards: above 1, the per-rank plan of a mesh of ep ranks.
  int64_t ep = 1;
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
  build.world = config.ep;
  OwningOpRef<ModuleOp> module =
      mixer::buildModelModule(context, *parsed, build);
  EXPECT_TRUE(module);
  if (!module)
    return {};
  mixer::PipelineOptions options;
  options.target = config.target;
  options.precision = config.precision;
  options.training = config.training;
  options.ep = config.ep;
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

/// toJson of what fromJson reads back from `compiled` is the same text, and
/// fromJson of that text the same plan; returns the plan read back.
mixer::exec::Plan expectRoundTrip(const mixer::exec::Plan &compiled) {
  std::string text = compiled.toJson();
  mixer::Expected<mixer::exec::Plan> read =
      mixer::exec::Plan::fromJson(text, "model.mxa");
  EXPECT_TRUE(read.ok()) << read.message();
  if (!read)
    return {};
  // The compiler leaves the derived counts to the reader; everything the
  // plan states survives.
  EXPECT_EQ(read->toJson(), text);
  EXPECT_EQ(read->steps, compiled.steps);
  mixer::Expected<mixer::exec::Plan> again =
      mixer::exec::Plan::fromJson(read->toJson(), "model.mxa");
  EXPECT_TRUE(again.ok()) << again.message();
  if (again)
    EXPECT_TRUE(*again == *read);
  return *read;
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
      mixer::exec::Plan read = expectRoundTrip(compiled);
      EXPECT_EQ(read.training.has_value(), config.training);
      EXPECT_EQ(read.mesh.world(), 1);
    }
  }
}

/// The per-rank plans of two expert shards keep their mesh, the shards of
/// the expert parameters and the bytes of their collectives.
TEST(PlanCodecTest, RoundTripsParallelPlans) {
  for (const char *model : {"sparse_mixer_tiny", "sigma_moe_tiny"}) {
    SCOPED_TRACE(model);
    mixer::exec::Plan compiled =
        compile(model, {"cpu", "fp32", false, /*ep=*/2});
    ASSERT_FALSE(compiled.steps.empty());
    mixer::exec::Plan read = expectRoundTrip(compiled);
    EXPECT_EQ(read.mesh.dp, 1);
    EXPECT_EQ(read.mesh.ep, 2);
    EXPECT_FALSE(read.commBytes.empty());
    int64_t sharded = 0;
    for (const mixer::exec::ParamInfo &param : read.params) {
      if (param.shardGroup.empty())
        continue;
      ++sharded;
      EXPECT_EQ(param.shardGroup, "ep");
      ASSERT_FALSE(param.globalShape.empty());
      EXPECT_EQ(param.globalShape[0], 2 * param.shape[0]);
    }
    EXPECT_GT(sharded, 0);
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
  changed.commBytes["all_reduce"] = 64;
  EXPECT_NE(changed.toJson(), plan.toJson());
  mixer::Expected<mixer::exec::Plan> read =
      mixer::exec::Plan::fromJson(changed.toJson(), "model.mxa");
  ASSERT_TRUE(read.ok()) << read.message();
  EXPECT_EQ(read->training->adamw.weightDecay, 0.5);
  EXPECT_EQ(read->heads.classes, 3);
  EXPECT_EQ(read->forwardSteps, plan.forwardSteps - 1);
  EXPECT_EQ(read->commBytes.at("all_reduce"), 64);
}

} // namespace
