//===- PlanTest.cpp - Parsing and validating execution plans --------------===//

#include "test/unit/exec/PlanBuilder.h"

#include "runtime/exec/Plan.h"

#include <gmock/gmock.h>

#include <fstream>
#include <tuple>

using namespace mixer;
using namespace mixer::exec;
using namespace mixer::exec::test;
using ::testing::HasSubstr;

namespace {

/// The message of parsing `plan` as "tiny.mxa"; fails the test if it parses.
std::string parseError(const json &plan) {
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "tiny.mxa");
  EXPECT_FALSE(parsed.ok()) << "the broken plan parsed";
  return parsed.ok() ? std::string() : parsed.message();
}

TEST(PlanTest, ParsesEveryTable) {
  TempDir dir;
  std::string path =
      writeArtifact(dir, "tiny.mxa", embedNormDensePlan().dump());
  Expected<Plan> plan = Plan::load(path);
  ASSERT_TRUE(plan.ok()) << plan.message();
  EXPECT_EQ(plan->path, path);
  EXPECT_EQ(plan->model, "tiny");
  EXPECT_EQ(plan->compilerVersion, "0.1.0");
  EXPECT_EQ(plan->batch, 2);
  EXPECT_EQ(plan->seq, 3);
  EXPECT_EQ(plan->padId, 0);
  EXPECT_EQ(plan->vocabSize, 5);
  EXPECT_EQ(plan->arenaBytes, 328);
  EXPECT_DOUBLE_EQ(plan->flops, 1000.0);

  ASSERT_EQ(plan->params.size(), 7u);
  EXPECT_EQ(plan->params[1].name, "embedder/position");
  EXPECT_EQ(plan->params[1].shape, (std::vector<int64_t>{1, 3, 4}));
  EXPECT_EQ(plan->params[1].numel, 12);
  EXPECT_EQ(plan->params[1].init.kind, InitKind::Normal);
  EXPECT_DOUBLE_EQ(plan->params[1].init.stddev, 1.0);
  EXPECT_EQ(plan->params[3].init.kind, InitKind::Ones);
  // 20 + 12 + 8 + 4 + 4 + 12 + 3 values.
  EXPECT_EQ(plan->numParameterElements(), 63);

  ASSERT_EQ(plan->inputs.size(), 2u);
  EXPECT_FALSE(plan->inputs[0].optional);
  EXPECT_TRUE(plan->inputs[1].optional);
  EXPECT_EQ(plan->inputs[1].dtype, io::DType::I32);

  ASSERT_EQ(plan->values.size(), 12u);
  EXPECT_EQ(plan->values[5].storage, StorageKind::Param);
  EXPECT_EQ(plan->values[5].index, 5);
  EXPECT_EQ(plan->values[8].storage, StorageKind::Input);
  EXPECT_EQ(plan->values[8].index, 1);
  EXPECT_EQ(plan->values[11].storage, StorageKind::Arena);
  EXPECT_EQ(plan->values[11].offset, 256);
  EXPECT_EQ(plan->values[11].bytes, 72);

  ASSERT_EQ(plan->steps.size(), 3u);
  EXPECT_EQ(plan->steps[1].kernel, Kernel::LayerNorm);
  EXPECT_EQ(plan->steps[1].operands, (std::vector<int64_t>{9, -1, 3, 4}));
  EXPECT_EQ(plan->steps[1].results, (std::vector<int64_t>{10}));
  EXPECT_DOUBLE_EQ(std::get<double>(plan->steps[1].attrs.at("epsilon")), 1e-6);
  EXPECT_EQ(std::get<std::string>(plan->steps[2].attrs.at("activation")),
            "gelu");
  EXPECT_FALSE(std::get<bool>(plan->steps[2].attrs.at("transpose_w")));

  ASSERT_EQ(plan->outputs.size(), 1u);
  EXPECT_EQ(plan->outputs[0].name, "y");
  EXPECT_EQ(plan->outputs[0].value, 11);
}

TEST(PlanTest, FormatVersionMismatchNamesBothVersionsAndCompiler) {
  json plan = embedNormDensePlan();
  plan["format_version"] = 4;
  plan["compiler_version"] = "0.7.3";
  // A future format may change anything else; the version error comes first.
  plan.erase("steps");
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: plan format version 4 (written by compiler version "
            "0.7.3) is not supported: this runtime reads plan format version "
            "3; recompile it with mixc");

  // Version 1 plans lack forward_steps and heads.
  plan = embedNormDensePlan();
  plan["format_version"] = 1;
  plan.erase("forward_steps");
  plan.erase("heads");
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: plan format version 1 (written by compiler version "
            "0.1.0) is not supported: this runtime reads plan format version "
            "3; recompile it with mixc");

  // Version 2 plans have experts without a layout and the noise_counter
  // kernel.
  plan = embedNormDensePlan();
  plan["format_version"] = 2;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: plan format version 2 (written by compiler version "
            "0.1.0) is not supported: this runtime reads plan format version "
            "3; recompile it with mixc");
}

TEST(PlanTest, ReadsTheHeadsAndTheForwardSteps) {
  json plan = embedNormDensePlan();
  plan["heads"] = {{"masked_lm", true},
                   {"next_sentence", true},
                   {"causal_lm", false},
                   {"classes", 2}};
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "tiny.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  EXPECT_TRUE(parsed->heads.maskedLm);
  EXPECT_TRUE(parsed->heads.nextSentence);
  EXPECT_FALSE(parsed->heads.causalLm);
  EXPECT_EQ(parsed->heads.classes, 2);
  EXPECT_EQ(parsed->forwardSteps, 3);

  plan["heads"]["classes"] = -1;
  EXPECT_EQ(parseError(plan), "tiny.mxa: heads: 'classes' must be a "
                              "non-negative integer, not -1");
  plan["heads"]["classes"] = 2;
  plan["heads"]["causal_lm"] = 1;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: heads: 'causal_lm' must be a boolean, not 1");
  plan["heads"] = {{"pooler", true}};
  EXPECT_EQ(parseError(plan), "tiny.mxa: heads: unknown key 'pooler'");

  plan = embedNormDensePlan();
  plan["forward_steps"] = 4;
  EXPECT_EQ(parseError(plan), "tiny.mxa: forward_steps 4 is outside [0, 3], "
                              "the steps of the plan");
  plan.erase("forward_steps");
  EXPECT_EQ(parseError(plan), "tiny.mxa: missing 'forward_steps'");
}

TEST(PlanTest, LoadNamesTheArtifactInVersionErrors) {
  TempDir dir;
  json plan = embedNormDensePlan();
  plan["format_version"] = 0;
  std::string path = writeArtifact(dir, "old.mxa", plan.dump());
  Expected<Plan> loaded = Plan::load(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.message().rfind(path + ": plan format version 0", 0), 0u)
      << loaded.message();
}

TEST(PlanTest, LoadReportsAMissingFile) {
  TempDir dir;
  Expected<Plan> loaded = Plan::load(dir.file("absent.mxa"));
  ASSERT_FALSE(loaded.ok());
  EXPECT_THAT(loaded.message(), HasSubstr("absent.mxa"));
}

TEST(PlanTest, RejectsTextThatIsNotAPlanObject) {
  Expected<Plan> parsed = Plan::fromJson("{\"format_version\": ", "tiny.mxa");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.message(), "tiny.mxa: the plan header is not valid JSON");
  EXPECT_EQ(parseError(json::array()),
            "tiny.mxa: the plan is not a JSON object");
}

TEST(PlanTest, RejectsMissingAndMistypedTopLevelFields) {
  json plan = embedNormDensePlan();
  plan.erase("vocab_size");
  EXPECT_EQ(parseError(plan), "tiny.mxa: missing 'vocab_size'");
  plan = embedNormDensePlan();
  plan["batch"] = "two";
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: 'batch' must be an integer, not \"two\"");
  plan = embedNormDensePlan();
  plan["arena_bytes"] = -1;
  EXPECT_THAT(parseError(plan), HasSubstr("must not be negative"));
}

TEST(PlanTest, RejectsOtherTargets) {
  json plan = embedNormDensePlan();
  plan["target"] = "tpu";
  EXPECT_EQ(parseError(plan), "tiny.mxa: the plan targets 'tpu' but this "
                              "runtime executes 'cpu' and 'cuda' plans");
}

TEST(PlanTest, ReadsTargetAndPrecision) {
  json plan = embedNormDensePlan();
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "tiny.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  // A plan without "precision" is fp32.
  EXPECT_EQ(parsed->precision, "fp32");
  plan["target"] = "cuda";
  plan["precision"] = "bf16";
  plan["values"].back()["dtype"] = "BF16";
  parsed = Plan::fromJson(plan.dump(), "tiny.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  EXPECT_EQ(parsed->target, "cuda");
  EXPECT_EQ(parsed->precision, "bf16");
  EXPECT_EQ(parsed->values.back().dtype, io::DType::BF16);
  EXPECT_EQ(parsed->values.back().bytes, parsed->values.back().numel * 2);
}

TEST(PlanTest, RejectsBadPrecisions) {
  json plan = embedNormDensePlan();
  plan["precision"] = "fp8";
  EXPECT_EQ(parseError(plan), "tiny.mxa: unknown precision 'fp8' (expected "
                              "fp32 or bf16)");
  plan = embedNormDensePlan();
  plan["target"] = "cuda";
  plan["values"].back()["dtype"] = "BF16";
  EXPECT_THAT(parseError(plan), HasSubstr("is BF16 in an fp32 plan"));
}

/// embedNormDensePlan on a 1 × 2 mesh: the global batch of 4 holds the
/// plan's 2 examples per rank; parameter 0 is sharded over "ep".
json meshPlan() {
  json plan = embedNormDensePlan();
  plan["batch"] = 4;
  plan["mesh"] = {{"dp", 1}, {"ep", 2}, {"world", 2}};
  plan["comm_bytes"] = {{"all_to_all", 96}};
  json &param = plan["params"][0];
  json global = param["shape"];
  global[0] = global[0].get<int64_t>() * 2;
  param["shard"] = {{"axis", 0}, {"mesh_axis", "ep"}};
  param["global_shape"] = global;
  return plan;
}

TEST(PlanTest, ReadsTheMeshAndShards) {
  json plan = meshPlan();
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "tiny.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  EXPECT_EQ(parsed->mesh.dp, 1);
  EXPECT_EQ(parsed->mesh.ep, 2);
  EXPECT_EQ(parsed->mesh.world(), 2);
  EXPECT_EQ(parsed->commBytes.at("all_to_all"), 96);
  EXPECT_EQ(parsed->params[0].shardGroup, "ep");
  EXPECT_EQ(parsed->params[0].globalShape,
            plan["params"][0]["global_shape"].get<std::vector<int64_t>>());
  EXPECT_TRUE(parsed->params[1].globalShape.empty());
}

TEST(PlanTest, ReadsAndChecksOutputShards) {
  json plan = meshPlan();
  plan["outputs"][0]["shard"] = {{"axis", 0}, {"mesh_axis", "world"}};
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "tiny.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  EXPECT_EQ(parsed->outputs[0].shardGroup, "world");
  Expected<Plan> again = Plan::fromJson(parsed->toJson(), "tiny.mxa");
  ASSERT_TRUE(again.ok()) << again.message();
  EXPECT_EQ(again->outputs, parsed->outputs);

  json bad = plan;
  bad["outputs"][0]["shard"]["mesh_axis"] = "edp";
  EXPECT_THAT(parseError(bad),
              HasSubstr("shards only axis 0 over 'world' or 'ep'"));
  bad = plan;
  bad["outputs"][0]["shard"]["axis"] = 1;
  EXPECT_THAT(parseError(bad),
              HasSubstr("shards only axis 0 over 'world' or 'ep'"));
  bad = embedNormDensePlan();
  bad["outputs"][0]["shard"] = {{"axis", 0}, {"mesh_axis", "world"}};
  EXPECT_THAT(parseError(bad),
              HasSubstr("a one-process plan's outputs have no shard"));
}

TEST(PlanTest, RejectsMeshesAndShardsThatDoNotFit) {
  json plan = meshPlan();
  plan["mesh"]["world"] = 3;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: mesh: needs dp >= 1, ep >= 1, world = dp * ep and a "
            "batch that divides into the world, got dp 1, ep 2, world 3, "
            "batch 4");
  plan = meshPlan();
  plan["batch"] = 3;
  EXPECT_THAT(parseError(plan), HasSubstr("world 2, batch 3"));
  plan = meshPlan();
  plan["comm_bytes"] = {{"dense", 1}};
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: comm_bytes: 'dense' is no collective kernel");
  plan = meshPlan();
  plan["params"][0]["global_shape"][0] = 3;
  EXPECT_THAT(parseError(plan), HasSubstr("is not the 2 shards of"));
  plan = meshPlan();
  plan["params"][0]["shard"]["mesh_axis"] = "world";
  EXPECT_THAT(parseError(plan),
              HasSubstr("shards only axis 0 over 'ep' or 'edp'"));
}

TEST(PlanTest, CpuExecutorRefusesCudaPlans) {
  json plan = embedNormDensePlan();
  plan["target"] = "cuda";
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "tiny.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  Expected<cpu::Executor> executor = cpu::Executor::create(*parsed);
  ASSERT_FALSE(executor.ok());
  EXPECT_EQ(executor.message(), "tiny.mxa: the plan targets 'cuda'; this "
                                "executor runs 'cpu' plans");
}

TEST(PlanTest, CpuExecutorRefusesBf16PlansWithoutBf16Products) {
  json plan = embedNormDensePlan();
  plan["precision"] = "bf16";
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "tiny.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  Expected<cpu::Executor> executor =
      cpu::Executor::create(*parsed, /*world=*/nullptr, /*bf16Products=*/false);
  ASSERT_FALSE(executor.ok());
  EXPECT_EQ(executor.message(),
            "tiny.mxa: a bf16 plan needs a CPU with bf16 products "
            "(AVX512_BF16 or AMX) and this one has none; compile the model "
            "with --precision fp32");
  EXPECT_TRUE(
      cpu::Executor::create(*parsed, /*world=*/nullptr, /*bf16Products=*/true)
          .ok());
  // An fp32 plan runs anywhere.
  parsed = Plan::fromJson(embedNormDensePlan().dump(), "tiny.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  EXPECT_TRUE(
      cpu::Executor::create(*parsed, /*world=*/nullptr, /*bf16Products=*/false)
          .ok());
}

TEST(PlanTest, RejectsBadParameterEntries) {
  json plan = embedNormDensePlan();
  plan["params"][3]["init"] = {{"kind", "xavier"}};
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: params[3] 'norm/scale': unknown init kind 'xavier'");

  plan = embedNormDensePlan();
  plan["params"][0]["init"] = {{"kind", "normal"}};
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: params[0] 'embedder/word' init: missing 'stddev'");

  plan = embedNormDensePlan();
  plan["params"][2]["name"] = "embedder/word";
  EXPECT_EQ(parseError(plan), "tiny.mxa: params[2] 'embedder/word': the "
                              "parameter name is used twice");

  plan = embedNormDensePlan();
  plan["params"][5]["shape"] = {4, -3};
  EXPECT_THAT(parseError(plan),
              HasSubstr("params[5] 'dense/kernel': 'shape' must hold "
                        "non-negative integers"));

  plan = embedNormDensePlan();
  plan["params"][5]["dtype"] = "F16";
  EXPECT_THAT(parseError(plan), HasSubstr("dtype F16 is not supported"));

  plan = embedNormDensePlan();
  plan["params"][5]["dtype"] = "F33";
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: params[5] 'dense/kernel': unknown dtype 'F33'");
}

TEST(PlanTest, RejectsBadInputEntries) {
  json plan = embedNormDensePlan();
  plan["inputs"][0]["dtype"] = "F16";
  EXPECT_THAT(parseError(plan),
              HasSubstr("inputs[0] 'input_ids': dtype F16 is not supported; "
                        "inputs are I32 or F32"));
  plan = embedNormDensePlan();
  plan["inputs"][1]["optional"] = "yes";
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: inputs[1] 'type_ids': 'optional' must be a boolean");
}

TEST(PlanTest, RejectsValuesWithBadStorage) {
  json plan = embedNormDensePlan();
  plan["values"][4]["storage"] = "heap";
  EXPECT_EQ(parseError(plan), "tiny.mxa: values[4]: unknown storage 'heap' "
                              "(expected param, state, input or arena)");

  plan = embedNormDensePlan();
  plan["values"][6]["index"] = 7;
  EXPECT_EQ(parseError(plan), "tiny.mxa: values[6]: param value refers to "
                              "param 7 but the plan has 7 params");

  plan = embedNormDensePlan();
  plan["values"][8]["index"] = -1;
  EXPECT_THAT(parseError(plan), HasSubstr("values[8]: input value refers to "
                                          "input -1 but the plan has 2"));

  plan = embedNormDensePlan();
  plan["values"][5]["shape"] = {2, 3};
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: values[5]: param value [2, 3] F32 does not view param "
            "'dense/kernel' [4, 3] F32: element counts or dtypes differ");

  plan = embedNormDensePlan();
  plan["values"][7]["dtype"] = "F32";
  EXPECT_THAT(parseError(plan), HasSubstr("values[7]: input value [2, 3] F32 "
                                          "does not view input 'input_ids'"));
}

TEST(PlanTest, RejectsUnknownKeysOnValues) {
  json plan = embedNormDensePlan();
  plan["values"][9]["offest"] = 0;
  EXPECT_EQ(parseError(plan), "tiny.mxa: values[9]: unknown key 'offest'");

  // An arena value has no index, a parameter value no offset.
  plan = embedNormDensePlan();
  plan["values"][9]["index"] = 0;
  EXPECT_EQ(parseError(plan), "tiny.mxa: values[9]: unknown key 'index'");
  plan = embedNormDensePlan();
  plan["values"][0]["offset"] = 0;
  EXPECT_EQ(parseError(plan), "tiny.mxa: values[0]: unknown key 'offset'");
}

TEST(PlanTest, RejectsReadsOfBuffersNoEarlierStepWrote) {
  // Without the embed step, layer_norm reads an arena buffer nothing wrote.
  json plan = embedNormDensePlan();
  plan["steps"].erase(0);
  plan["forward_steps"] = 2;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[0] (layer_norm): operand 0 reads value 9 [2, 3, "
            "4] F32 at arena offset 0, which no earlier step wrote");

  // A step of another buffer overwrites part of h ([128, 224)) before the
  // dense reads it.
  plan = embedNormDensePlan();
  plan["values"].push_back({{"shape", {2, 3, 3}},
                            {"dtype", "F32"},
                            {"storage", "arena"},
                            {"offset", 192}});
  json clobber = plan["steps"][2];
  clobber["operands"][0] = 9;
  clobber["results"][0] = 12;
  plan["steps"].insert(plan["steps"].begin() + 2, clobber);
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[3] (dense): operand 0 reads value 10 [2, 3, 4] "
            "F32 at arena offset 128, which no earlier step wrote");

  // An output nothing wrote.
  plan = embedNormDensePlan();
  plan["steps"].erase(2);
  plan["forward_steps"] = 2;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: outputs[0] 'y': the output reads value 11 [2, 3, 3] "
            "F32 at arena offset 256, which no earlier step wrote");

  // A view reads what was written through its source.
  plan = embedNormDensePlan();
  plan["values"].push_back(plan["values"][10]);
  plan["values"][12]["shape"] = {6, 4};
  plan["steps"][2]["operands"][0] = 12;
  plan["values"][11]["shape"] = {6, 3};
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "tiny.mxa");
  EXPECT_TRUE(parsed.ok()) << parsed.message();
}

TEST(PlanTest, ChecksTheHeaderAgainstThePlan) {
  json plan = embedNormDensePlan();
  plan["mode"] = "eval";
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: unknown mode 'eval' (expected inference or train)");

  plan = embedNormDensePlan();
  plan["batch"] = 4;
  EXPECT_EQ(parseError(plan), "tiny.mxa: steps[0] (embed): token ids [2, 3] "
                              "are not [batch, seq] [4, 3]");

  plan = embedNormDensePlan();
  plan["seq"] = 5;
  EXPECT_EQ(parseError(plan), "tiny.mxa: steps[0] (embed): token ids [2, 3] "
                              "are not [batch, seq] [2, 5]");

  plan = embedNormDensePlan();
  plan["vocab_size"] = 6;
  EXPECT_EQ(parseError(plan), "tiny.mxa: steps[0] (embed): word embeddings "
                              "[5, 4] do not have vocab_size 6 rows");

  plan = embedNormDensePlan();
  plan["pad_id"] = 5;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: pad_id 5 is outside the vocabulary [0, 5)");

  PlanBuilder b;
  b.state("adam/m", {2});
  b.plan["mode"] = "inference";
  EXPECT_EQ(parseError(b.plan),
            "tiny.mxa: an inference plan must not have training settings");
}

TEST(PlanTest, RejectsArenaValuesOutsideTheArena) {
  json plan = embedNormDensePlan();
  plan["values"][11]["offset"] = 320;
  EXPECT_EQ(parseError(plan), "tiny.mxa: values[11]: arena value 11 [2, 3, 3] "
                              "F32 at offset 320 ends past arena_bytes 328");

  plan = embedNormDensePlan();
  plan["values"][10]["offset"] = 100;
  EXPECT_EQ(parseError(plan), "tiny.mxa: values[10]: arena value [2, 3, 4] "
                              "F32 has offset 100, which is not a "
                              "non-negative multiple of 64");

  plan = embedNormDensePlan();
  plan["values"][9].erase("offset");
  EXPECT_EQ(parseError(plan), "tiny.mxa: values[9]: missing 'offset'");

  // Byte counts that overflow are caught before any arithmetic on them.
  plan = embedNormDensePlan();
  plan["values"][9]["shape"] = {int64_t(1) << 40, int64_t(1) << 30};
  EXPECT_THAT(parseError(plan), HasSubstr("has too many elements"));
}

TEST(PlanTest, RejectsBadStepReferences) {
  json plan = embedNormDensePlan();
  plan["steps"][2]["operands"][2] = 900;
  EXPECT_EQ(parseError(plan), "tiny.mxa: steps[2] (dense): operand 2 refers "
                              "to value 900 but the plan has 12 values");

  plan = embedNormDensePlan();
  plan["steps"][1]["results"][0] = -1;
  EXPECT_EQ(parseError(plan), "tiny.mxa: steps[1] (layer_norm): result 0 "
                              "refers to value -1 but the plan has 12 values");

  plan = embedNormDensePlan();
  plan["steps"][2]["operands"] = {10, 5};
  EXPECT_EQ(parseError(plan), "tiny.mxa: steps[2] (dense): has 2 operands but "
                              "the kernel takes 3");

  plan = embedNormDensePlan();
  plan["steps"][0]["kernel"] = "conv2d";
  EXPECT_EQ(parseError(plan), "tiny.mxa: steps[0]: unknown kernel 'conv2d'");
}

TEST(PlanTest, RejectsResultsOutsideTheArenaOrOverlappingOperands) {
  json plan = embedNormDensePlan();
  plan["steps"][2]["results"][0] = 5;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[2] (dense): result 0 writes value 5, which is a "
            "parameter; results must live in the arena");

  // The dense result placed over its input x (value 10 at [128, 224)).
  plan = embedNormDensePlan();
  plan["values"][11]["offset"] = 192;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[2] (dense): result 0 (value 11 at arena bytes "
            "[192, 264)) overlaps operand 0 (value 10 at arena bytes [128, "
            "224))");

  // layer_norm may write in place.
  plan = embedNormDensePlan();
  plan["values"][10]["offset"] = 0;
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "tiny.mxa");
  EXPECT_TRUE(parsed.ok()) << parsed.message();

  // ... over its x or residual (value 9), not over its scale.
  plan = embedNormDensePlan();
  plan["values"].push_back({{"shape", {4}},
                            {"dtype", "F32"},
                            {"storage", "arena"},
                            {"offset", 128}});
  plan["steps"][1]["operands"][2] = 12;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[1] (layer_norm): result 0 (value 10 at arena "
            "bytes [128, 224)) overlaps operand 2 (value 12 at arena bytes "
            "[128, 144))");
}

TEST(PlanTest, RejectsAbsentRequiredOperands) {
  json plan = embedNormDensePlan();
  plan["steps"][2]["operands"][1] = -1;
  EXPECT_EQ(parseError(plan), "tiny.mxa: steps[2] (dense): operand 1 (w) is "
                              "absent (-1) but the kernel needs it");
}

TEST(PlanTest, RejectsMissingUnknownAndMistypedAttributes) {
  json plan = embedNormDensePlan();
  plan["steps"][1]["attrs"] = json::object();
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[1] (layer_norm): missing attribute 'epsilon'");

  plan = embedNormDensePlan();
  plan["steps"][1]["attrs"]["momentum"] = 0.9;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[1] (layer_norm): unknown attribute 'momentum'");

  // `gather` is optional for the experts kernels only.
  plan = embedNormDensePlan();
  plan["steps"][1]["attrs"]["gather"] = true;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[1] (layer_norm): unknown attribute 'gather'");

  plan = embedNormDensePlan();
  plan["steps"][1]["attrs"]["epsilon"] = json::array();
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[1] (layer_norm): attribute 'epsilon' must be a "
            "number, not []");

  plan = embedNormDensePlan();
  plan["steps"][2]["attrs"]["transpose_w"] = 1;
  EXPECT_EQ(parseError(plan), "tiny.mxa: steps[2] (dense): attribute "
                              "'transpose_w' must be a boolean, not 1");

  plan = embedNormDensePlan();
  plan["steps"][2]["attrs"]["activation"] = "swish";
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[2] (dense): attribute 'activation' must be none, "
            "gelu, tanh, relu or gelu_erf, not \"swish\"");

  plan = embedNormDensePlan();
  plan["steps"][2]["attrs"]["activation"] = 1;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[2] (dense): attribute 'activation' must be none, "
            "gelu, tanh, relu or gelu_erf, not 1");
}

/// An experts step whose offsets (value 5) a `routing` step writes, with
/// the attribute `layout` unless it is null.
json expertsAfter(const char *routing, json routingAttrs, json layout) {
  PlanBuilder b;
  int64_t probs = b.param("probs", {8, 2}), xd = b.param("xd", {8, 4});
  int64_t w1 = b.param("w1", {2, 4, 6}), w2 = b.param("w2", {2, 6, 4});
  int64_t tokens = b.arena({8}, "I32"), gates = b.arena({8}),
          offsets = b.arena({3}, "I32"), yd = b.arena({8, 4});
  b.step(routing, {probs}, {tokens, gates, offsets}, routingAttrs);
  json attrs = {{"activation", "gelu"}};
  if (!layout.is_null())
    attrs["layout"] = layout;
  b.step("experts", {xd, tokens, offsets, w1, -1, w2, -1}, {yd}, attrs);
  b.output("y", yd);
  return b.plan;
}

/// The experts layout is the compiler's to state: required, capacity or
/// grouped, and capacity only over the offsets of a capacity routing.
TEST(PlanTest, ChecksTheExpertsLayout) {
  json capacity = {{"groups", 1}, {"tokens_per_group", 8}, {"capacity", 4}};
  json topK = {{"k", 1}};
  for (auto [routing, attrs, layout] :
       {std::tuple<const char *, json, const char *>{"route_experts_choose",
                                                     capacity, "capacity"},
        {"route_experts_choose", capacity, "grouped"},
        {"route_sigmoid_topk", topK, "grouped"}}) {
    Expected<Plan> parsed =
        Plan::fromJson(expertsAfter(routing, attrs, layout).dump(), "tiny.mxa");
    ASSERT_TRUE(parsed.ok())
        << routing << " " << layout << ": " << parsed.message();
    EXPECT_EQ(parsed->steps[1].attrs.at("layout"),
              AttrValue(std::string(layout)));
  }

  EXPECT_EQ(parseError(expertsAfter("route_experts_choose", capacity, {})),
            "tiny.mxa: steps[1] (experts): missing attribute 'layout'");
  EXPECT_EQ(
      parseError(expertsAfter("route_experts_choose", capacity, "strided")),
      "tiny.mxa: steps[1] (experts): attribute 'layout' must be capacity or "
      "grouped, not \"strided\"");
  EXPECT_EQ(parseError(expertsAfter("route_sigmoid_topk", topK, "capacity")),
            "tiny.mxa: steps[1] (experts): the capacity layout needs the "
            "offsets of route_experts_choose or route_tokens_choose, but "
            "value 6 is a result of route_sigmoid_topk");

  // Offsets that no step wrote (a plan input) take the grouped layout.
  PlanBuilder b;
  int64_t xd = b.param("xd", {8, 4}), w1 = b.param("w1", {2, 4, 6}),
          w2 = b.param("w2", {2, 6, 4});
  int64_t tokens = b.input("tokens", {8}), offsets = b.input("offsets", {3});
  int64_t yd = b.arena({8, 4}), dxd = b.arena({8, 4}), dw1 = b.arena({2, 4, 6}),
          db1 = b.arena({2, 6}), dw2 = b.arena({2, 6, 4}),
          db2 = b.arena({2, 4});
  b.step("experts", {xd, tokens, offsets, w1, -1, w2, -1}, {yd},
         {{"activation", "gelu"}, {"layout", "grouped"}});
  b.step("experts_grad", {xd, tokens, offsets, w1, -1, w2, yd},
         {dxd, dw1, db1, dw2, db2},
         {{"activation", "gelu"}, {"layout", "capacity"}});
  b.output("dxd", dxd);
  EXPECT_EQ(parseError(b.plan),
            "tiny.mxa: steps[1] (experts_grad): the capacity layout needs "
            "the offsets of route_experts_choose or route_tokens_choose, but "
            "value 4 is not a step's result");
}

TEST(PlanTest, ReadsAttributesAsTheirKernelTypes) {
  // A real attribute may be spelled as an integer; it reads as a double.
  json plan = embedNormDensePlan();
  plan["steps"][1]["attrs"]["epsilon"] = 1;
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "tiny.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  EXPECT_EQ(parsed->steps[1].attrs.at("epsilon"), AttrValue(1.0));
  EXPECT_EQ(parsed->steps[2].attrs.at("transpose_w"), AttrValue(false));
  EXPECT_EQ(parsed->steps[2].attrs.at("activation"),
            AttrValue(std::string("gelu")));

  // An integer attribute may not be a fraction.
  PlanBuilder b;
  int64_t x = b.arena({2, 3, 4}), y = b.arena({2, 4});
  b.step("take_position", {x}, {y}, {{"index", 0.5}});
  EXPECT_EQ(parseError(b.plan),
            "tiny.mxa: steps[0] (take_position): "
            "attribute 'index' must be an integer, not 0.5");
}

TEST(PlanTest, RejectsBadOutputs) {
  json plan = embedNormDensePlan();
  plan["outputs"][0]["value"] = 12;
  EXPECT_EQ(parseError(plan), "tiny.mxa: outputs[0] 'y': refers to value 12 "
                              "but the plan has 12 values");
  plan = embedNormDensePlan();
  plan["outputs"].push_back({{"name", "y"}, {"value", 10}});
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: outputs[1] 'y': the output name is used twice");
}

/// A training plan: parameter w, its two AdamW moments and the update.
json trainingPlan() {
  PlanBuilder b;
  int64_t w = b.param("w", {4});
  int64_t m = b.state("adam_m/w", {4});
  int64_t v = b.state("adam_v/w", {4});
  int64_t lr = b.input("learning_rate", {}, false, "F32");
  int64_t step = b.input("step", {});
  int64_t grad = b.arena({4});
  b.step("scale", {w}, {grad}, {{"factor", 2.0}});
  b.step("adamw", {grad, lr, step, -1, -1}, {w, m, v},
         {{"b1", 0.9},
          {"b2", 0.999},
          {"eps", 1e-6},
          {"weight_decay", 0.01},
          {"max_norm", 0.0},
          {"micro_steps", 1}});
  return b.plan;
}

TEST(PlanTest, ParsesTheStateTableAndSchedule) {
  Expected<Plan> plan = Plan::fromJson(trainingPlan().dump(), "train.mxa");
  ASSERT_TRUE(plan.ok()) << plan.message();
  EXPECT_TRUE(plan->updatesParameters());
  ASSERT_EQ(plan->state.size(), 2u);
  EXPECT_EQ(plan->state[1].name, "adam_v/w");
  EXPECT_EQ(plan->values[1].storage, StorageKind::State);
  EXPECT_EQ(plan->values[2].index, 1);
  EXPECT_EQ(plan->inputs[0].dtype, io::DType::F32);
  EXPECT_TRUE(plan->inputs[0].shape.empty());
  EXPECT_EQ(plan->findInput("step"), 1);
  EXPECT_EQ(plan->findInput("seed"), -1);
  EXPECT_DOUBLE_EQ(plan->training->learningRate, 1e-3);
  EXPECT_EQ(plan->training->totalSteps, 10);
  EXPECT_FALSE(Plan::fromJson(embedNormDensePlan().dump(), "tiny.mxa")
                   ->updatesParameters());
}

TEST(PlanTest, ReadsShardedOptimizerState) {
  // The compiler shards the state of an expert slice as the slice.
  json plan = trainingPlan();
  plan["batch"] = 2;
  plan["mesh"] = {{"dp", 1}, {"ep", 2}, {"world", 2}};
  for (json *entry :
       {&plan["params"][0], &plan["state"][0], &plan["state"][1]}) {
    (*entry)["shard"] = {{"axis", 0}, {"mesh_axis", "ep"}};
    (*entry)["global_shape"] = {8};
  }
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "train.mxa");
  ASSERT_TRUE(parsed.ok()) << parsed.message();
  for (const ParamInfo &entry : parsed->state) {
    EXPECT_EQ(entry.shardGroup, "ep") << entry.name;
    EXPECT_EQ(entry.globalShape, std::vector<int64_t>{8}) << entry.name;
  }
  Expected<Plan> again = Plan::fromJson(parsed->toJson(), "train.mxa");
  ASSERT_TRUE(again.ok()) << again.message();
  EXPECT_EQ(again->state, parsed->state);
  // A replicated parameter's state is replicated.
  EXPECT_TRUE(Plan::fromJson(trainingPlan().dump(), "train.mxa")
                  ->state[0]
                  .shardGroup.empty());
}

TEST(PlanTest, RejectsBadTrainingPlans) {
  json plan = trainingPlan();
  plan["training"]["total_steps"] = 0;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: training: the schedule needs learning_rate >= 0, "
            "warmup_steps >= 0 and total_steps > warmup_steps");

  plan = trainingPlan();
  plan.erase("state");
  EXPECT_EQ(parseError(plan), "tiny.mxa: missing 'state'");

  plan = trainingPlan();
  plan["state"][1]["name"] = "adam_m/w";
  EXPECT_EQ(parseError(plan), "tiny.mxa: state[1] 'adam_m/w': the state name "
                              "is used twice");

  plan = trainingPlan();
  plan["values"][2]["index"] = 2;
  EXPECT_EQ(parseError(plan), "tiny.mxa: values[2]: state value refers to "
                              "state 2 but the plan has 2 state tensors");

  // adamw writes parameters and state, and nothing else.
  plan = trainingPlan();
  plan["steps"][1]["results"][0] = 5;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[1] (adamw): result 0 writes value 5, which is an "
            "arena buffer; this kernel updates parameters or optimizer state "
            "in place");
  plan = trainingPlan();
  plan["steps"][0]["results"][0] = 1;
  EXPECT_EQ(parseError(plan),
            "tiny.mxa: steps[0] (scale): result 0 writes value 1, which is "
            "optimizer state; results must live in the arena");
}

TEST(PlanTest, VariadicKernelsTakeAtLeastOneOperand) {
  json plan = trainingPlan();
  plan["values"].push_back({{"storage", "arena"},
                            {"offset", 64},
                            {"shape", json::array()},
                            {"dtype", "F32"}});
  plan["arena_bytes"] = 68;
  plan["steps"].push_back({{"kernel", "global_norm"},
                           {"operands", {5, 0}},
                           {"results", {6}},
                           {"attrs", json::object()}});
  ASSERT_TRUE(Plan::fromJson(plan.dump(), "tiny.mxa").ok());
  plan["steps"][2]["operands"] = json::array();
  EXPECT_EQ(parseError(plan), "tiny.mxa: steps[2] (global_norm): has 0 "
                              "operands but the kernel takes at least one");
}

TEST(PlanTest, LoadRefusesAHeaderNestedTooDeep) {
  // The plan reader prints and copies JSON values recursively: this header
  // would exhaust the stack. The container refuses it (writeContainer too,
  // so the bytes are assembled here).
  TempDir dir;
  std::string header = R"({"format_version": )" + std::string(100000, '[') +
                       std::string(100000, ']') + "}";
  auto le = [](uint64_t value, int bytes) {
    std::string text;
    for (int i = 0; i < bytes; ++i)
      text.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
    return text;
  };
  std::string bytes = "MIXERMXA" + le(io::kContainerVersion, 4) +
                      le(header.size(), 8) + header + le(0, 8);
  bytes += le(io::crc64(bytes.data(), bytes.size()), 8);
  std::string path = dir.file("deep.mxa");
  std::ofstream(path, std::ios::binary) << bytes;
  Expected<Plan> loaded = Plan::load(path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.message(), path + ": header nests arrays and objects "
                                     "deeper than 256 levels (at byte offset "
                                     "274)");
}

TEST(PlanTest, InitKindNamesMatchThePlanSpelling) {
  EXPECT_STREQ(initKindName(InitKind::TruncatedNormal), "truncated_normal");
  EXPECT_STREQ(initKindName(InitKind::NormalRowRenorm), "normal_row_renorm");
}

} // namespace
