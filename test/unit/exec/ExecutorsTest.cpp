//===- ExecutorsTest.cpp - The executor factory, observers, TargetInfo ----===//
//
// target::createExecutor picks the CPU executor for cpu plans; a step
// observer sees every step of a run once, in order; and what TargetInfo
// claims for the cpu target holds for the CPU kernel table.
//
//===----------------------------------------------------------------------===//

#include "test/unit/exec/PlanBuilder.h"

#include "runtime/cpu/Executor.h"
#include "runtime/cpu/KernelTable.h"
#include "runtime/support/KernelVocabulary.h"
#include "runtime/support/TargetInfo.h"
#include "runtime/target/Executors.h"

#include <gmock/gmock.h>

#include <string>
#include <vector>

using namespace mixer;
using namespace mixer::exec;
using namespace mixer::exec::test;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

namespace {

/// Records "before <i>" and "after <i>" for every step it is told about.
struct RecordingObserver : StepObserver {
  std::vector<std::string> events;

  void beforeStep(size_t index) override {
    events.push_back("before " + std::to_string(index));
  }
  void afterStep(size_t index, std::optional<double> deviceMs) override {
    EXPECT_FALSE(deviceMs) << "the CPU executor has no device time";
    events.push_back("after " + std::to_string(index));
  }
};

std::vector<std::string> stepEvents(size_t steps) {
  std::vector<std::string> events;
  for (size_t i = 0; i < steps; ++i) {
    events.push_back("before " + std::to_string(i));
    events.push_back("after " + std::to_string(i));
  }
  return events;
}

Plan parse(const json &plan) {
  Expected<Plan> parsed = Plan::fromJson(plan.dump(), "test.mxa");
  EXPECT_TRUE(parsed.ok()) << parsed.message();
  return std::move(*parsed);
}

TEST(ExecutorsTest, CreatesTheCpuExecutorForCpuPlans) {
  Plan plan = parse(embedNormDensePlan());
  Expected<std::unique_ptr<PlanExecutor>> executor =
      target::createExecutor(plan);
  ASSERT_TRUE(executor.ok()) << executor.message();
  EXPECT_NE(dynamic_cast<cpu::Executor *>(executor->get()), nullptr);
  EXPECT_TRUE(target::checkTargetAvailable(plan).ok());
}

TEST(ExecutorsTest, RefusesAPlanItCannotPrepare) {
  json plan = embedNormDensePlan();
  plan["steps"][2]["attrs"]["transpose_w"] = true;
  Expected<std::unique_ptr<PlanExecutor>> executor =
      target::createExecutor(parse(plan));
  ASSERT_FALSE(executor.ok());
  EXPECT_THAT(executor.message(), HasSubstr("steps[2] (dense)"));
}

TEST(StepObserverTest, SeesEveryStepOnceInOrder) {
  json plan = embedNormDensePlan();
  Expected<std::unique_ptr<PlanExecutor>> executor =
      target::createExecutor(parse(plan));
  ASSERT_TRUE(executor.ok()) << executor.message();
  PlanExecutor &e = **executor;
  for (Status status :
       {e.bindParams(randomParams(plan, 1), "params", false),
        e.bindInputs({intTensor("input_ids", {2, 3}, {1, 4, 0, 2, 3, 1})},
                     "inputs", false)})
    ASSERT_TRUE(status.ok()) << status.message();
  RecordingObserver observer;
  e.setObserver(&observer);
  ASSERT_TRUE(e.run().ok());
  EXPECT_THAT(observer.events, ElementsAreArray(stepEvents(3)));

  // Without an observer nothing is told; with one again, the next run is.
  e.setObserver(nullptr);
  ASSERT_TRUE(e.run().ok());
  EXPECT_EQ(observer.events.size(), 6u);
  observer.events.clear();
  e.setObserver(&observer);
  ASSERT_TRUE(e.runForward().ok());
  EXPECT_THAT(observer.events, ElementsAreArray(stepEvents(3)));
}

TEST(TargetInfoTest, CpuDenseFusesExactlyTheActivationsItClaims) {
  const TargetInfo *cpu = findTarget("cpu");
  ASSERT_NE(cpu, nullptr);
  for (std::string_view kind : ActivationKinds) {
    Plan plan = parseStandalone(denseWithActivation("cpu", std::string(kind)));
    int64_t scratch = 0;
    Expected<cpu::StepFunction> step = cpu::prepareStep(plan, 0, scratch);
    EXPECT_EQ(step.ok(), kind == "none" || cpu->fusesDenseActivation(kind))
        << kind << ": " << (step.ok() ? "prepared" : step.message());
  }
}

TEST(TargetInfoTest, CpuExpertsGatherOnlyIfTheyClaimTo) {
  // experts over 8 dispatched rows of 2 experts (capacity 4), gathering them
  // from the token rows or not.
  for (bool gather : {false, true}) {
    PlanBuilder b;
    int64_t w1 = b.param("w1", {2, 4, 6}), w2 = b.param("w2", {2, 6, 4});
    int64_t xd = b.arena({8, 4}), tokens = b.arena({8}, "I32"),
            offsets = b.arena({3}, "I32"), yd = b.arena({8, 4});
    b.step("experts", {xd, tokens, offsets, w1, -1, w2, -1}, {yd},
           {{"activation", "gelu"}, {"layout", "grouped"}, {"gather", gather}});
    b.output("y", yd);
    Plan plan = parseStandalone(b);
    int64_t scratch = 0;
    Expected<cpu::StepFunction> step = cpu::prepareStep(plan, 0, scratch);
    EXPECT_EQ(step.ok(), !gather || findTarget("cpu")->expertsGather)
        << "gather " << gather << ": "
        << (step.ok() ? "prepared" : step.message());
  }
}

TEST(TargetInfoTest, CpuTakesBf16ActivationsInExactlyTheKernelsItClaims) {
  const TargetInfo *cpu = findTarget("cpu");
  ASSERT_NE(cpu, nullptr);
  ASSERT_TRUE(cpu->bf16);
  // The one step of `b` prepares exactly when the CPU claims bf16 for it.
  auto expectPreparedExactlyIfClaimed = [&](PlanBuilder &b,
                                            const char *kernel) {
    Plan plan = parseStandalone(b);
    int64_t scratch = 0;
    Expected<cpu::StepFunction> step = cpu::prepareStep(plan, 0, scratch);
    EXPECT_EQ(step.ok(), cpu->takesBf16(kernel))
        << kernel << ": " << (step.ok() ? "prepared" : step.message());
  };
  // dense [6,4] -> [6,5] marked bf16, reading and writing BF16.
  {
    PlanBuilder b;
    b.plan["precision"] = "bf16";
    int64_t w = b.param("w", {4, 5});
    int64_t x = b.arena({6, 4}, "BF16"), y = b.arena({6, 5}, "BF16");
    b.step("dense", {x, w, -1}, {y},
           {{"activation", "gelu"}, {"transpose_w", false}, {"bf16", true}});
    b.output("y", y);
    expectPreparedExactlyIfClaimed(b, "dense");
  }
  // experts marked bf16 over fp32 rows.
  {
    PlanBuilder b;
    b.plan["precision"] = "bf16";
    int64_t w1 = b.param("w1", {2, 4, 6}), w2 = b.param("w2", {2, 6, 4});
    int64_t xd = b.arena({8, 4}), tokens = b.arena({8}, "I32"),
            offsets = b.arena({3}, "I32"), yd = b.arena({8, 4});
    b.step("experts", {xd, tokens, offsets, w1, -1, w2, -1}, {yd},
           {{"activation", "gelu"}, {"layout", "grouped"}, {"bf16", true}});
    b.output("y", yd);
    expectPreparedExactlyIfClaimed(b, "experts");
  }
  // layer_norm of a BF16 row.
  {
    PlanBuilder b;
    b.plan["precision"] = "bf16";
    int64_t scale = b.param("s", {4}), bias = b.param("b", {4});
    int64_t x = b.arena({6, 4}, "BF16"), y = b.arena({6, 4}, "BF16");
    b.step("layer_norm", {x, -1, scale, bias}, {y}, {{"epsilon", 1e-6}});
    b.output("y", y);
    expectPreparedExactlyIfClaimed(b, "layer_norm");
  }
}

} // namespace
